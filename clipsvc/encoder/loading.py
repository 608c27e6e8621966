"""Loading CLIP in a worker: the device (`CLIP_DEVICE=auto` is resolved here, after the fork), the dtype, the
weights, tokenizer and image processor, and what the start-up log and /meta report about them."""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from ..settings import env_var
from .modeldir import ModelLoadError

# Rows per forward pass without batching: bounds activation memory for a request with many images.
IMAGE_BATCH = 8


@dataclass(frozen=True)
class EncoderInfo:
    """What /meta and the start-up log report about the loaded model."""

    model_path: str
    model_name: str
    embedding_dim: int
    image_size: int
    max_text_tokens: int
    image_tokens: int  # what one image is to the vision tower: its patches and the class token
    model_created: int  # the model's config.json's modification time (Unix seconds), the same in every worker
    device: str
    dtype: str
    threads: int
    load_seconds: float
    logit_scale: float = 100.0
    batching: bool = False
    max_batch: int = IMAGE_BATCH
    dynamic_threads: bool = False  # threads (the most) shrink while other workers compute too
    packed_weights: bool = False  # oneDNN's packed linear weights (CPU)

    def as_dict(self) -> dict:
        return asdict(self)


def pick_device(requested: str) -> torch.device:
    """`auto` takes the GPU when there is one; asking for CUDA without one is a start-up error.

    Only workers call this: the gunicorn master never imports torch, nor initialises CUDA before forking.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"{env_var('device')}={requested} but no CUDA device is available")
    return torch.device(requested)


def load_model(model_dir: Path, device: str = "auto", threads: int | None = None, packed_weights: bool = False
               ) -> tuple[CLIPModel, CLIPTokenizer, CLIPImageProcessorPil, EncoderInfo]:
    """The model (eval mode, on its device), tokenizer and processor from a resolved directory; see ClipEncoder.load."""
    started = time.perf_counter()
    transformers_logging.disable_progress_bar()  # a progress bar is not a JSON log line
    if threads is not None:
        torch.set_num_threads(threads)
    target = pick_device(device)
    # fp16 halves memory and doubles speed on GPUs; on CPUs fp32 is the fast (and exact) choice.
    dtype = torch.float16 if target.type == "cuda" else torch.float32
    try:
        # weights_only: a pytorch_model.bin is unpickled without running arbitrary code.
        model = CLIPModel.from_pretrained(model_dir, dtype=dtype, local_files_only=True, weights_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(model_dir, local_files_only=True)
        processor = CLIPImageProcessorPil.from_pretrained(model_dir, local_files_only=True)
        model.to(target).eval()  # inside the try: a GPU out of memory is a load failure too
        packed_weights = packed_weights and target.type == "cpu" and torch.backends.mkldnn.is_available()
        if packed_weights:
            model = _packed(model)
        # Set the tokenizer's truncation once here: concurrent first calls would race to set it.
        tokenizer(["warm up"], truncation=True, max_length=model.config.text_config.max_position_embeddings)
    except Exception as exc:  # transformers raises many types for a broken directory
        raise ModelLoadError(f"could not load the CLIP model from {model_dir}: {exc}") from exc
    info = EncoderInfo(
        model_path=str(model_dir),
        model_name=Path(model_dir).name,
        embedding_dim=model.config.projection_dim,
        image_size=model.config.vision_config.image_size,
        max_text_tokens=model.config.text_config.max_position_embeddings,
        image_tokens=(model.config.vision_config.image_size // model.config.vision_config.patch_size) ** 2 + 1,
        model_created=int((Path(model_dir) / "config.json").stat().st_mtime),
        device=str(target),
        dtype=str(dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        packed_weights=packed_weights,
        load_seconds=round(time.perf_counter() - started, 3),
        logit_scale=round(model.logit_scale.detach().exp().item(), 4),
    )
    return model, tokenizer, processor, info


def _packed(model: CLIPModel) -> CLIPModel:
    """The image tower with oneDNN linear layers (torch.utils.mkldnn), which hold their weights packed once.

    Only the image tower: its inputs have few shapes (rows per pass), while texts come in every length, and
    oneDNN keeps state per shape that made a worker's memory grow under varied texts.
    """
    with warnings.catch_warnings():  # the module is built on torch.jit.script_method, deprecated since torch 2.10
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.utils import mkldnn
    model.vision_model = mkldnn.to_mkldnn(model.vision_model)
    model.visual_projection = mkldnn.to_mkldnn(model.visual_projection)
    return model
