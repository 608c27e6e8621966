"""Start-up in gunicorn's two places: the master checks (and unzips) the model, each worker loads it."""

from __future__ import annotations

import logging
from pathlib import Path

from .encoder import ClipEncoder
from .modeldir import resolve_model_dir
from .settings import Settings

log = logging.getLogger("clipsvc.lifecycle")

# The master resolves the model directory once; forked workers inherit it.
_model_dir: Path | None = None
# The one piece of per-worker global state: the encoder post_fork loads.
_encoder: ClipEncoder | None = None


def prepare_model(settings: Settings) -> Path:
    """In the master, before forking: find the model, unzip it if needed, check its files."""
    global _model_dir
    _model_dir = resolve_model_dir(settings.model_dir, settings.model_cache_dir)
    return _model_dir


def load_worker_encoder(settings: Settings) -> ClipEncoder:
    """In a worker, after forking: torch and CUDA are initialised here, never in the master."""
    global _encoder
    model_dir = _model_dir or resolve_model_dir(settings.model_dir, settings.model_cache_dir)
    _encoder = ClipEncoder.load(model_dir, device=settings.device, threads=settings.threads_per_worker)
    return _encoder


def current_encoder() -> ClipEncoder | None:
    """The encoder this worker loaded, or None outside gunicorn (tests pass their own)."""
    return _encoder
