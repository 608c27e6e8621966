"""What CLIPModel's get_image_features / get_text_features return, as the rows the service uses: the projection
(transformers 5 wraps it in an output object, 4.x returned the tensor) and float32 unit vectors on the CPU."""

from __future__ import annotations

import torch


def pooled(output: torch.Tensor | object) -> torch.Tensor:
    """The projected features, whichever transformers returned them."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def unit_rows(output: torch.Tensor | object) -> torch.Tensor:
    """The features as float32 unit rows on the CPU: what every response carries, and what the guard compares."""
    return torch.nn.functional.normalize(pooled(output).float(), dim=-1).cpu()
