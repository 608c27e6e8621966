"""Loading CLIP in a worker: the device (`CLIP_DEVICE=auto` is resolved here, after the fork), the dtype, the
weights, tokenizer and image processor, and the two records the start-up log and /meta report: what the model is
and how the worker serves it."""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from ..settings import Settings, cpu_count, env_var
from . import precision as formats
from .modeldir import ModelLoadError, model_cache_root
from .towers import TorchTowers, Towers

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
    engine: str  # what computes the towers: torch, or OpenVINO on a CPU (CLIP_CPU_ENGINE)
    dtype: str
    threads: int  # threads per forward pass (with dynamic_threads, the most)
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
    """What load_model gives: the towers in their format, the tokenizer and processor, and how the load went."""

    towers: Towers
    tokenizer: CLIPTokenizer
    processor: CLIPImageProcessorPil
    facts: ModelFacts
    engine: str
    precision: str
    precision_cosine: float | None
    precision_fallback: bool
    packed_weights: bool
    seconds: float


class Built(NamedTuple):
    """What an engine's loader gives load_model: the towers, the logit scale, whether they are packed, the guard's
    worst cosine (None: no guard) and whether it refused the chosen format (then the towers compute in fp32)."""

    towers: Towers
    logit_scale: float
    packed: bool
    cosine: float | None
    fell_back: bool


def pick_device(requested: str) -> torch.device:
    """`auto` takes the GPU when there is one; asking for CUDA without one is a start-up error.

    Only workers call this: the gunicorn master never imports torch, nor initialises CUDA before forking.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"{env_var('device')}={requested} but no CUDA device is available")
    return torch.device(requested)


def load_model(model_dir: Path, settings: Settings) -> Loaded:
    """The towers (on their device, in their precision, by their engine), tokenizer and processor from a resolved
    directory, as `settings` say.

    CLIP_CPU_PACKED_WEIGHTS (torch on a CPU, fp32 or bf16): linear layers get oneDNN's packed copy of their weights
    (clipsvc.encoder.packing). CLIP_CPU_ENGINE=openvino: clipsvc.encoder.openvino_towers. CLIP_PRECISION and the
    accuracy guard's CLIP_PRECISION_MIN_COSINE: clipsvc.encoder.precision.
    """
    started = time.perf_counter()
    transformers_logging.disable_progress_bar()  # a progress bar is not a JSON log line
    torch.set_num_threads(settings.threads_per_worker)
    target = pick_device(settings.device)
    chosen = formats.resolve(settings.precision, target)
    openvino = target.type == "cpu" and settings.cpu_engine == "openvino"
    try:
        tokenizer = CLIPTokenizer.from_pretrained(model_dir, local_files_only=True)
        processor = CLIPImageProcessorPil.from_pretrained(model_dir, local_files_only=True)
        config = CLIPConfig.from_pretrained(model_dir, local_files_only=True)
        guard = formats.threshold(chosen, settings.precision_min_cosine)
        # The guard's probe; OpenVINO's conversion also keeps its fp32 vectors, for later workers' guards.
        probe = (formats.Probe.build(processor, tokenizer, config.vision_config.image_size)
                 if guard > 0 or openvino else None)
        load = _load_openvino if openvino else _load_torch
        towers, logit_scale, packed, cosine, fell_back = load(model_dir, settings, target, config, chosen, guard,
                                                              probe, tokenizer.pad_token_id)
        _release_freed_heap()
        facts = _facts(config, logit_scale, model_dir)
        # Set the tokenizer's truncation once here: concurrent first calls would race to set it.
        tokenizer(["warm up"], truncation=True, max_length=facts.max_text_tokens)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises many types for a broken directory
        raise ModelLoadError(f"could not load the CLIP model from {model_dir}: {exc}") from exc
    return Loaded(towers, tokenizer, processor, facts, "openvino" if openvino else "torch",
                  "fp32" if fell_back else chosen, cosine, fell_back, packed, round(time.perf_counter() - started, 3))


def _load_torch(model_dir: Path, settings: Settings, target: torch.device, config: CLIPConfig, chosen: str,
                guard: float, probe: formats.Probe | None, pad_id: int) -> Built:
    """transformers' model converted (and packed) in place, measured against its own fp32 vectors."""
    model = _fp32_model(model_dir, target)
    logit_scale = _logit_scale(model)
    pack = settings.cpu_packed_weights and target.type == "cpu"
    reference = probe.vectors(TorchTowers(model)) if guard > 0 else None
    model, packed = formats.convert(model, chosen, pack)
    towers = TorchTowers(model)
    cosine = None if reference is None else formats.worst_cosine(probe.vectors(towers), reference)
    fell_back = _falls_back(chosen, cosine, guard)
    if fell_back:
        del towers, model  # converted in place: the fp32 weights are read again
        model, packed = formats.convert(_fp32_model(model_dir, target), "fp32", pack)
        towers = TorchTowers(model)
    return Built(towers, logit_scale, packed, cosine, fell_back)


