"""What a decoded picture carries beside its pixels: which part of the whole upright image it shows, and at what
scale.

Decoding keeps only what CLIP's centre crop reads, at a reduced scale where that is cheaper (clipsvc.parsing.images);
the processor's resize and crop are defined on the whole upright image (clipsvc.encoder.pixels). The region ties the
two: the crop is placed where the processor places it, and sampled from the pixels that were kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

KEY = "clipsvc.source_region"  # in the picture's `info`, which Pillow copies along with the pixels


@dataclass(frozen=True)
class SourceRegion:
    source: tuple[int, int]  # the whole upright image: width, height
    box: tuple[float, float, float, float]  # the part the picture shows, in the source's coordinates

    def in_picture(self, box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[float, ...]:
        """A box of the source in the picture's coordinates (kept inside the picture, as Pillow requires)."""
        left, top, right, bottom = self.box
        x, y = size[0] / (right - left), size[1] / (bottom - top)
        return (min(max((box[0] - left) * x, 0), size[0]), min(max((box[1] - top) * y, 0), size[1]),
                min(max((box[2] - left) * x, 0), size[0]), min(max((box[3] - top) * y, 0), size[1]))


def attach(picture: Image.Image, region: SourceRegion) -> Image.Image:
    picture.info[KEY] = region
    return picture


def region_of(picture: Image.Image) -> SourceRegion | None:
    """None: the picture is the whole image, at full scale."""
    return picture.info.get(KEY)
