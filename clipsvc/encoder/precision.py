"""The numeric format both towers compute in (CLIP_PRECISION), and the accuracy guard that checks it at load.

The real CLIP weights cannot be tested where this service is built, and low precision hurts some weights more
than others (outlier channels). So each worker measures what it chose: a fixed probe of images and texts, built
here, goes through the model in fp32 and again in the chosen format; the worst cosine between the two is logged
and published in /meta, and below the threshold the worker falls back to fp32.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

from ..settings import env_var
from . import packing
from .features import unit_rows
from .modeldir import ModelLoadError
from .towers import Towers

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}
PACKABLE = ("fp32", "bf16")  # on CPUs (encoder.packing): fp16 is for GPUs, and int8 has its own kernels
# The guard's default threshold per format: measured worst cosines are ~0.9999 (bf16, fp16) and ~0.9995 (int8) on
# the stand-ins; real weights with outlier channels do worse, and a cosine of 0.99 still moves the 0-100 score
# by about one point.
MIN_COSINE = {"bf16": 0.999, "fp16": 0.999, "int8": 0.99}
PROBE_TEXTS = ("a photo of a dog", "a red car parked on a street at night",
               "Man staring at the moon, moon is made of mechanical parts", "a bowl of fruit on a wooden table")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere oneDNN emulates it, slower than
    fp32. torch tells only through private functions: if an upgrade removes them, fp32, with a warning, rather than
    a worker that cannot start."""
    cpu = torch.cpu
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError) as exc:
        log.warning("cannot tell whether this CPU has native bf16 (%s: torch %s); CLIP_PRECISION=auto takes fp32",
                    exc.__class__.__name__, torch.__version__, extra={"event": "bf16_unknown"})
        return False


def resolve(requested: str, device: torch.device) -> str:
    """`auto`: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32. Formats the device cannot run well are a
    start-up error, not a silent change."""
    if requested == "auto":
        return "fp16" if device.type == "cuda" else ("bf16" if native_bf16() else "fp32")
    if requested == "fp16" and device.type != "cuda":
        raise ModelLoadError(f"{env_var('precision')}=fp16 is for GPUs; on a CPU use bf16 (or auto)")
    if requested == "int8" and device.type != "cpu":
        raise ModelLoadError(f"{env_var('precision')}=int8 is for CPUs; on a GPU use fp16 (or auto)")
    return requested


def convert(model: CLIPModel, precision: str, pack: bool = False) -> tuple[CLIPModel, bool]:
    """The fp32 model in `precision`, in place where the format allows, and whether it is packed.

    `pack` (CPU, fp32 or bf16): linear layers get oneDNN's packed weights (encoder.packing), made from the fp32
    weights so that each is rounded once. int8 is dynamic quantisation of every Linear layer (int8 weights,
    activations quantised per batch), eager PyTorch's own CPU kernels (oneDNN / fbgemm with VNNI): torchao, its
    successor, needs torch.compile for fast int8 on CPUs, which would add a compile per worker start.
    """
    if precision == "int8":
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True), False
    packed = pack and precision in PACKABLE and packing.pack(model, DTYPES[precision])
    return model.to(DTYPES[precision]), packed


def probe_images(size: int) -> list[Image.Image]:
    """Three pictures made here: smooth gradients, hard edges, and noise (what quantisation errors show up on)."""
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    gradient = np.stack([x, y, 1 - x * y], -1) * 255
    checks = ((np.floor(x * 8) + np.floor(y * 8)) % 2)[..., None].repeat(3, -1) * 255
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3))
    return [Image.fromarray(a.astype(np.uint8), "RGB") for a in (gradient, checks, noise)]


@dataclass(frozen=True)
class Probe:
    """The probe, preprocessed once: pixel values and token ids as the model reads them."""

    pixels: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @classmethod
    def build(cls, processor: CLIPImageProcessorPil, tokenizer: CLIPTokenizer, size: int) -> Probe:
        pixels = processor(images=probe_images(size), return_tensors="pt")["pixel_values"]
        tokens = tokenizer(list(PROBE_TEXTS), padding=True, return_tensors="pt")
        return cls(pixels, tokens["input_ids"], tokens["attention_mask"])

    def vectors(self, towers: Towers) -> torch.Tensor:
        """Unit vectors of the probe's images, then its texts, as float32 on the CPU."""
        with torch.inference_mode():
            images = towers.images(self.pixels.to(towers.device, towers.dtype))
            texts = towers.texts(self.input_ids, self.attention_mask)
        return torch.cat([unit_rows(images), unit_rows(texts)])


def worst_cosine(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """The lowest cosine over the probe's rows; -1 where the format's output is not a number at all."""
    cosines = torch.nan_to_num((ours * reference).sum(dim=-1), nan=-1.0)
    return round(float(cosines.min()), 6)


def threshold(precision: str, configured: float | None) -> float:
    """CLIP_PRECISION_MIN_COSINE, or the format's default; 0 (and fp32) means no guard."""
    if precision == "fp32":
        return 0.0
    return MIN_COSINE[precision] if configured is None else configured
