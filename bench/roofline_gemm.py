"""The roofline's half of bench/roofline.py: a tower's matmuls as GEMM shapes read from the model's config, and
plain matrix multiplies timed at those shapes with each kernel this machine offers, per format.

A tower's matmul work, per layer: q, k, v and out (d x d), fc1 (d x inter), fc2 (inter x d) on M = batch x tokens
rows, and attention's two batched matmuls (Q.K^T and A.V, batch x heads of them); once per pass, the image tower's
patch embedding (a convolution that is a matmul: 3.patch^2 -> d per patch) and the projection on the pooled rows.
Kernels per format: fp32 torch.matmul and OpenVINO f32 MatMul; bf16 torch.matmul on bf16 tensors and OpenVINO
MatMul with INFERENCE_PRECISION_HINT=bf16; int8 torch._int_mm (int8 x int8 -> int32) and OpenVINO MatMul on int8
weights with dynamic quantization of the activations (DYNAMIC_QUANTIZATION_GROUP_SIZE 32, 128 and K, under each
precision hint). int8 kernels multiply weights: attention's activation x activation matmuls have none. Where
the rows are few (COLD_ROWS), each timed call multiplies by distinct weights, as a model's layers do.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = ("fp32", "bf16", "int8")
REFERENCE = (2056, 1024, 4096)  # issue 31's single shape: M x K by K x N, timed with 2 threads
REFERENCE_THREADS = 2
REFERENCE_ISSUE = {"fp32": 161, "bf16": 384, "int8": 510}  # GOP/s the issue measured on its EPYC
MIN_REPEATS, MIN_SECONDS, MAX_REPEATS = 3, 0.05, 50
# Below this many rows a weight matmul waits on memory more than on arithmetic: one weight matrix timed again and
# again would sit in the CPU's cache, which a model's layers, each with its own weights, never do. So each call
# there multiplies by distinct copies of the weights, more bytes than twice the last-level cache (at most COPIES).
COLD_ROWS, COPIES = 256, 64


@functools.cache
def last_level_cache() -> int:
    """Bytes of the largest CPU cache (sysfs), 32 MiB where it cannot be read."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        sizes.append(int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1) if text[-1] in "KM"
                     else int(text))
    return max(sizes, default=32 << 20)


