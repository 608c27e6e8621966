"""The engines of bench/roofline.py, each in a child process of its own, and the one-off conversion they load from.

A child builds its engine (or a roofline backend), says it is ready, then answers the parent's "run this tower at
this batch" with the seconds the call took and what it returned, until told to stop; its stdout goes to stderr so
that a runtime's chatter never lands in the table. Only one child computes at a time: the parent waits for each
answer before it sends the next request, so the thread pools of different runtimes never run together.
"""

from __future__ import annotations

import importlib.util
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Engine:
    """One row of the table: how it runs (`kind`), the format its floor is, the modules it needs, its options."""

    key: str
    label: str
    kind: str  # transformers | clipsvc | onnxruntime | openvino
    fmt: str  # fp32 | bf16 | int8: which roofline it is measured against
    needs: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)


# The service's own rows, built as a worker builds them: (label, format, settings). OpenVINO is the default engine.
CLIPSVC = tuple((f"clipsvc {engine} {fmt}", fmt, {"cpu_engine": engine, "precision": fmt})
                for engine in ("openvino", "torch") for fmt in ("bf16", "int8", "fp32"))
REFERENCE = "hf-fp32"  # every cosine is against this engine's vectors on the same inputs


def clipsvc_rows() -> list[Engine]:
    """The clipsvc rows: each engine in each format."""
    return [Engine(label.replace(" ", "-"), label, "clipsvc", fmt,
                   ("openvino",) if changes["cpu_engine"] == "openvino" else (), changes)
            for label, fmt, changes in CLIPSVC]


def engines() -> list[Engine]:
    """Every row, in the table's order."""
    return [Engine("hf-fp32", "transformers fp32", "transformers", "fp32", options={"dtype": "float32"}),
            Engine("hf-bf16", "transformers bf16", "transformers", "bf16", options={"dtype": "bfloat16"}),
            *clipsvc_rows(),
            Engine("ort-fp32", "ONNX Runtime fp32", "onnxruntime", "fp32", ("onnxruntime", "onnx"),
                   {"model": "onnx"}),
            Engine("ort-int8", "ONNX Runtime int8 dynamic", "onnxruntime", "int8", ("onnxruntime", "onnx"),
                   {"model": "onnx-int8"}),
            Engine("ov-f32", "OpenVINO f32", "openvino", "fp32", ("openvino",), {"model": "ov", "hint": "f32"}),
            Engine("ov-bf16", "OpenVINO bf16", "openvino", "bf16", ("openvino",), {"model": "ov", "hint": "bf16"}),
            Engine("ov-bf16-int8w", "OpenVINO bf16 + int8 weights", "openvino", "int8", ("openvino", "nncf"),
                   {"model": "ov-int8", "hint": "bf16"})]


def missing(engine: Engine) -> list[str]:
    """The modules this engine needs that are not installed."""
    return [name for name in engine.needs if importlib.util.find_spec(name) is None]


# --- conversion ------------------------------------------------------------------------------------


def tower_modules(model) -> dict:
    """tower -> an nn.Module computing its projected, pooled features: what is exported, and what transformers
    rows run (get_image_features / get_text_features do the same): transformers' own towers, as a user would run
    them. (The service's image graph differs only by the padding tokens it may add to a lone image.)"""
    import torch

    from clipsvc.encoder.openvino_towers import TextTower

    class ImageTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vision, self.projection = model.vision_model, model.visual_projection

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.projection(self.vision(pixel_values=pixel_values).pooler_output)

    return {"image": ImageTower().eval(), "text": TextTower(model).eval()}


