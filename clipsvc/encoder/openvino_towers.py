"""OpenVINO as the CPU engine (CLIP_CPU_ENGINE=openvino): each tower converted once from the loaded torch model
into OpenVINO's IR, kept under CLIP_MODEL_CACHE_DIR, and compiled by every worker in the chosen format.

Why: on CPUs OpenVINO runs CLIP closer to the machine's matrix rate than eager torch (docs/performance.md,
"CPU engines"): it fuses LayerNorm, the residual adds and quick-GELU around its matmuls, keeps softmax and
normalisation in fp32 under bf16, and in int8 quantises activations per row at run time for VNNI/AMX kernels
(weights int8 per output channel, made here: no extra dependency). The first worker converts under a file lock
(about 16 s for ViT-L/14 on 2 cores); the others, and every later start with the same cache, only compile.
"""

from __future__ import annotations

import ctypes
import fcntl
import glob
import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from openvino import opset13 as ops
from transformers import CLIPModel

from .modeldir import ModelLoadError

log = logging.getLogger(__name__)

# Bump when the conversion below, or what the loader keeps beside it (FACTS), changes: caches made by another
# version are then ignored, not reused.
CONVERSION = 2
FACTS = "facts.json"  # what the loader asked to keep of the fp32 model: it is not loaded again
# Activations of int8 layers are quantised per row in groups of this many input channels (OpenVINO's CPU plugin,
# DYNAMIC_QUANTIZATION_GROUP_SIZE), or of the largest fewer that divides every layer's width (quantisation_group): a
# layer whose width the size does not divide runs on bf16 kernels instead, as ViT-L/14's 768-wide text layers did
# in groups of 1024 (a lone text 20.4 ms, then 11.4 in groups of 768). Groups of 256 were 1-6 % slower on ViT-L/14
# and as accurate; of 32, 1.4x slower; one a row, 1.45x (bench/int8_groups.py, docs/performance.md).
INT8_GROUP = 1024
MADV_DONTNEED = 4
# A lone image's tokens are padded to a multiple of this many rows, when that adds at most 1/PAD_MOST_EVERY more
# (image_padding). OpenVINO's bf16 matmuls handle a one-row tail slowly: a ViT-L/14 image (257 rows) took 457-479 ms
# padded to 264 and 493-531 ms unpadded; batches of 2 to 8 gained nothing, and ViT-B/32 (50 rows to 56) lost 11 %.
PAD_MULTIPLE, PAD_MOST_EVERY = 8, 32


