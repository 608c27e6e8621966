"""Encoders for tests and benchmarks, built as a worker builds its own (ClipEncoder.build), and one kind of item at
a time through the served path (ClipEncoder.encode)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipsvc.encoder.model import ClipEncoder
from clipsvc.encoder.pixels import pixel_batch
from clipsvc.settings import Settings


def cpu_settings(model_dir: Path, **changes) -> Settings:
    """A worker alone on the CPU with one torch thread, unless changed: in fp32 (the same vectors on any CPU) and
    without a text cache (each test's texts reach the model, whichever tests ran before)."""
    return Settings(**{"model_dir": model_dir, "device": "cpu", "workers": 1, "torch_threads": 1, "precision": "fp32",
                       "text_cache_size": 0, **changes})


def cpu_encoder(model_dir: Path, **changes) -> ClipEncoder:
    """A ready encoder, built from cpu_settings with `changes` (precision, cpu_packed_weights, text_cache_size...)."""
    return ClipEncoder.build(cpu_settings(model_dir, **changes))


def encode_images(encoder: ClipEncoder, images: Sequence[Image.Image]) -> np.ndarray:
    """(n, embedding_dim) unit rows, as a request of these images alone gets them."""
    return encoder.encode(images, []).images


def encode_texts(encoder: ClipEncoder, texts: Sequence[str]) -> np.ndarray:
    """(n, embedding_dim) unit rows, as a request of these texts alone gets them (past 77 tokens truncated)."""
    return encoder.encode([], texts).texts


def preprocess_images(encoder: ClipEncoder, images: Sequence[Image.Image]) -> torch.Tensor:
    """N×3×H×W float32 on the CPU, as the model's processor gives them (preprocessor_config.json): what the served
    path computes in two steps (image_rows in the request thread, pixel_batch in the forward pass)."""
    return pixel_batch(encoder.image_rows(images), encoder.pixels, torch.device("cpu"), torch.float32)