def copies(gemm: Gemm) -> int:
    """How many distinct weight matrices one timed call multiplies by (see COLD_ROWS); 1 for activations."""
    if not gemm.weights or gemm.m >= COLD_ROWS:
        return 1
    return max(1, min(COPIES, -(-2 * last_level_cache() // (gemm.k * gemm.n))))  # int8: the fewest bytes


@dataclass(frozen=True)
class Gemm:
    """`count` multiplies of (batch x) M x K by K x N: a weight matmul when `weights`, else activations both sides."""

    name: str
    count: int
    m: int
    k: int
    n: int
    batch: int = 1
    weights: bool = True

    @property
    def flops(self) -> int:
        return 2 * self.count * self.batch * self.m * self.k * self.n


def image_tokens(vision: dict) -> int:
    """Patches and the class token: 257 for ViT-L/14 at 224."""
    return (vision["image_size"] // vision["patch_size"]) ** 2 + 1


def tower_gemms(config: dict, tower: str, batch: int, tokens: int) -> list[Gemm]:
    """Every matmul of one pass of `tower` ("image" or "text") over `batch` rows of `tokens` tokens each."""
    part = config["vision_config" if tower == "image" else "text_config"]
    d, inter, layers, heads = (part["hidden_size"], part["intermediate_size"], part["num_hidden_layers"],
                               part["num_attention_heads"])
    rows = batch * tokens
    gemms = [Gemm("q,k,v,out", 4 * layers, rows, d, d), Gemm("fc1", layers, rows, d, inter),
             Gemm("fc2", layers, rows, inter, d),
             Gemm("attention Q.K^T", layers, tokens, d // heads, tokens, batch * heads, weights=False),
             Gemm("attention A.V", layers, tokens, tokens, d // heads, batch * heads, weights=False),
             Gemm("projection", 1, batch, d, config["projection_dim"])]
    if tower == "image":
        gemms.append(Gemm("patch embedding", 1, batch * (tokens - 1), 3 * part["patch_size"] ** 2, d))
    return gemms


def best_seconds(run: Callable[[], object]) -> float:
    """The fastest of a few calls (at least MIN_REPEATS, MIN_SECONDS in all): what the kernel can do."""
    times: list[float] = []
    while len(times) < MIN_REPEATS or (sum(times) < MIN_SECONDS and len(times) < MAX_REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


class TorchKernels:
    """torch.matmul in fp32 and bf16, torch._int_mm for int8 weights; operands made once per shape."""

    backend = "torch"

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.calls: dict[tuple, dict[str, Callable[[], object]]] = {}

    def kernels(self, gemm: Gemm) -> dict[str, Callable[[], object]]:
        """format -> a call doing copies(gemm) multiplies of this shape, each by its own weights."""
        key = (gemm.batch, gemm.m, gemm.k, gemm.n, gemm.weights)
        if key not in self.calls:
            torch = self.torch
            lead = (gemm.batch,) if gemm.batch > 1 else ()
            a = torch.randn(*lead, gemm.m, gemm.k)
            bs = [torch.randn(*lead, gemm.k, gemm.n) for _ in range(copies(gemm))]
            a16, b16s = a.bfloat16(), [b.bfloat16() for b in bs]
            calls = {"fp32": lambda: [torch.matmul(a, b) for b in bs],
                     "bf16": lambda: [torch.matmul(a16, b) for b in b16s]}
            if gemm.weights:
                a8 = torch.randint(-128, 128, (gemm.m, gemm.k), dtype=torch.int8)
                b8s = [torch.randint(-128, 128, (gemm.k, gemm.n), dtype=torch.int8) for _ in bs]
                calls["int8"] = lambda: [torch._int_mm(a8, b8) for b8 in b8s]
            self.calls[key] = calls
        return self.calls[key]


class OpenVinoKernels:
    """One-MatMul OpenVINO models: activations a Parameter, weights a Constant (f32, or int8 with a per-channel
    scale as nncf's INT8_SYM stores them), compiled once per shape and checked against numpy."""

    backend = "openvino"
    GROUPS = (32, 128)  # and K: one group per row (per token)

    def __init__(self, threads: int):
        import openvino as ov

        self.ov = ov
        self.core = ov.Core()
        self.config = {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False, "PERFORMANCE_HINT": "LATENCY"}
        self.calls: dict[tuple, dict[str, list[Callable[[], object]]]] = {}
        self.rng = np.random.default_rng(0)

    def kernels(self, gemm: Gemm) -> dict[str, list[Callable[[], object]]]:
        """format -> calls doing copies(gemm) multiplies of this shape, one per configuration worth trying."""
        key = (gemm.batch, gemm.m, gemm.k, gemm.n, gemm.weights)
        if key not in self.calls:
            self.calls[key] = self._weights(gemm) if gemm.weights else self._activations(gemm)
        return self.calls[key]

    def _compile(self, model, inputs: list[np.ndarray], expected: np.ndarray, tolerance: float,
                 **config) -> Callable[[], object]:
        request = self.core.compile_model(model, "CPU", {**self.config, **config}).create_infer_request()
        got = request.infer(inputs)[0]
        error = float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-30))
        if not error < tolerance:  # a folded constant or a wrong pattern would show here
            raise RuntimeError(f"OpenVINO MatMul {model.friendly_name} {config}: relative error {error:.3g}")
        return lambda: request.infer(inputs)

    def _activations(self, gemm: Gemm) -> dict[str, list[Callable[[], object]]]:
        ops = self.ov.opset13
        a = self.rng.standard_normal((gemm.batch, gemm.m, gemm.k), dtype=np.float32)
        b = self.rng.standard_normal((gemm.batch, gemm.k, gemm.n), dtype=np.float32)
        left, right = ops.parameter(a.shape, np.float32), ops.parameter(b.shape, np.float32)
        model = self.ov.Model([ops.matmul(left, right, False, False)], [left, right], "attention")
        expected = a @ b
        return {"fp32": [self._compile(model, [a, b], expected, 1e-3, INFERENCE_PRECISION_HINT="f32")],
                "bf16": [self._compile(model, [a, b], expected, 5e-2, INFERENCE_PRECISION_HINT="bf16")]}

    def _weights(self, gemm: Gemm) -> dict[str, list[Callable[[], object]]]:
        """copies(gemm) MatMuls of the one input, each by its own weights, in one model (outputs checked: the
        first)."""
        ov, ops = self.ov, self.ov.opset13
        a = self.rng.standard_normal((gemm.m, gemm.k), dtype=np.float32)
        ws = [self.rng.standard_normal((gemm.k, gemm.n), dtype=np.float32) for _ in range(copies(gemm))]
        x = ops.parameter(a.shape, np.float32, name="x")
        model = ov.Model([ops.matmul(x, ops.constant(w), False, False) for w in ws], [x], "weights")
        expected = a @ ws[0]
        calls = {"fp32": [self._compile(model, [a], expected, 1e-3, INFERENCE_PRECISION_HINT="f32")],
                 "bf16": [self._compile(model, [a], expected, 5e-2, INFERENCE_PRECISION_HINT="bf16")]}
        x = ops.parameter(a.shape, np.float32, name="x")
        outputs = []
        for w in ws:
            scale = (np.abs(w).max(axis=0) / 127).astype(np.float32)[:, None]  # per output channel, as INT8_SYM
            w8 = np.clip(np.round(w.T / scale), -127, 127).astype(np.int8)  # N x K, as nncf stores it
            weights = ops.multiply(ops.convert(ops.constant(w8), ov.Type.f32), ops.constant(scale))
            outputs.append(ops.matmul(x, weights, False, True))
            if len(outputs) == 1:
                expected = a @ (w8.astype(np.float32) * scale).T
        model = ov.Model(outputs, [x], "int8 weights")
        calls["int8"] = [self._compile(model, [a], expected, 5e-2, INFERENCE_PRECISION_HINT=hint,
                                       DYNAMIC_QUANTIZATION_GROUP_SIZE=group)
                         for hint in ("f32", "bf16") for group in (*self.GROUPS, gemm.k)]
        return calls


def measure(kernels: TorchKernels | OpenVinoKernels, gemms: list[Gemm]) -> dict[str, list[float | None]]:
    """format -> seconds of one multiply per shape (the best configuration; None: no kernel of that format)."""
    seconds: dict[str, list[float | None]] = {f: [] for f in FORMATS}
    for gemm in gemms:
        calls = kernels.kernels(gemm)
        for fmt in FORMATS:
            options = calls.get(fmt)
            options = [options] if callable(options) else options or []
            seconds[fmt].append(min(best_seconds(call) for call in options) / copies(gemm) if options else None)
        kernels.calls.clear()  # compiled models hold their weights: one shape's at a time (ViT-L/14 ran out of 24 GB)
    return seconds


def floors(gemms: list[Gemm], measured: dict[str, dict[str, list[float | None]]]) -> dict[str, dict]:
    """Per format: the tower's matmuls at the best kernel per shape over every backend's `measured` (backend ->
    measure's result), as seconds, GFLOP/s and each backend's share of those seconds. int8 has no kernel for
    attention's activation x activation matmuls: they count at the best of fp32 and bf16 there, as int8 engines
    compute them."""
    best: dict[str, list[tuple[float, str] | None]] = {
        fmt: [min(((m[fmt][i], name) for name, m in measured.items() if m[fmt][i] is not None), default=None)
              for i in range(len(gemms))] for fmt in FORMATS}
    for i, gemm in enumerate(gemms):
        if not gemm.weights:
            best["int8"][i] = min((t for t in (best["fp32"][i], best["bf16"][i]) if t is not None), default=None)
    flops = sum(g.flops for g in gemms)
    out = {}
    for fmt in FORMATS:
        if any(t is None for t in best[fmt]):
            continue
        spent = [(g.count * t, name) for g, (t, name) in zip(gemms, best[fmt], strict=True)]
        seconds = sum(t for t, _ in spent)
        shares = {name: sum(t for t, n in spent if n == name) / seconds for name in measured}
        out[fmt] = {"seconds": seconds, "gflops": flops / seconds / 1e9, "shares": shares}
    return out


def reference_gemm() -> Gemm:
    m, k, n = REFERENCE
    return Gemm("issue 31 reference", 1, m, k, n)
