"""Image decoding: bytes in, an upright RGB picture out, identified by content and never by name."""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin, UnidentifiedImageError

from ..errors import Code, Rejected
from ..picture import SourceRegion, attach
from ..settings import env_var
from .containers import MAX_BLOCKS, MAX_METADATA_BYTES, over_limits

# The formats we accept, as users name them -> Pillow's names: the one list (docs/api.md and the OpenAPI document
# say it). Restricting Pillow to them keeps risky decoders (EPS runs Ghostscript, for one) out of reach of
# uploads. MPO is how Pillow names many camera JPEGs. Radiance HDR has no Pillow decoder.
FORMATS = {
    "JPEG": ("JPEG", "MPO"), "PNG": ("PNG",), "GIF": ("GIF",), "BMP": ("BMP", "DIB"), "TIFF": ("TIFF",),
    "WebP": ("WEBP",), "PPM/PGM/PBM": ("PPM",), "ICO": ("ICO",), "DDS": ("DDS",), "TGA": ("TGA",),
    "JPEG 2000": ("JPEG2000",),
}
Image.init()  # register every plugin so `formats=` can name them (Pillow loads a few lazily)
# Metadata is never used but orientation and transparency, and bounded: the blocks and raw bytes of it before
# Pillow reads the file (parsing.containers), a PNG's compressed text when Pillow inflates it (1 MB a chunk:
# MAX_TEXT_CHUNK, which ICC profiles need; in all, the same limit as raw metadata, not Pillow's 64 MB).
PngImagePlugin.MAX_TEXT_MEMORY = MAX_METADATA_BYTES
METADATA_LIMITS = ("MAX_TEXT_CHUNK", "MAX_TEXT_MEMORY")
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
    except ValueError as exc:
        if not any(limit in str(exc) for limit in METADATA_LIMITS):
            raise _undecodable(exc) from None
        raise ImageRejected(
            f"has more metadata than this service reads ({PngImagePlugin.MAX_TEXT_CHUNK // 1024 ** 2} MB in one "
            f"compressed chunk, {PngImagePlugin.MAX_TEXT_MEMORY // 1024 ** 2} MB of text in all); save it again "
            "without its metadata"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever a decoder raises on a client's bytes is the client's problem
        raise _undecodable(exc) from None


def _undecodable(exc: Exception) -> ImageRejected:
    log.debug("image not decodable", exc_info=True)
    return ImageRejected(f"could not be decoded ({exc.__class__.__name__}); the file may be truncated or corrupt")


def _decode(data: bytes, max_pixels: int, min_side: int | None) -> Image.Image:
    _check_pixels(_webp_size(data), max_pixels)  # libwebp allocates its whole canvas when the file is opened
    if problem := over_limits(data):
        raise ImageRejected(problem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own bomb warning; we enforce our own limit
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)  # the first frame; the rest never read
    size = image.size
    _check_pixels(size, max_pixels)  # from the header, before any pixel is decoded
    upright = _orientation(image)  # read before a crop or reduce makes a copy without the file's tags
    if not min_side:
        image.load()
        return _turned(to_rgb(image), upright)
    _draft(image, data, min_side)
    image.load()
    scale = round(size[0] / image.width)  # a JPEG or JPEG 2000 decoded at 1/2**n
    image, factor = _reduce(image, min_side)
    image, (left, top) = _centre_window(image, min_side)
    scale *= factor
    picture = _turned(to_rgb(image), upright)
    if scale == 1 and picture.size == _upright_size(size, upright):
        return picture  # the whole image, as decoded
    box = (left * scale, top * scale, (left + image.width) * scale, (top + image.height) * scale)
    return attach(picture, SourceRegion(_upright_size(size, upright), _upright_box(box, size, upright)))


def _turned(image: Image.Image, upright: Image.Transpose | None) -> Image.Image:
    return image.transpose(upright) if upright is not None else image


_SWAPS = (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90,
          Image.Transpose.ROTATE_270)


def _upright_size(size: tuple[int, int], upright: Image.Transpose | None) -> tuple[int, int]:
    return (size[1], size[0]) if upright in _SWAPS else size


def _upright_box(box: tuple[float, ...], size: tuple[int, int], upright: Image.Transpose | None) -> tuple[float, ...]:
    """A box of the image as stored, in the coordinates of the image turned upright."""
    (x0, y0, x1, y1), (width, height) = box, size
    return {
        None: box,
        Image.Transpose.FLIP_LEFT_RIGHT: (width - x1, y0, width - x0, y1),
        Image.Transpose.FLIP_TOP_BOTTOM: (x0, height - y1, x1, height - y0),
        Image.Transpose.ROTATE_180: (width - x1, height - y1, width - x0, height - y0),
        Image.Transpose.TRANSPOSE: (y0, x0, y1, x1),
        Image.Transpose.ROTATE_90: (y0, width - x1, y1, width - x0),
        Image.Transpose.ROTATE_270: (height - y1, x0, height - y0, x1),
        Image.Transpose.TRANSVERSE: (height - y1, width - x1, height - y0, width - x0),
    }[upright]


def _check_pixels(size: tuple[int, int] | None, max_pixels: int) -> None:
    if size and size[0] * size[1] > max_pixels:
        raise _too_large(f"{size[0]}x{size[1]} = {size[0] * size[1]}", max_pixels)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """A WebP file's canvas size from its first chunk's header (lossy VP8, lossless VP8L, extended VP8X)."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk, little = data[12:16], lambda a, b: int.from_bytes(data[a:b], "little")
    if chunk == b"VP8X":
        return little(24, 27) + 1, little(27, 30) + 1
    if chunk == b"VP8L":
        bits = little(21, 25)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        return little(26, 28) & 0x3FFF, little(28, 30) & 0x3FFF
    return None


# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose does).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _orientation(image: Image.Image) -> Image.Transpose | None:
    return _UPRIGHT.get(image.getexif().get(ExifTags.Base.Orientation))


def _shown(exc: Exception) -> str:
    """The decoder's own words, short and printable: they name the variant (e.g. 'Unimplemented DXGI format 93')."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(exc)) or exc.__class__.__name__
    return text if len(text) <= 100 else text[:100] + "..."


# Keep at least this many source pixels per output pixel, so the model's bicubic resize still
# averages over the original detail (JPEG draft and reduce() are box filters).
OVERSAMPLE = 2
# The centre window keeps this many short sides' worth of pixels / the model's input size beyond the short side:
# the crop's own rounding (up to one), and the bicubic filter's reach on each side (two).
WINDOW_MARGIN = 3
# The modes Pillow's reduce() takes; the others are converted first.
_REDUCIBLE = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I", "F")
_SIXTEEN_BITS = ("I;16", "I;16B", "I;16L", "I;16N")
_PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}


