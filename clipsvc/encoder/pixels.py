"""CLIP's image preprocessing, all of it: the cheap half (resize, crop) per request, the float half per batch.

Pictures arrive upright and RGB: clipsvc.parsing.images.decode_image converts every upload once, with its rules
for transparency and bit depth, and may have decoded a large one at a reduced scale (never below twice the size
the resize here aims at). Everything from there to the model's input tensor happens in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil

from ..picture import region_of


@dataclass(frozen=True)
class PixelRecipe:
    """CLIP's image preprocessing (preprocessor_config.json) in two halves: resize and centre-crop in uint8 on the
    CPU, with the Pillow calls and rounding that transformers' processor uses; rescale and normalise per batch on
    the model's device. Same pixels as the processor (float rounding aside) for about 60% of its CPU time (4.5
    against 7.8 ms for a 640×480 photo on the H100 machine's Xeon), and a quarter of the bytes to stack and copy."""

    short_side: int
    crop: tuple[int, int]  # height, width; at most short_side, so the crop never pads
    resample: int
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_processor(cls, processor: CLIPImageProcessorPil) -> PixelRecipe | None:
        """None when the config asks for more or other than resize, crop, rescale, normalise."""
        size, crop = processor.size, processor.crop_size
        if not (processor.do_resize and size.shortest_edge and not size.longest_edge and processor.do_center_crop
                and crop.height and crop.width and max(crop.height, crop.width) <= size.shortest_edge
                and processor.do_rescale and processor.do_normalize and not getattr(processor, "do_pad", False)):
            return None
        return cls(size.shortest_edge, (crop.height, crop.width), int(processor.resample),
                   float(processor.rescale_factor), tuple(processor.image_mean), tuple(processor.image_std))

    def resize_crop(self, image: Image.Image) -> torch.Tensor:
        """H×W×3 uint8 from an RGB picture: the processor's resize, then its centre crop, placed on the whole
        upright image even where decoding kept only part of it, or at a reduced scale (clipsvc.picture). Where
        the resized image would dwarf the crop (a 10 000 000 × 1 picture would be 2.24 billion pixels), or only
        part of it was kept, only the crop's box is resized: the same sampling, other float rounding (under half a
        level on average), at the crop's cost. Pillow's resize releases the GIL, so request threads run it in
        parallel."""
        region = region_of(image)
        width, height = region.source if region else image.size
        if width <= height:  # transformers' get_resize_output_image_size: the long side rounded down
            size = (self.short_side, int(self.short_side * height / width))
        else:
            size = (int(self.short_side * width / height), self.short_side)
        crop_height, crop_width = self.crop
        left, top = (size[0] - crop_width) // 2, (size[1] - crop_height) // 2
        if region is None and size[0] * size[1] <= 4 * crop_width * crop_height:
            cropped = image.resize(size, self.resample).crop((left, top, left + crop_width, top + crop_height))
        else:
            x, y = width / size[0], height / size[1]
            box = (left * x, top * y, (left + crop_width) * x, (top + crop_height) * y)
            box = region.in_picture(box, image.size) if region else box
            cropped = image.resize((crop_width, crop_height), self.resample, box=box)
        return torch.from_numpy(np.array(cropped))

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """N×H×W×3 uint8 -> N×3×H×W float32 (a channels-last view), on the batch's device."""
        mean, std = (torch.tensor(v, device=batch.device) for v in (self.mean, self.std))
        return batch.float().mul_(self.scale).sub_(mean).div_(std).permute(0, 3, 1, 2)


def crop_rows(images: Sequence[Image.Image], recipe: PixelRecipe | None,
              processor: CLIPImageProcessorPil) -> list[torch.Tensor]:
    """What a request thread hands to the forward pass: uint8 crops, or the processor's float rows (no recipe)."""
    not_rgb = sorted({image.mode for image in images if image.mode != "RGB"})
    if not_rgb:  # converting here would be a second conversion, with other rules (alpha dropped, not made white)
        raise ValueError(f"the encoder takes RGB pictures, not {', '.join(not_rgb)}: decode them with "
                         "clipsvc.parsing.images.decode_image")
    if recipe is None:
        return list(processor(images=list(images), return_tensors="pt")["pixel_values"])
    return [recipe.resize_crop(image) for image in images]


def pixel_batch(rows: list[torch.Tensor], recipe: PixelRecipe | None, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """Rows from crop_rows -> the model's input on `device`, normalised there when they are uint8."""
    batch = torch.stack(rows)
    if batch.dtype != torch.uint8:
        return batch.to(device, dtype)
    pixels = recipe.normalise(batch.to(device)).to(dtype)
    # On a CPU the channels-last view slows every layer after the patch embedding (ViT-B/32: 89-95 against
    # 85-86 ms a forward pass); one copy to the processor's own layout costs 0.1 ms.
    return pixels if device.type == "cuda" else pixels.contiguous()
