"""CLIP's two towers as the encoder calls them, whichever engine computes them: pixels to image features, token
ids to text features. torch runs them on GPUs and, with CLIP_CPU_ENGINE=torch, on CPUs; OpenVINO on CPUs
(clipsvc.encoder.openvino_towers)."""

from __future__ import annotations

from typing import Protocol

import torch
from transformers import CLIPModel

from .features import pooled


class Towers(Protocol):
    """What the encoder, the accuracy guard and the benches need of an engine."""

    device: torch.device
    dtype: torch.dtype  # what pixel batches are handed in as

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, side, side) normalised pixels -> (n, embedding_dim) projected features."""

    def texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(n, tokens) padded ids and their mask -> (n, embedding_dim) projected features."""


class TorchTowers:
    """transformers' CLIPModel, in whatever format clipsvc.encoder.precision made it."""

    def __init__(self, model: CLIPModel):
        self.model = model
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_image_features(pixel_values=pixels))

    def texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_text_features(input_ids=input_ids.to(self.device),
                                                   attention_mask=attention_mask.to(self.device)))