def _draft(image: Image.Image, data: bytes, min_side: int) -> None:
    """Decode at a reduced scale when the result stays large enough: JPEG at 1/2, 1/4 or 1/8 (DCT scaling),
    JPEG 2000 at one of the resolution levels its codestream holds (a whole one costs ~14 bytes a pixel)."""
    width, height = image.size
    scale = OVERSAMPLE * min_side / min(width, height)
    if scale >= 1:
        return
    if image.format in ("JPEG", "MPO"):
        image.draft(image.mode if image.mode in ("RGB", "L") else None,
                    (math.ceil(width * scale), math.ceil(height * scale)))
    elif image.format == "JPEG2000":
        image.reduce = min(int(math.log2(1 / scale)), _j2k_levels(data))


def _j2k_levels(data: bytes) -> int:
    """The fewest wavelet decomposition levels the main header's COD and COC markers give (0 if none found, or if
    the header has more markers than MAX_BLOCKS: this walk is Python, openjpeg's is C): a codestream decodes at
    1/2**n of its size for n up to that, and fails beyond it."""
    start = data.find(b"\xff\x4f\xff\x51")  # SOC then SIZ: the start of the codestream, in a .jp2 box or alone
    levels, at = [], start + 2
    for _ in range(MAX_BLOCKS):
        if start < 0 or at + 4 > len(data) or data[at] != 0xFF or data[at + 1] == 0x90:  # up to the first tile
            return min(levels, default=0)
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0x52 and at + 9 < len(data):  # COD: Scod, progression, layers (2), MCT, then the levels
            levels.append(data[at + 9])
        elif marker == 0x53 and at + 6 < len(data):  # COC: its component (1 byte with < 257 components), Scoc
            levels.append(data[at + 6])
        at += 2 + length
    return 0


def _centre_window(image: Image.Image, min_side: int) -> tuple[Image.Image, tuple[int, int]]:
    """The centred part of the long side that CLIP's centre crop can reach, with a margin for its rounding and the
    resize filter's reach, and where it starts: all a later step reads, so an image of any aspect ratio costs
    what a square of its short side costs. Centred to the pixel, so it holds whichever way the picture is turned
    upright afterwards."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    keep = short + 2 * (math.ceil(WINDOW_MARGIN * short / min_side) + 2)
    keep += (long - keep) % 2  # as even or odd as the long side
    if keep >= long:
        return image, (0, 0)
    cut = (long - keep) // 2
    if width > height:
        return image.crop((cut, 0, cut + keep, height)), (cut, 0)
    return image.crop((0, cut, width, cut + keep)), (0, cut)


def _reduce(image: Image.Image, min_side: int) -> tuple[Image.Image, int]:
    """Large pictures shrunk by a whole factor (a fast box filter) before the model's resize, in a mode that Pillow
    can reduce (the conversion keeps transparency as alpha, and high bit depths as 32 bits); and the factor."""
    factor = min(image.size) // (OVERSAMPLE * min_side)
    if factor < 2:
        return image, 1
    if image.mode in _SIXTEEN_BITS:  # reduced as 32 bits, then 16 again: to_rgb scales by the bit depth
        return image.convert("I").reduce(factor).convert(image.mode), factor
    if image.mode not in _REDUCIBLE or "transparency" in image.info:
        image = image.convert({"1": "L"}.get(image.mode, "RGBA" if _has_alpha(image) else "RGB"))
    if image.mode in _PREMULTIPLIED:  # averaged with alpha applied, as the composite onto white then sees them
        return image.convert(_PREMULTIPLIED[image.mode]).reduce(factor).convert(image.mode), factor
    return image.reduce(factor), factor


def _too_large(pixels: str, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        f"has {pixels} pixels; the limit is {max_pixels} ({env_var('max_image_pixels')}); send a smaller image",
        Code.TOO_MANY_PIXELS,
    )


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """Transparent pixels become white (not black), high-bit-depth images are scaled to 8 bits."""
    if image.mode in (*_SIXTEEN_BITS, "I"):
        # 16-bit greyscale (PNG, TIFF): Pillow's convert would clip everything above 255 to white.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).round().astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).round().astype(np.uint8), "L")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
