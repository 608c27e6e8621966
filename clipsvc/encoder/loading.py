"""Loading CLIP in a worker: the device (`CLIP_DEVICE=auto` is resolved here, after the fork), the dtype, the
weights, tokenizer and image processor, and the two records the start-up log and /meta report: what the model is
and how the worker serves it."""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from ..settings import env_var
from . import precision as formats
from .modeldir import ModelLoadError

log = logging.getLogger(__name__)

# Images per forward pass, but with batching on a GPU (CLIP_MAX_BATCH there): bounds activation memory for a request
# with many images. /meta reports it as max_batch (ServingFacts); the CLIP_MAX_BATCH setting's doc quotes it
# (tests/test_settings.py).
IMAGE_BATCH = 8


@dataclass(frozen=True)
class ModelFacts:
    """What the model is, read from its files: the same in every worker that loads them."""

    model_path: str
    model_name: str
    embedding_dim: int
    image_size: int
    max_text_tokens: int
    image_tokens: int  # what one image is to the vision tower: its patches and the class token
    model_created: int  # the model's config.json's modification time (Unix seconds), the same in every worker
    logit_scale: float


@dataclass(frozen=True)
class ServingFacts:
    """How this worker serves the model: the settings as the load resolved them (ClipEncoder.build)."""

    device: str
    dtype: str
    threads: int  # torch threads per forward pass (with dynamic_threads, the most)
    load_seconds: float
    batching: bool  # the inference thread merges concurrent requests' rows
    max_batch: int  # images per forward pass
    dynamic_threads: bool  # threads shrink while other workers compute too
    packed_weights: bool  # oneDNN's packed linear weights (CPU)
    precision: str  # what both towers compute in (CLIP_PRECISION, resolved)
    precision_cosine: float | None  # the guard's worst cosine against fp32 on the probe (None: not run)
    precision_fallback: bool  # the guard found the chosen format too inaccurate: fp32 instead
    text_cache_size: int  # text vectors kept (CLIP_TEXT_CACHE_SIZE)


class Loaded(NamedTuple):
    """What load_model gives: the model in its format, its tokenizer and processor, and how the load went."""

    model: CLIPModel
    tokenizer: CLIPTokenizer
    processor: CLIPImageProcessorPil
    facts: ModelFacts
    precision: str
    precision_cosine: float | None
    precision_fallback: bool
    packed_weights: bool
    seconds: float


def pick_device(requested: str) -> torch.device:
    """`auto` takes the GPU when there is one; asking for CUDA without one is a start-up error.

    Only workers call this: the gunicorn master never imports torch, nor initialises CUDA before forking.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"{env_var('device')}={requested} but no CUDA device is available")
    return torch.device(requested)


def load_model(model_dir: Path, device: str = "auto", threads: int | None = None, packed_weights: bool = False,
                precision: str = "fp32", min_cosine: float | None = None) -> Loaded:
    """The model (eval mode, on its device, in its precision), tokenizer and processor from a resolved directory.

    `packed_weights` (CPU, fp32 or bf16): linear layers get oneDNN's packed copy of their weights
    (clipsvc.encoder.packing); image passes are 15-30% faster with 2 threads, but in fp32 the copy is this
    process's own, not the weights file's pages that every worker shares. `precision` (CLIP_PRECISION) and the
    accuracy guard's `min_cosine`: clipsvc.encoder.precision.
    """
    started = time.perf_counter()
    transformers_logging.disable_progress_bar()  # a progress bar is not a JSON log line
    if threads is not None:
        torch.set_num_threads(threads)
    target = pick_device(device)
    chosen = formats.resolve(precision, target)
    cosine, fell_back = None, False
    try:
        model = _fp32_model(model_dir, target)
        tokenizer = CLIPTokenizer.from_pretrained(model_dir, local_files_only=True)
        processor = CLIPImageProcessorPil.from_pretrained(model_dir, local_files_only=True)
        pack = packed_weights and target.type == "cpu"
        if chosen == "fp32":
            model, packed_weights = formats.convert(model, "fp32", pack)
        else:
            guard = formats.threshold(chosen, min_cosine)
            probe = (formats.Probe.build(processor, tokenizer, model.config.vision_config.image_size)
                     if guard > 0 else None)  # no guard, no probe to preprocess
            model, packed_weights, cosine, fell_back = _in_precision(model, chosen, guard, probe, pack)
            if fell_back:
                model, packed_weights = formats.convert(_fp32_model(model_dir, target), "fp32", pack)
        _release_freed_heap()
        # Set the tokenizer's truncation once here: concurrent first calls would race to set it.
        tokenizer(["warm up"], truncation=True, max_length=model.config.text_config.max_position_embeddings)
    except Exception as exc:  # transformers raises many types for a broken directory
        raise ModelLoadError(f"could not load the CLIP model from {model_dir}: {exc}") from exc
    vision = model.config.vision_config
    facts = ModelFacts(
        model_path=str(model_dir),
        model_name=Path(model_dir).name,
        embedding_dim=model.config.projection_dim,
        image_size=vision.image_size,
        max_text_tokens=model.config.text_config.max_position_embeddings,
        image_tokens=(vision.image_size // vision.patch_size) ** 2 + 1,
        model_created=int((Path(model_dir) / "config.json").stat().st_mtime),
        logit_scale=round(model.logit_scale.detach().exp().item(), 4),
    )
    return Loaded(model, tokenizer, processor, facts, "fp32" if fell_back else chosen, cosine, fell_back,
                  packed_weights, round(time.perf_counter() - started, 3))


def _fp32_model(model_dir: Path, target: torch.device) -> CLIPModel:
    # weights_only: a pytorch_model.bin is unpickled without running arbitrary code. On the device inside the
    # caller's try: a GPU out of memory is a load failure too.
    model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True, weights_only=True)
    return model.to(target).eval()


def _in_precision(model: CLIPModel, precision: str, min_cosine: float, probe: formats.Probe | None, pack: bool
                  ) -> tuple[CLIPModel | None, bool, float | None, bool]:
    """The model converted (and packed), whether it is packed, the guard's worst cosine against fp32, and whether
    it must fall back to fp32 (then no model: the caller reloads it)."""
    reference = probe.vectors(model) if probe is not None else None
    model, packed = formats.convert(model, precision, pack)
    if reference is None:
        return model, packed, None, False
    cosine = formats.worst_cosine(probe.vectors(model), reference)
    if cosine >= min_cosine:
        return model, packed, cosine, False
    log.warning("%s is too inaccurate for this model: worst cosine %.6f against fp32 on the probe, below %s; "
                "computing in fp32 instead", precision, cosine, min_cosine,
                extra={"event": "precision_fallback", "precision": precision, "precision_cosine": cosine,
                       "min_cosine": min_cosine})
    return None, False, cosine, True


def _release_freed_heap() -> None:
    """Hand back to the OS the heap that conversion and packing freed (the scaled fp32 copies of the MLP weights:
    ~380 MiB in a ViT-L/14 fp32 worker), which glibc otherwise keeps as the worker's private memory."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