def _load_openvino(model_dir: Path, settings: Settings, target: torch.device, config: CLIPConfig, chosen: str,
                   guard: float, probe: formats.Probe, pad_id: int) -> Built:
    """OpenVINO's towers from the cached conversion; transformers' model is loaded only to make a missing one,
    which also keeps the logit scale and the probe's fp32 vectors (the guard's reference). Imported here: the
    torch engine needs no OpenVINO."""
    from . import openvino_towers

    root = model_cache_root(settings.model_cache_dir)
    threads = settings.torch_threads or cpu_count()

    def facts_of(model: CLIPModel) -> dict:
        return {"logit_scale": _logit_scale(model), "probe": probe.vectors(TorchTowers(model)).tolist()}

    def compiled(precision: str) -> tuple[Towers, dict]:
        directory, kept = openvino_towers.converted(partial(_fp32_model, model_dir, target), model_dir, root,
                                                    precision, facts_of)
        return openvino_towers.OpenVINOTowers(directory, precision, threads, formats.native_bf16(),
                                              pad_id, config.text_config.max_position_embeddings,
                                              _image_tokens(config)), kept

    towers, kept = compiled(chosen)
    cosine = None if guard <= 0 else formats.worst_cosine(probe.vectors(towers), torch.tensor(kept["probe"]))
    fell_back = _falls_back(chosen, cosine, guard)
    if fell_back:
        del towers
        towers, kept = compiled("fp32")
    towers.release_file_pages()
    return Built(towers, kept["logit_scale"], False, cosine, fell_back)


def _falls_back(chosen: str, cosine: float | None, guard: float) -> bool:
    """Whether the guard refuses the chosen format (then said in a warning)."""
    if cosine is None or cosine >= guard:
        return False
    log.warning("%s is too inaccurate for this model: worst cosine %.6f against fp32 on the probe, below %s; "
                "computing in fp32 instead", chosen, cosine, guard,
                extra={"event": "precision_fallback", "precision": chosen, "precision_cosine": cosine,
                       "min_cosine": guard})
    return True


def _facts(config: CLIPConfig, logit_scale: float, model_dir: Path) -> ModelFacts:
    vision = config.vision_config
    return ModelFacts(
        model_path=str(model_dir),
        model_name=Path(model_dir).name,
        embedding_dim=config.projection_dim,
        image_size=vision.image_size,
        max_text_tokens=config.text_config.max_position_embeddings,
        image_tokens=_image_tokens(config),
        model_created=int((Path(model_dir) / "config.json").stat().st_mtime),
        logit_scale=logit_scale,
    )


def _image_tokens(config: CLIPConfig) -> int:
    """Rows of one image in the vision transformer: its patches and the class token."""
    return (config.vision_config.image_size // config.vision_config.patch_size) ** 2 + 1


def _logit_scale(model: CLIPModel) -> float:
    return round(model.logit_scale.detach().exp().item(), 4)


def _fp32_model(model_dir: Path, target: torch.device) -> CLIPModel:
    # weights_only: a pytorch_model.bin is unpickled without running arbitrary code. On the device inside the
    # caller's try: a GPU out of memory is a load failure too.
    model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True, weights_only=True)
    return model.to(target).eval()


def _release_freed_heap() -> None:
    """Hand back to the OS the heap that conversion and packing freed (the scaled fp32 copies of the MLP weights:
    ~380 MiB in a ViT-L/14 fp32 worker), which glibc otherwise keeps as the worker's private memory. Reference
    cycles go first: after OpenVINO's conversion one held transformers' model and its weights file's mapping
    (1.8 GB of a ViT-L/14 worker)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