class ImageTower(torch.nn.Module):
    """What OpenVINO converts: pixels, and as many extra tokens per image as `padding` is long (masked out of
    attention, so the vectors do not change), to projected image features. transformers' vision forward, with
    the padding added after its embeddings."""

    def __init__(self, model: CLIPModel):
        super().__init__()
        self.vision, self.projection = model.vision_model, model.visual_projection

    def forward(self, pixel_values: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        vision = self.vision
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        images, tokens, width = hidden.shape
        extra = padding.shape[0]
        hidden = torch.cat([hidden, hidden.new_zeros(images, extra, width)], 1)
        ignored = torch.cat([hidden.new_zeros(tokens), hidden.new_full((extra,), float("-inf"))])
        last = vision.encoder(inputs_embeds=hidden, attention_mask=ignored.view(1, 1, 1, -1)).last_hidden_state
        return self.projection(vision.post_layernorm(last[:, 0, :]))


class TextTower(torch.nn.Module):
    """What OpenVINO converts: padded token ids and their mask to projected text features."""

    def __init__(self, model: CLIPModel):
        super().__init__()
        self.text, self.projection = model.text_model, model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.projection(self.text(input_ids=input_ids, attention_mask=attention_mask).pooler_output)


def weights_kind(precision: str) -> str:
    """The IR a format compiles from: int8 weights for int8, the fp32 weights for fp32 and bf16."""
    return "int8" if precision == "int8" else "fp32"


def converted(load: Callable[[], CLIPModel], model_dir: Path, cache_root: Path, precision: str,
              facts_of: Callable[[CLIPModel], dict]) -> tuple[Path, dict]:
    """The directory holding both towers' IR for `precision`, and what `facts_of` said of the model when it was
    converted. Made from the fp32 model that `load` gives, unless a finished conversion of the same model files is
    cached already: then the model is never loaded."""
    kind = weights_kind(precision)
    stem = f"openvino-{Path(model_dir).name}-{kind}"  # one lock, and one conversion kept, per model and kind
    target = cache_root / f"{stem}-{_fingerprint(model_dir, kind)}"
    try:
        if not (target / ".complete").is_file():
            cache_root.mkdir(parents=True, exist_ok=True)
            with open(cache_root / f".{stem}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # the workers loading beside this one wait here, then reuse it
                if not (target / ".complete").is_file():
                    started = time.perf_counter()
                    _convert(load(), kind, cache_root, target, facts_of)
                    log.info("converted the model for OpenVINO", extra={
                        "event": "openvino_converted", "path": str(target),
                        "seconds": round(time.perf_counter() - started, 2)})
                    _drop_older(target, stem)
        return target, json.loads((target / FACTS).read_text())
    except OSError as exc:
        from ..settings import env_var

        raise ModelLoadError(f"could not keep OpenVINO's converted model in {cache_root} ({exc}); set "
                             f"{env_var('model_cache_dir')} to a writable directory") from None


def _drop_older(target: Path, stem: str) -> None:
    """Conversions of earlier versions of the same model and kind: nothing will read them again."""
    for other in target.parent.glob(f"{glob.escape(stem)}-*"):
        if other != target and other.is_dir() and re.fullmatch(r"[0-9a-f]{16}", other.name[len(stem) + 1:]):
            shutil.rmtree(other, ignore_errors=True)


def _fingerprint(model_dir: Path, kind: str) -> str:
    """Changes with the model's files, the conversion and the versions that made it."""
    files = sorted(p for p in Path(model_dir).iterdir() if p.is_file())
    facts = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    versions = (CONVERSION, kind, ov.__version__, torch.__version__)
    return hashlib.sha256(json.dumps([facts, versions], default=str).encode()).hexdigest()[:16]


def _convert(model: CLIPModel, kind: str, cache_root: Path, target: Path, facts_of: Callable[[CLIPModel], dict]
             ) -> None:
    """Trace both towers into a staging directory, renamed into place only once complete."""
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache_root))
    try:
        (staging / FACTS).write_text(json.dumps(facts_of(model)))
        side = model.config.vision_config.image_size
        ids = torch.ones(2, 8, dtype=torch.long)
        with warnings.catch_warnings():  # the tracer's notes on transformers' Python branches, to a JSON log
            warnings.simplefilter("ignore")
            towers = _traced(model, side, ids)
        for name, tower in towers.items():
            if kind == "int8":
                compress_weights(tower)
            ov.save_model(tower, staging / f"{name}.xml", compress_to_fp16=False)
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _traced(model: CLIPModel, side: int, ids: torch.Tensor) -> dict[str, ov.Model]:
    """Both towers, batch and text length left open."""
    return {
        "image": ov.convert_model(ImageTower(model), example_input=(torch.zeros(1, 3, side, side), torch.zeros(3)),
                                  input=[("pixel_values", [-1, 3, side, side], ov.Type.f32),
                                         ("padding", [-1], ov.Type.f32)]),
        "text": ov.convert_model(TextTower(model), example_input={"input_ids": ids, "attention_mask": ids},
                                 input=[("input_ids", [-1, -1], ov.Type.i64),
                                        ("attention_mask", [-1, -1], ov.Type.i64)]),
    }


def compress_weights(model: ov.Model) -> int:
    """Every matmul's constant fp32 weight as int8 per output channel (symmetric) times a float scale: the
    pattern OpenVINO's CPU plugin runs with int8 kernels. Returns how many were compressed."""
    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        source = op.input_value(1).get_node()
        if source.get_type_name() != "Constant" or source.get_element_type() != ov.Type.f32:
            continue
        weight = source.get_data()
        if weight.ndim != 2:
            continue
        out_axis = 0 if op.get_attributes().get("transpose_b") else 1  # the axis of output channels
        scale = np.abs(weight).max(axis=1 - out_axis, keepdims=True) / 127
        scale[scale == 0] = 1
        quantised = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        restored = ops.multiply(ops.convert(ops.constant(quantised), ov.Type.f32),
                                ops.constant(scale.astype(np.float32)))
        op.input(1).replace_source_output(restored.output(0))
        count += 1
    return count


