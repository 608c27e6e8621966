"""Image decoding: bytes in, an upright RGB picture out, identified by content and never by name."""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import Code, Rejected
from ..settings import env_var

# The formats we accept, as users name them -> Pillow's names: the one list (README and the OpenAPI document
# say it). Restricting Pillow to them keeps risky decoders (EPS runs Ghostscript, for one) out of reach of
# uploads. MPO is how Pillow names many camera JPEGs. Radiance HDR has no Pillow decoder.
FORMATS = {
    "JPEG": ("JPEG", "MPO"), "PNG": ("PNG",), "GIF": ("GIF",), "BMP": ("BMP", "DIB"), "TIFF": ("TIFF",),
    "WebP": ("WEBP",), "PPM/PGM/PBM": ("PPM",), "ICO": ("ICO",), "DDS": ("DDS",), "TGA": ("TGA",),
    "JPEG 2000": ("JPEG2000",),
}
Image.init()  # register every plugin so `formats=` can name them (Pillow loads a few lazily)
ALLOWED_FORMATS = tuple(name for names in FORMATS.values() for name in names if name in Image.OPEN)
SUPPORTED_LIST = ", ".join(FORMATS)
_WHITE = (255, 255, 255)
log = logging.getLogger(__name__)


class ImageRejected(Rejected):
    """The bytes are not a usable image; the message says why and what to send instead."""

    def __init__(self, message: str, error: Code = Code.INVALID_IMAGE):
        super().__init__(message, error)


def decode_image(data: bytes, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Decode the first frame, refuse oversized images before decoding pixels, return RGB.

    With `min_side` (the model's input size), large images are decoded or reduced to no less than
    twice that on their short side: JPEG's DCT scaling skips most of the decoding work.
    """
    if not data:
        raise ImageRejected("is an empty file; attach an image", Code.EMPTY_FILE)
    try:
        return _decode(data, max_pixels, min_side)
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise _too_large(f"more than {max_pixels}", max_pixels) from None
    except UnidentifiedImageError:
        raise ImageRejected(
            f"is not an image in a supported format ({SUPPORTED_LIST})", Code.UNSUPPORTED_IMAGE
        ) from None
    except NotImplementedError as exc:  # Pillow knows the format but not this variant of it (DDS pixel formats)
        log.debug("image variant not implemented", exc_info=True)
        raise ImageRejected(
            f"uses a variant of its format that this service cannot decode ({_shown(exc)}); "
            "convert it to PNG or JPEG", Code.UNSUPPORTED_IMAGE
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever a decoder raises on a client's bytes is the client's problem
        log.debug("image not decodable", exc_info=True)
        raise ImageRejected(
            f"could not be decoded ({exc.__class__.__name__}); the file may be truncated or corrupt"
        ) from None


def _decode(data: bytes, max_pixels: int, min_side: int | None) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own bomb warning; we enforce our own limit
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    width, height = image.size
    if width * height > max_pixels:  # checked from the header, before any pixel is decoded
        raise _too_large(f"{width}x{height} = {width * height}", max_pixels)
    image.seek(0)  # animated formats: the first frame
    if min_side:
        _draft(image, min_side)
    image.load()
    if min_side:
        image = _reduce(image, min_side)
    return to_rgb(ImageOps.exif_transpose(image))


def _shown(exc: Exception) -> str:
    """The decoder's own words, short and printable: they name the variant (e.g. 'Unimplemented DXGI format 93')."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(exc)) or exc.__class__.__name__
    return text if len(text) <= 100 else text[:100] + "..."


# Keep at least this many source pixels per output pixel, so the model's bicubic resize still
# averages over the original detail (JPEG draft and reduce() are box filters).
OVERSAMPLE = 2


def _draft(image: Image.Image, min_side: int) -> None:
    """JPEG only: decode at 1/2, 1/4 or 1/8 scale when the result stays large enough."""
    if image.format not in ("JPEG", "MPO"):
        return
    width, height = image.size
    scale = OVERSAMPLE * min_side / min(width, height)
    if scale < 1:
        image.draft(image.mode if image.mode in ("RGB", "L") else None,
                    (math.ceil(width * scale), math.ceil(height * scale)))


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    """Other formats: shrink by a whole factor (a fast box filter) before the model's resize."""
    factor = min(image.size) // (OVERSAMPLE * min_side)
    if factor < 2 or image.mode not in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return image
    return image.reduce(factor)


def _too_large(pixels: str, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        f"has {pixels} pixels; the limit is {max_pixels} ({env_var('max_image_pixels')}); send a smaller image",
        Code.TOO_MANY_PIXELS,
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Transparent pixels become white (not black), high-bit-depth images are scaled to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale (PNG, TIFF): Pillow's convert would clip everything above 255 to white.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).round().astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).round().astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