def convert(model_dir: Path, workdir: Path, wanted: set[str], sample: dict) -> dict[str, str]:
    """Write each `wanted` model ("onnx", "onnx-int8", "ov", "ov-int8") for both towers to workdir, from the fp32
    weights; dynamic batch, and token count for text. Returns what failed, with why."""
    import warnings

    import torch
    from transformers import CLIPModel

    warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings: the outputs are checked later
    failed: dict[str, str] = {}
    model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True).eval()
    towers = tower_modules(model)
    examples = {"image": (torch.from_numpy(sample["pixel_values"]),),
                "text": (torch.from_numpy(sample["input_ids"]), torch.from_numpy(sample["attention_mask"]))}
    names = {"image": ["pixel_values"], "text": ["input_ids", "attention_mask"]}
    axes = {"image": {"pixel_values": {0: "batch"}},
            "text": {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}}
    if wanted & {"onnx", "onnx-int8"}:
        try:
            with torch.no_grad():
                for tower, module in towers.items():  # dynamo=False: the dynamo exporter needs onnxscript
                    torch.onnx.export(module, examples[tower], workdir / f"{tower}.onnx", input_names=names[tower],
                                      output_names=["embeds"], dynamic_axes=axes[tower], opset_version=17,
                                      dynamo=False)
        except Exception as exc:  # a bench reports what it could not build, and goes on
            failed["onnx"] = failed["onnx-int8"] = f"{type(exc).__name__}: {exc}"[:200]
        if "onnx-int8" in wanted and "onnx-int8" not in failed:
            try:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                for tower in towers:
                    quantize_dynamic(workdir / f"{tower}.onnx", workdir / f"{tower}.onnx-int8.onnx",
                                     weight_type=QuantType.QInt8)
            except Exception as exc:
                failed["onnx-int8"] = f"{type(exc).__name__}: {exc}"[:200]
    if wanted & {"ov", "ov-int8"}:
        try:
            import openvino as ov

            side = sample["pixel_values"].shape[-1]
            shapes = {"image": [ov.PartialShape([-1, 3, side, side])],
                      "text": [ov.PartialShape([-1, -1]), ov.PartialShape([-1, -1])]}
            for tower, module in towers.items():
                converted = ov.convert_model(module, example_input=examples[tower], input=shapes[tower])
                ov.save_model(converted, workdir / f"{tower}.ov.xml", compress_to_fp16=False)
                if "ov-int8" in wanted and "ov-int8" not in failed:
                    try:
                        import nncf

                        compressed = nncf.compress_weights(converted, mode=nncf.CompressWeightsMode.INT8_SYM)
                        ov.save_model(compressed, workdir / f"{tower}.ov-int8.xml", compress_to_fp16=False)
                    except Exception as exc:  # the f32 model still serves the other OpenVINO rows
                        failed["ov-int8"] = f"{type(exc).__name__}: {exc}"[:200]
                del converted
        except Exception as exc:  # reported to the parent
            failed["ov"] = failed["ov-int8"] = f"{type(exc).__name__}: {exc}"[:200]
    return failed


# --- engines: prepare(tower, batch) gives the call that is timed ------------------------------------


class TransformersRunner:
    """CLIPModel as transformers loads it, in fp32 or cast whole to bf16 (model.to(bfloat16))."""

    def __init__(self, engine: Engine, model_dir: Path, workdir: Path, threads: int, inputs: dict):
        import torch
        from transformers import CLIPModel

        torch.set_num_threads(threads)
        self.torch, self.inputs = torch, inputs
        self.dtype = getattr(torch, engine.options["dtype"])
        model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True).eval()
        self.towers = tower_modules(model.to(self.dtype))
        self.note = ""

    def prepare(self, tower: str, batch: int) -> Callable[[], np.ndarray]:
        torch, module = self.torch, self.towers[tower]
        if tower == "image":
            args = (torch.from_numpy(self.inputs["image"][batch]).to(self.dtype),)
        else:
            text = self.inputs["text"][batch]
            args = (torch.from_numpy(text["input_ids"]), torch.from_numpy(text["attention_mask"]))

        def run() -> np.ndarray:
            with torch.inference_mode():
                return module(*args).float().numpy()
        return run


class ClipsvcRunner:
    """The service's own encoder (ClipEncoder.build), timed on forward_images / forward_texts: image_rows is
    preprocessing that request threads do, and is done once here."""

    def __init__(self, engine: Engine, model_dir: Path, workdir: Path, threads: int, inputs: dict):
        import torch

        from clipsvc.encoder.model import ClipEncoder
        from testkit.encoding import cpu_settings

        torch.set_num_threads(threads)
        self.inputs = inputs
        self.encoder = ClipEncoder.build(cpu_settings(model_dir, torch_threads=threads, **engine.options))
        serving = self.encoder.serving
        self.note = f"computes {serving.precision} (guard fell back)" if serving.precision_fallback else ""

    def prepare(self, tower: str, batch: int) -> Callable[[], np.ndarray]:
        from PIL import Image

        encoder = self.encoder
        if tower == "image":
            rows = encoder.image_rows([Image.fromarray(p) for p in self.inputs["pictures"][:batch]])
            return lambda: np.stack(encoder.forward_images(rows))
        ids = self.inputs["text"][batch]["ids"]
        return lambda: np.stack(encoder.forward_texts(ids))


def feeds(inputs: dict, tower: str, batch: int) -> dict[str, np.ndarray]:
    """The exported towers' inputs by name."""
    if tower == "image":
        return {"pixel_values": inputs["image"][batch]}
    text = inputs["text"][batch]
    return {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}


class OnnxRuntimeRunner:
    """The exported towers in ONNX Runtime's CPU provider; idle threads do not spin (they would steal the next
    engine's cores)."""

    def __init__(self, engine: Engine, model_dir: Path, workdir: Path, threads: int, inputs: dict):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        suffix = ".onnx" if engine.options["model"] == "onnx" else ".onnx-int8.onnx"
        self.sessions = {tower: ort.InferenceSession(str(workdir / f"{tower}{suffix}"), options,
                                                     providers=["CPUExecutionProvider"]) for tower in ("image", "text")}
        self.inputs, self.note = inputs, ""

    def prepare(self, tower: str, batch: int) -> Callable[[], np.ndarray]:
        session, feed = self.sessions[tower], feeds(self.inputs, tower, batch)
        return lambda: session.run(None, feed)[0]


class OpenVinoRunner:
    """The converted towers compiled for the CPU with the given INFERENCE_PRECISION_HINT, latency mode, unpinned."""

    def __init__(self, engine: Engine, model_dir: Path, workdir: Path, threads: int, inputs: dict):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": engine.options["hint"]}
        self.requests = {tower: core.compile_model(str(workdir / f"{tower}.{engine.options['model']}.xml"), "CPU",
                                                   config).create_infer_request() for tower in ("image", "text")}
        self.inputs, self.note = inputs, ""

    def prepare(self, tower: str, batch: int) -> Callable[[], np.ndarray]:
        request, feed = self.requests[tower], feeds(self.inputs, tower, batch)
        return lambda: np.array(request.infer(feed)[0])


class GemmRunner:
    """A roofline backend: the tower's GEMM shapes at this batch, timed with every kernel (roofline_gemm)."""

    def __init__(self, engine: Engine, model_dir: Path, workdir: Path, threads: int, inputs: dict):
        import roofline_gemm as gemm

        self.gemm, self.plan, self.note = gemm, inputs["plan"], ""
        kernels = gemm.TorchKernels if engine.options["backend"] == "torch" else gemm.OpenVinoKernels
        self.kernels = kernels(threads)

    def prepare(self, tower: str, batch: int) -> Callable[[], dict]:
        gemms = self.plan[(tower, batch)]
        return lambda: self.gemm.measure(self.kernels, gemms)


RUNNERS = {"transformers": TransformersRunner, "clipsvc": ClipsvcRunner, "onnxruntime": OnnxRuntimeRunner,
           "openvino": OpenVinoRunner, "gemm": GemmRunner}


def serve(conn, engine: Engine, model_dir: Path, workdir: Path, threads: int, inputs: dict) -> None:
    """A child's life: build the runner, then answer (tower, batch) with (seconds, output) until told None."""
    os.dup2(2, 1)  # stdout is the parent's table
    try:
        runner = RUNNERS[engine.kind](engine, model_dir, workdir, threads, inputs)
        conn.send(("ready", runner.note))
        prepared: dict[tuple[str, int], Callable] = {}
        while (request := conn.recv()) is not None:
            if request not in prepared:
                prepared[request] = runner.prepare(*request)
            started = time.perf_counter()
            output = prepared[request]()
            conn.send(("ok", (time.perf_counter() - started, output)))
    except Exception as exc:  # the parent reports it as this engine's row and goes on
        traceback.print_exc()
        conn.send(("error", f"{type(exc).__name__}: {exc}".splitlines()[0][:160]))


def one_off(conn, job: str, *args) -> None:
    """A child that does one job (convert, or the reference GEMM) and sends its result."""
    os.dup2(2, 1)
    try:
        if job == "convert":
            result = convert(*args)
        else:
            import roofline_gemm as gemm

            kernels = gemm.TorchKernels if args[0] == "torch" else gemm.OpenVinoKernels
            result = gemm.measure(kernels(gemm.REFERENCE_THREADS), [gemm.reference_gemm()])
        conn.send(("ok", result))
    except Exception as exc:  # reported to the parent
        traceback.print_exc()
        conn.send(("error", f"{type(exc).__name__}: {exc}".splitlines()[0][:160]))