class OpenVINOTowers:
    """Both towers compiled for this worker's CPU; called from one thread at a time (the inference thread, or the
    load's guard before it starts), each tower with its own infer request."""

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, directory: Path, precision: str, threads: int, native_bf16: bool, pad_id: int,
                 max_tokens: int, image_tokens: int, int8_group: int = INT8_GROUP):
        """`int8_group`: the most input channels per activation group in int8 (0: int8 weights only)."""
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" or (precision == "int8" and native_bf16)
            else "f32",
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            # Pinned threads of several workers land on the same cores: two 1-thread workers ran at half speed.
            "ENABLE_CPU_PINNING": False,
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": int8_group if precision == "int8" else 0,
        }
        self.directory, self.pad_id, self.max_tokens, self.image_tokens = directory, pad_id, max_tokens, image_tokens
        self._image, self._text = (_compiled(core, directory / f"{name}.xml", config) for name in ("image", "text"))

    def images(self, pixels: torch.Tensor, padding: int | None = None) -> torch.Tensor:
        """`padding` tokens per image, image_padding's unless told (the tests compare both)."""
        if padding is None:
            padding = image_padding(len(pixels), self.image_tokens)
        return torch.from_numpy(self._image.infer([pixels.float().numpy(), np.zeros(padding, np.float32)])[0])

    def texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Padded to a few shapes (`text_shape`): the CPU plugin keeps kernels for every input shape it meets, and
        texts come in thousands (a tiny stand-in grew by 150 MiB over 900 random passes)."""
        rows, length = input_ids.shape
        shape = text_shape(rows, length, self.max_tokens)
        ids = torch.full(shape, self.pad_id, dtype=torch.long)
        mask = torch.zeros(shape, dtype=torch.long)
        ids[:rows, :length], mask[:rows, :length] = input_ids, attention_mask
        ids[rows:], mask[rows:] = ids[rows - 1], mask[rows - 1]  # spare rows repeat a real one: no empty row
        return torch.from_numpy(self._text.infer([ids.numpy(), mask.numpy()])[0][:rows])

    def release_file_pages(self) -> int:
        """Drop this process's view of the IR's weight files, once the compiled layers hold their own (packed)
        copies; a page read again later comes back from the file. Returns the bytes of mappings dropped."""
        dropped = 0
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for start, end in _mappings(self.directory):
            if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
                dropped += end - start
        return dropped


def _compiled(core: ov.Core, path: Path, config: dict) -> ov.InferRequest:
    """One tower compiled, its int8 activations quantised in groups that fit its layers."""
    model = core.read_model(path)
    if most := config["DYNAMIC_QUANTIZATION_GROUP_SIZE"]:
        config = config | {"DYNAMIC_QUANTIZATION_GROUP_SIZE": quantisation_group(model, most)}
    return core.compile_model(model, "CPU", config).create_infer_request()


def quantisation_group(model: ov.Model, most: int) -> int:
    """The largest group size up to `most` that divides the input width of every matmul by a weight: ViT-L/14's
    text layers (768 and 3072 wide) took 1024 for their wider half only."""
    widths = {op.input(0).get_partial_shape()[-1].get_length() for op in model.get_ordered_ops()
              if op.get_type_name() == "MatMul" and op.input(1).get_partial_shape().rank.get_length() == 2}
    common = math.gcd(*widths)
    return max(size for size in range(1, min(common, most) + 1) if common % size == 0)


def text_shape(rows: int, length: int, max_tokens: int) -> tuple[int, int]:
    """(rows, tokens) rounded up to a few shapes: rows to 1, 2, 3, 4, 6, 8, 12, 16... (less than half more), tokens
    to a multiple of 8 (at most `max_tokens`); one text alone keeps its length, since padding cost a query up to a
    quarter more time (9 tokens padded to 16). Texts up to 256 x 77 meet 227 shapes."""
    if rows == 1:
        return 1, length
    top = 1 << (rows - 1).bit_length()  # the power of two at or above rows
    return (top * 3 // 4 if rows <= top * 3 // 4 else top), min(-(-length // 8) * 8, max_tokens)


def image_padding(images: int, tokens: int) -> int:
    """Tokens to add to each image of a pass of `images`: a lone image's up to a multiple of PAD_MULTIPLE rows,
    when that adds at most 1/PAD_MOST_EVERY more work; none to a batch (see PAD_MULTIPLE)."""
    extra = -tokens % PAD_MULTIPLE
    return extra if images == 1 and extra * PAD_MOST_EVERY <= tokens else 0


def _mappings(directory: Path) -> list[tuple[int, int]]:
    """Address ranges where this process maps a file of `directory` (read from /proc/self/maps)."""
    prefix = str(directory.resolve())
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip().startswith(prefix):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges
