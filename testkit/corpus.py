"""A structured corpus of image files, made here: every accepted format in every mode Pillow writes in it,
multi-frame files, the eight EXIF orientations, variants Pillow reads but cannot write (built byte by byte), and
each of them truncated and with bytes flipped. Deterministic: the same files on every machine and run."""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE = (40, 30)  # small: the corpus is about decoders, not pixels
# Pillow's writer names of the accepted formats (clipsvc.parsing.images.FORMATS), and the modes worth trying.
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "DDS", "TGA", "JPEG2000", "MPO")
MODES = ("1", "L", "LA", "P", "PA", "I;16", "I", "F", "RGB", "RGBA", "CMYK", "YCbCr")


@dataclass(frozen=True)
class CorpusFile:
    name: str
    data: bytes


def picture(mode: str = "RGB", size: tuple[int, int] = SIZE, seed: int = 0) -> Image.Image:
    """A gradient with a bright corner: not symmetric, so a wrong rotation or channel order changes the vector."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y + seed * 40) % 256], -1)
    rgb[: height // 3, : width // 3] = 255
    rgba = np.concatenate([rgb, (255 - x * 200 // max(width - 1, 1))[..., None]], -1).astype(np.uint8)
    base = Image.fromarray(rgba, "RGBA")
    if mode in ("I;16", "I", "F"):
        grey = (x * 65535 // max(width - 1, 1)).astype(np.uint16 if mode == "I;16" else np.int32)
        image = Image.fromarray(grey.astype(np.float32) / 65535 if mode == "F" else grey)
        return image if mode != "I;16" else image.convert("I;16")
    if mode in ("RGBA", "LA", "PA"):
        return base.convert(mode)
    return base.convert("RGB").convert(mode)


def _saved(image: Image.Image, fmt: str, **options) -> bytes | None:
    """The encoded file, or None where Pillow cannot write this mode in this format."""
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt, **options)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return buffer.getvalue()


def format_modes() -> Iterator[CorpusFile]:
    for fmt in FORMATS:
        for mode in MODES:
            data = _saved(picture(mode), fmt)
            if data is not None:
                yield CorpusFile(f"{fmt.lower()}-{mode.replace(';', '')}", data)


def multi_frame() -> Iterator[CorpusFile]:
    frames = [picture("RGB", seed=s) for s in range(3)]
    for fmt, options in [("GIF", {"duration": 40, "loop": 0}), ("PNG", {"duration": 40}), ("WEBP", {"duration": 40}),
                         ("TIFF", {}), ("MPO", {})]:
        data = _saved(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
        if data is not None:
            yield CorpusFile(f"{fmt.lower()}-animated", data)
    yield CorpusFile("ico-sizes", _saved(picture("RGBA", (64, 64)), "ICO", sizes=[(16, 16), (32, 32), (64, 64)]))


def exif_orientations() -> Iterator[CorpusFile]:
    for fmt in ("JPEG", "PNG", "WEBP"):
        for orientation in range(1, 9):
            exif = Image.Exif()
            exif[0x0112] = orientation
            yield CorpusFile(f"{fmt.lower()}-exif-orientation-{orientation}", _saved(picture(), fmt, exif=exif))


def photos() -> Iterator[CorpusFile]:
    """Camera-sized and panorama pictures: decoded at a reduced scale and to their centre window, which must still
    give the reference pipeline's vector."""
    rotated = Image.Exif()
    rotated[0x0112] = 6
    for name, mode, size, fmt, options in [
        ("jpeg-photo-4000x3000", "RGB", (4000, 3000), "JPEG", {"quality": 90}),
        ("jpeg-photo-rotated-4000x3000", "RGB", (4000, 3000), "JPEG", {"quality": 90, "exif": rotated}),
        ("jpeg-panorama-6000x1500", "RGB", (6000, 1500), "JPEG", {"quality": 90}),
        ("png-photo-1920x1080", "RGB", (1920, 1080), "PNG", {}),
        ("png-rgba-2400x1600", "RGBA", (2400, 1600), "PNG", {}),
        ("png-16bit-1800x1200", "I;16", (1800, 1200), "PNG", {}),
        ("webp-photo-2000x1500", "RGB", (2000, 1500), "WEBP", {"quality": 90}),
        ("tiff-portrait-1000x3000", "RGB", (1000, 3000), "TIFF", {}),
        ("jpeg2000-photo-2400x1600", "RGB", (2400, 1600), "JPEG2000", {}),
    ]:
        yield CorpusFile(name, _saved(picture(mode, size), fmt, **options))


# --- Variants Pillow reads (or knows) but does not write, built byte by byte.

def _dds(pixel_format: bytes, payload: bytes, dx10: int | None = None, size: tuple[int, int] = (8, 8)) -> bytes:
    """A DDS header (124 bytes after the magic) with the given 32-byte pixel format, then `payload`."""
    width, height = size
    head = struct.pack("<7I", 124, 0x1007, height, width, 0, 0, 0) + b"\0" * 44 + pixel_format
    head += struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    extra = struct.pack("<5I", dx10, 3, 0, 1, 0) if dx10 is not None else b""
    return b"DDS " + head + extra + payload


def _pf(flags: int, fourcc: bytes = b"\0\0\0\0", bits: int = 0, masks: tuple = (0, 0, 0, 0)) -> bytes:
    return struct.pack("<2I", 32, flags) + fourcc + struct.pack("<5I", bits, *masks)


def dds_variants() -> Iterator[CorpusFile]:
    rgba = _saved(picture("RGBA", (8, 8)), "DDS")
    for name in ("DXT1", "DXT3", "DXT5", "BC2", "BC3"):
        yield CorpusFile(f"dds-{name.lower()}", _saved(picture("RGBA", (8, 8)), "DDS", pixel_format=name))
    yield CorpusFile("dds-rgba", rgba)
    r5g6b5 = np.asarray(picture("RGB", (8, 8)), dtype=np.uint16)
    pixels = ((r5g6b5[..., 0] >> 3) << 11 | (r5g6b5[..., 1] >> 2) << 5 | r5g6b5[..., 2] >> 3).astype("<u2")
    yield CorpusFile("dds-r5g6b5", _dds(_pf(0x40, bits=16, masks=(0xF800, 0x07E0, 0x001F, 0)), pixels.tobytes()))
    yield CorpusFile("dds-luminance8", _dds(_pf(0x20000, bits=8, masks=(0xFF, 0, 0, 0)), bytes(range(64))))
    yield CorpusFile("dds-bc7-dx10", _dds(_pf(0x4, b"DX10"), b"\0" * 64, dx10=98))
    yield CorpusFile("dds-dxgi-93", _dds(_pf(0x4, b"DX10"), b"\0" * 256, dx10=93))  # Pillow: not implemented
    yield CorpusFile("dds-pixel-format-flags-8", _dds(_pf(0x8), b"\0" * 256))
    yield CorpusFile("dds-fourcc-0", _dds(_pf(0x4), b"\0" * 256))
    yield CorpusFile("dds-bitcount-7", _dds(_pf(0x40, bits=7, masks=(1, 2, 4, 0)), b"\0" * 64))


def _tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    """Pillow's little-endian TIFF with one SHORT/LONG tag of the first IFD set to `value`."""
    out = bytearray(data)
    (ifd,) = struct.unpack_from("<I", out, 4)
    (count,) = struct.unpack_from("<H", out, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        found, kind = struct.unpack_from("<HH", out, entry)
        if found == tag:
            struct.pack_into("<H" if kind == 3 else "<I", out, entry + 8, value)
            return bytes(out)
    raise KeyError(tag)


def tiff_variants() -> Iterator[CorpusFile]:
    rgb = picture()
    for compression in ("tiff_lzw", "tiff_deflate", "packbits", "jpeg", "tiff_adobe_deflate"):
        yield CorpusFile(f"tiff-{compression}", _saved(rgb, "TIFF", compression=compression))
    for compression in ("group3", "group4", "tiff_ccitt"):
        yield CorpusFile(f"tiff-1-{compression}", _saved(picture("1"), "TIFF", compression=compression))
    raw = _saved(rgb, "TIFF", compression="raw")
    # Compression codes libtiff knows but this build may lack (WEBP, ZSTD, LERC, JBIG, JPEG 2000, old JPEG), and
    # one nobody knows: the strips are raw, so each is a lie about them too.
    for code in (50001, 50000, 34887, 34661, 34712, 6, 32809, 65000):
        yield CorpusFile(f"tiff-compression-{code}", _tiff_tag(raw, 259, code))
    yield CorpusFile("tiff-samples-per-pixel-200", _tiff_tag(raw, 277, 200))  # Pillow logs it at error level
    yield CorpusFile("tiff-photometric-lab", _tiff_tag(raw, 262, 8))


def _bmp(width: int, height: int, bits: int, pixels: bytes, palette: bytes = b"", compression: int = 0,
         masks: bytes = b"", header: int = 40) -> bytes:
    """A BMP with a BITMAPINFOHEADER (40), a V4 header (108) or an OS/2 v1 header (12)."""
    if header == 12:
        info = struct.pack("<IHHHH", 12, width, height, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", header, width, height, 1, bits, compression, len(pixels), 2835, 2835,
                           len(palette) // 4, 0) + masks
        info += b"\0" * (header - len(info))
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def bmp_variants() -> Iterator[CorpusFile]:
    grey = bytes(b for i in range(16) for b in (i * 17, i * 17, i * 17, 0))
    four_bit = bytes((((x + y) % 16) << 4 | (x * 3 + y) % 16) for y in range(8) for x in range(4))  # 8x8, 4 B rows
    yield CorpusFile("bmp-4bit", _bmp(8, 8, 4, four_bit, grey))
    yield CorpusFile("bmp-rle8", _bmp(8, 8, 8, bytes([8, 3, 8, 9] * 4 + [0, 0]) * 8 + b"\0\1", grey * 16, 1))
    yield CorpusFile("bmp-rle4", _bmp(8, 8, 4, bytes([8, 0x12, 0, 0]) * 8 + b"\0\1", grey, 2))
    rgb = np.asarray(picture("RGB", (8, 8)), dtype=np.uint16)
    r555 = ((rgb[..., 0] >> 3) << 10 | (rgb[..., 1] >> 3) << 5 | rgb[..., 2] >> 3).astype("<u2")
    yield CorpusFile("bmp-16bit-555", _bmp(8, 8, 16, r555[::-1].tobytes()))
    r565 = ((rgb[..., 0] >> 3) << 11 | (rgb[..., 1] >> 2) << 5 | rgb[..., 2] >> 3).astype("<u2")
    yield CorpusFile("bmp-16bit-565-bitfields", _bmp(8, 8, 16, r565[::-1].tobytes(), compression=3,
                                                     masks=struct.pack("<3I", 0xF800, 0x07E0, 0x001F)))
    bgra = np.asarray(picture("RGBA", (8, 8)))[..., [2, 1, 0, 3]]
    yield CorpusFile("bmp-32bit-bitfields-v4", _bmp(8, 8, 32, bgra[::-1].tobytes(), compression=3, header=108,
                                                    masks=struct.pack("<4I", 0xFF0000, 0xFF00, 0xFF, 0xFF000000)))
    bgr = np.asarray(picture("RGB", (8, 8)))[..., ::-1]
    yield CorpusFile("bmp-24bit-top-down", _bmp(8, -8, 24, bgr.tobytes()))
    yield CorpusFile("bmp-os2-v1", _bmp(8, 8, 24, bgr[::-1].tobytes(), header=12))
    yield CorpusFile("bmp-jpeg-inside", _bmp(8, 8, 0, _saved(picture("RGB", (8, 8)), "JPEG"), compression=4))
    yield CorpusFile("bmp-64bit", _bmp(8, 8, 64, b"\0" * 512))


SOURCES: tuple[Callable[[], Iterator[CorpusFile]], ...] = (
    format_modes, multi_frame, exif_orientations, dds_variants, tiff_variants, bmp_variants, photos)


def whole_files() -> list[CorpusFile]:
    """Every file of the corpus, uncorrupted (names unique)."""
    files = [item for source in SOURCES for item in source()]
    assert len({f.name for f in files}) == len(files)
    return files


def corrupted(files: list[CorpusFile], seed: int = 20) -> list[CorpusFile]:
    """Each file cut at its header, at a third and just before its end, and twice with eight bytes flipped."""
    rng = random.Random(seed)
    out = []
    for f in files:
        size = len(f.data)
        for cut in sorted({min(24, size - 1), size // 3, size - 2}):
            if 0 < cut < size:
                out.append(CorpusFile(f"{f.name}-cut-{cut}", f.data[:cut]))
        for n in range(2):
            data = bytearray(f.data)
            for at in rng.sample(range(size), min(8, size)):
                data[at] ^= 1 << rng.randrange(8)
            out.append(CorpusFile(f"{f.name}-flipped-{n}", bytes(data)))
    return out


def sample(files: list[CorpusFile], count: int, seed: int = 20) -> list[CorpusFile]:
    """A seeded sample: the same files in every run."""
    return random.Random(seed).sample(files, min(count, len(files)))
