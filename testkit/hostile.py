"""Valid but hostile requests, one table for the cost test and the cost benchmark: each is sent to a real worker,
which must answer 200 or 4xx within a budget of wall time and of growth in its peak RSS (docs/reliability.md's
cost model says which limit bounds each).

Every body is made here, deterministically, with Pillow and plain bytes: extreme aspect ratios in each format at
its own largest side, pictures at the pixel limit in their costliest modes, frame and page bombs, metadata bombs,
giant words and many long words on every API, JSON that expands when parsed, and the item count at its limit.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import requests
from PIL import Image
from urllib3.filepost import encode_multipart_formdata

from testkit import procs

MIB = 1024 * 1024
GIANT_WORD = 10 * MIB  # the issue's 10 MB word


@dataclass(frozen=True)
class Case:
    """One request: `build` makes (path, headers, body) when the case runs, so unused cases cost nothing."""

    name: str
    build: Callable[[], tuple[str, dict[str, str], bytes]]
    heavy: bool = False  # only in the benchmark: slow to make, or at the pixel limit in a costly mode
    items: int = 1  # what the model is asked to embed: its passes are the work asked for, beyond the budget
    at_pixel_limit: bool = False  # its decoder's own buffers are the cost of CLIP_MAX_IMAGE_PIXELS itself


@dataclass(frozen=True)
class Outcome:
    name: str
    items: int
    at_pixel_limit: bool
    status: int
    code: str | None
    seconds: float
    peak_growth_mib: float  # the worker's VmHWM after, less its RSS before (the peak was reset to it)


# -- bodies of every API ------------------------------------------------------------------------------------


def multipart(fields: dict[str, str | bytes]) -> tuple[str, dict[str, str], bytes]:
    """POST /syte_test/clip: bytes are file parts, str plain fields."""
    parts = {k: (f"{k}.bin", v) if isinstance(v, bytes) else v for k, v in fields.items()}
    body, content_type = encode_multipart_formdata(parts)
    return "/syte_test/clip", {"Content-Type": content_type}, body


def as_json(path: str, body: object) -> tuple[str, dict[str, str], bytes]:
    return path, {"Content-Type": "application/json"}, json.dumps(body).encode()


def data_uri(image: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(image).decode()


def text_bodies(text: str) -> dict[str, Callable[[], tuple[str, dict[str, str], bytes]]]:
    """The same text sent through each API that takes texts."""
    return {
        "multipart": lambda: multipart({"text-1": text}),
        "urlencoded": lambda: ("/syte_test/clip", {"Content-Type": "application/x-www-form-urlencoded"},
                               b"text-1=" + text.encode()),
        "encode": lambda: as_json("/encode", [{"text": text}]),
        "rank": lambda: as_json("/rank", {"queries": [{"text": "a dog"}], "candidates": [{"text": text}]}),
        "openai": lambda: as_json("/v1/embeddings", {"input": [text]}),
        "jina": lambda: as_json("/post", {"data": [{"text": text}], "execEndpoint": "/encode"}),
        "truss": lambda: as_json("/v1/models/model:predict", {"labels": [text], "image_url": data_uri(tiny_png())}),
        "weaviate": lambda: as_json("/vectorize", {"texts": [text]}),
    }


def image_bodies(image: bytes) -> dict[str, Callable[[], tuple[str, dict[str, str], bytes]]]:
    """The same encoded image sent through each API that takes images."""
    return {
        "multipart": lambda: multipart({"image-1": image}),
        "encode": lambda: as_json("/encode", [{"img_blob": base64.b64encode(image).decode()}]),
        "vectorize": lambda: ("/vectorize", {"Content-Type": "application/octet-stream"}, image),
        "weaviate": lambda: as_json("/vectorize", {"images": [base64.b64encode(image).decode()]}),
    }


# -- pictures ------------------------------------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@cache
def tiny_png() -> bytes:
    return encoded(Image.new("RGB", (8, 8), (90, 120, 200)), "PNG")


def striped(mode: str, size: tuple[int, int]) -> Image.Image:
    """Not one flat colour (a decoder could shortcut that), yet cheap to make and to compress."""
    width, height = size
    row = bytes(range(256)) * (width // 256 + 1)
    grey = Image.frombytes("L", size, (row[:width] * height) if width * height <= 64 * MIB else b"\0" * width * height)
    return grey.convert(mode) if mode != "L" else grey


# Each format at its own largest side, the other side 1 or 2 pixels (JPEG: its 65 500-pixel maximum).
EXTREMES: dict[str, tuple[str, tuple[int, int], dict]] = {
    "png-10Mx1": ("PNG", (10_000_000, 1), {}),
    "png-1x10M": ("PNG", (1, 10_000_000), {}),
    "png-20000x2": ("PNG", (20_000, 2), {}),
    "jpeg-65500x1": ("JPEG", (65_500, 1), {}),
    "jpeg-8x65500": ("JPEG", (8, 65_500), {}),
    "webp-16383x1": ("WEBP", (16_383, 1), {"lossless": True}),
    "gif-65535x1": ("GIF", (65_535, 1), {}),
    "bmp-4Mx1": ("BMP", (4_000_000, 1), {}),
    "tiff-10Mx1": ("TIFF", (10_000_000, 1), {"compression": "tiff_deflate"}),
    "tga-65535x1": ("TGA", (65_535, 1), {"compression": "tga_rle"}),
    "pgm-1x4M": ("PPM", (1, 4_000_000), {}),
    "jpeg2000-65535x2": ("JPEG2000", (65_535, 2), {}),
}
# At the default pixel limit (40 MP), in the modes that cost most to decode and convert.
AT_LIMIT: dict[str, tuple[str, str, tuple[int, int], dict]] = {
    "png-rgba-6300x6300": ("PNG", "RGBA", (6300, 6300), {"compress_level": 1}),
    "png-16bit-6300x6300": ("PNG", "I;16", (6300, 6300), {"compress_level": 1}),
    "png-palette-transparent-6300x6300": ("PNG", "P", (6300, 6300), {"compress_level": 1, "transparency": 0}),
    "jpeg-progressive-6300x6300": ("JPEG", "RGB", (6300, 6300), {"progressive": True, "quality": 90}),
    "tiff-rgba-6300x6300": ("TIFF", "RGBA", (6300, 6300), {"compression": "tiff_deflate"}),
    "webp-16383x2441": ("WEBP", "RGB", (16_383, 2441), {"quality": 50, "method": 0}),
    "jpeg2000-6300x6300": ("JPEG2000", "RGB", (6300, 6300), {}),
}


def extreme(fmt: str, size: tuple[int, int], options: dict) -> bytes:
    return encoded(striped("L" if fmt in ("PNG", "TIFF", "PPM", "BMP", "GIF", "TGA") else "RGB", size), fmt,
                   **options)


def at_limit(fmt: str, mode: str, size: tuple[int, int], options: dict) -> bytes:
    image = striped("L", size)
    image = image.convert(mode) if mode != "I;16" else Image.frombytes("I;16", size, image.tobytes() * 2)
    return encoded(image, fmt, **options)


def webp_canvas_claim(size: tuple[int, int] = (16_383, 10_000)) -> bytes:
    """A tiny WebP whose extended header claims a canvas of `size` (libwebp allocates it when opened)."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (size[0] - 1).to_bytes(3, "little") \
        + (size[1] - 1).to_bytes(3, "little")
    small = encoded(Image.new("RGB", (8, 8)), "WEBP", lossless=True)
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x) + len(small) - 12) + b"WEBP" + vp8x + small[12:]


def frames(fmt: str, count: int, **options: object) -> bytes:
    """`count` frames or pages of 64×64, each a little different (so none is merged away)."""
    pictures = [Image.new("RGB", (64, 64), (i % 256, (i // 256) % 256, 7)) for i in range(count)]
    return encoded(pictures[0], fmt, save_all=True, append_images=pictures[1:], **options)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with(chunks: list[bytes]) -> bytes:
    """A small PNG with `chunks` inserted before its image data."""
    png = tiny_png()
    split = png.index(b"IDAT") - 4
    return png[:split] + b"".join(chunks) + png[split:]


def ztxt_bomb(count: int, size: int) -> bytes:
    """`count` compressed text chunks of `size` bytes each once inflated (a few KB each on the wire)."""
    body = zlib.compress(b"A" * size, 9)
    return png_with([png_chunk(b"zTXt", b"k%d\0\0" % i + body) for i in range(count)])


def iccp_bomb(size: int) -> bytes:
    return png_with([png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * size, 9))])


def jpeg_app_segments(count: int) -> bytes:
    """A small JPEG with `count` APP1 segments of 64 KB (Exif-looking) after its start marker."""
    jpeg = encoded(Image.new("RGB", (16, 16), (10, 200, 30)), "JPEG")
    segment = b"\xff\xe1" + struct.pack(">H", 65_535) + b"Exif\0\0" + b"\0" * (65_533 - 6)
    return jpeg[:2] + segment * count + jpeg[2:]


def tiff_huge_tag(values: int) -> bytes:
    """A small TIFF whose IFD has one extra tag (an unknown one) of `values` LONGs."""
    tiff = encoded(Image.new("L", (8, 8), 128), "TIFF")
    assert tiff[:4] == b"II*\0"
    (ifd,) = struct.unpack("<I", tiff[4:8])
    (count,) = struct.unpack("<H", tiff[ifd:ifd + 2])
    entries = tiff[ifd + 2:ifd + 2 + 12 * count]
    data_offset = len(tiff) + 2 + 12 * (count + 1) + 4
    new = entries + struct.pack("<HHII", 65000, 4, values, data_offset)  # tag numbers ascend: 65000 goes last
    directory = struct.pack("<H", count + 1) + new + b"\0\0\0\0"
    head = tiff[:4] + struct.pack("<I", len(tiff))
    return head + tiff[8:] + directory + b"\0" * (4 * values)


def block_flood(fmt: str, count: int) -> bytes:
    """A tiny image preceded by `count` empty blocks of its format: PNG chunks, JPEG comment markers, GIF comment
    extensions, JPEG 2000 free boxes (Pillow walks each in Python)."""
    if fmt == "PNG":
        return png_with([png_chunk(b"zzZz", b"")] * count)
    if fmt == "JPEG":
        jpeg = encoded(Image.new("RGB", (16, 16), (10, 200, 30)), "JPEG")
        return jpeg[:2] + b"\xff\xfe\x00\x02" * count + jpeg[2:]
    if fmt == "GIF":
        gif = encoded(Image.new("P", (8, 8)), "GIF")
        first_image = gif.index(b"\x2c")
        return gif[:first_image] + b"\x21\xfe\x01a\x00" * count + gif[first_image:]
    jp2 = encoded(Image.new("RGB", (16, 16)), "JPEG2000")  # signature and ftyp boxes, then the rest
    return jp2[:32] + b"\x00\x00\x00\x08free" * count + jp2[32:]


def j2k_marker_flood(count: int, size: tuple[int, int] = (1200, 1000)) -> bytes:
    """A JPEG 2000 codestream large enough to be decoded at a reduced level, `count` empty comment markers in its
    main header (where the service reads the levels the codestream holds)."""
    codestream = encoded(Image.new("RGB", size, (40, 90, 200)), "JPEG2000", no_jp2=True)
    siz = codestream.index(b"\xff\x51")
    end = siz + 2 + int.from_bytes(codestream[siz + 2:siz + 4], "big")
    return codestream[:end] + b"\xff\x64\x00\x04\x00\x01" * count + codestream[end:]


def json_bomb(path: str, element: bytes, size: int, wrap: Callable[[bytes], bytes]) -> tuple[str, dict, bytes]:
    """A JSON body of about `size` bytes whose one list holds copies of `element` (objects when parsed)."""
    items = b",".join([element] * (size // (len(element) + 1)))
    return path, {"Content-Type": "application/json"}, wrap(b"[" + items + b"]")


@cache
def camera_photo(seed: int) -> bytes:
    """A 4000 x 3000 JPEG of one colour a seed: a camera's size in a few kilobytes."""
    return encoded(Image.new("RGB", (4000, 3000), (seed * 37 % 256, 90, 160)), "JPEG", quality=90)


def jpeg_photo(size: tuple[int, int] = (640, 480)) -> bytes:
    return encoded(striped("RGB", size), "JPEG", quality=85)


# -- the table -----------------------------------------------------------------------------------------------


def cases(max_items: int = 64, max_words: int = 50, max_request_mb: float = 64) -> list[Case]:
    """Every hostile case, for a server with these limits (the defaults'), the cheapest kinds first: a worker's
    RSS stays near its peak after a costly case, which would hide what the next cheaper one costs."""
    return [*text_cases(max_words), *frame_and_metadata_cases(), *extreme_cases(), *item_cases(max_items, max_words),
            *json_cases(max_request_mb), *pixel_limit_cases()]


def text_cases(max_words: int) -> list[Case]:
    long_words = " ".join(["w" * 8000] * max_words)
    return [Case(f"text/{kind}/{api}", build)
            for kind, text in (("giant-word", "w" * GIANT_WORD), ("long-words", long_words))
            for api, build in text_bodies(text).items()]


def frame_and_metadata_cases() -> list[Case]:
    found = []
    bombs = (("GIF", {}), ("PNG", {}), ("TIFF", {"compression": "tiff_deflate"}), ("WEBP", {"quality": 10}))
    for fmt, options in bombs:
        found.append(Case(f"frames/{fmt.lower()}-2000",
                          lambda f=fmt, o=options: multipart({"image-1": frames(f, 2000, **o)})))
    metadata = {
        "png-ztxt-64x1MB": lambda: ztxt_bomb(64, MIB),
        "png-ztxt-over-chunk-limit": lambda: ztxt_bomb(1, 64 * MIB),
        "png-iccp-64MB": lambda: iccp_bomb(64 * MIB),
        "jpeg-300-app1-segments": lambda: jpeg_app_segments(300),
        "jpeg-100-app1-segments": lambda: jpeg_app_segments(100),  # 6.4 MB of Exif: read, joined, ignored
        "tiff-tag-4M-values": lambda: tiff_huge_tag(4_000_000),
    }
    for fmt, count in (("PNG", 1_500_000), ("JPEG", 4_500_000), ("GIF", 3_500_000), ("JPEG2000", 2_000_000)):
        metadata[f"{fmt.lower()}-{count // 100_000 / 10:g}M-empty-blocks"] = lambda f=fmt, n=count: block_flood(f, n)
    metadata["jpeg2000-3M-codestream-markers"] = lambda: j2k_marker_flood(3_000_000)
    for name, make in metadata.items():
        found.append(Case(f"metadata/{name}", lambda m=make: multipart({"image-1": m()})))
    return found


def extreme_cases() -> list[Case]:
    found = [Case(f"image/{name}/multipart", lambda f=fmt, s=size, o=options: multipart({"image-1": extreme(f, s, o)}))
             for name, (fmt, size, options) in EXTREMES.items()]
    found.append(Case("image/webp-header-16383x10000/multipart", lambda: multipart({"image-1": webp_canvas_claim()})))
    for api, build in image_bodies(extreme("PNG", (10_000_000, 1), {})).items():
        if api != "multipart":  # that one is above
            found.append(Case(f"image/png-10Mx1/{api}", build))
    return found


def item_cases(max_items: int, max_words: int) -> list[Case]:
    photo, words = jpeg_photo(), " ".join(["caption"] * (max_words - 1))
    half = max_items // 2
    return [
        Case("items/at-limit/multipart", lambda: multipart(
            {**{f"image-{i}": photo for i in range(half)}, **{f"text-{i}": words for i in range(max_items - half)}}),
            items=max_items),
        Case("items/at-limit/encode", lambda: as_json(
            "/encode", [{"img_blob": base64.b64encode(photo).decode()}] * half
            + [{"text": f"{i} {words}"} for i in range(max_items - half)]), items=max_items),
        Case("items/at-limit/weaviate", lambda: as_json("/vectorize", {
            "texts": [f"{i} {words}" for i in range(max_items - half)],
            "images": [base64.b64encode(photo).decode()] * half}), items=max_items),
        # Every item a camera-sized photo (plain, so the body stays small): what decoding keeps of each adds up
        Case("items/at-limit-4000x3000-photos/multipart", lambda: multipart(
            {f"image-{i}": camera_photo(i) for i in range(max_items)}), items=max_items),
        Case("items/over-limit/multipart", lambda: multipart({f"text-{i}": "a dog" for i in range(max_items * 2)})),
    ]


def json_cases(max_request_mb: float) -> list[Case]:
    size = int(max_request_mb * MIB * 0.95)
    return [
        Case("json/empty-lists/encode", lambda: json_bomb("/encode", b"[]", size, lambda b: b)),
        Case("json/objects/encode", lambda: json_bomb("/encode", b'{"a":0}', size, lambda b: b)),
        Case("json/strings/openai", lambda: json_bomb("/v1/embeddings", b'"a"', size,
                                                       lambda b: b'{"input":' + b + b"}")),
        Case("json/strings/weaviate", lambda: json_bomb("/vectorize", b'"a"', size,
                                                         lambda b: b'{"texts":' + b + b"}")),
        Case("json/truss-pixel-rows", lambda: json_bomb(
            "/v1/models/model:predict", b"[0,0,0]", size, lambda b: b'{"labels":["a"],"image":[' + b + b"]}")),
    ]


def pixel_limit_cases() -> list[Case]:
    return [Case(f"image/{name}/multipart",
                 lambda f=fmt, m=mode, s=size, o=options: multipart({"image-1": at_limit(f, m, s, o)}),
                 heavy=fmt in ("JPEG2000", "TIFF", "WEBP"), at_pixel_limit=True)
            for name, (fmt, mode, size, options) in AT_LIMIT.items()]


# -- running a case against one worker -----------------------------------------------------------------------


def reset_peak(pid: int) -> float:
    """Reset the worker's VmHWM to its RSS now (Linux: clear_refs 5); returns that RSS in MiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return procs.status_kib(pid, "VmRSS") / 1024


def run(case: Case, url: str, pid: int, session: requests.Session, timeout: float = 120) -> Outcome:
    """Send one case to the server whose only worker is `pid`; its body is made before the clock starts."""
    path, headers, body = case.build()
    before = reset_peak(pid)
    start = time.perf_counter()
    response = session.post(url + path, data=body, headers=headers, timeout=timeout)
    seconds = time.perf_counter() - start
    peak = procs.status_kib(pid, "VmHWM") / 1024
    code = None
    if response.status_code != 200:
        try:
            error = response.json()["error"]
            code = error["code"] if isinstance(error, dict) else f"weaviate's shape: {error[:80]}"
        except (ValueError, KeyError, TypeError):
            code = f"not JSON: {response.text[:80]!r}"
    return Outcome(case.name, case.items, case.at_pixel_limit, response.status_code, code, round(seconds, 3),
                   round(peak - before, 1))


# The budget every case must meet on a worker of the defaults (docs/reliability.md's cost model justifies it):
# 2 s and 256 MiB of peak growth beyond the model's own passes over the items asked for (`per_item_s`, measured on
# ordinary items by warm_up). A picture at the pixel limit may take 16 bytes a pixel of it, and 64 MiB for the
# request's own bytes: the decoders' whole-frame buffers are the price of CLIP_MAX_IMAGE_PIXELS itself (libwebp's
# animation decoder keeps two RGBA canvases, then hands over a copy that Pillow copies again: 15 bytes a pixel).
BUDGET_SECONDS = 2.0
BUDGET_MIB = 256.0
BYTES_PER_PIXEL_AT_LIMIT = 16
REQUEST_MIB_AT_LIMIT = 64.0
DEFAULT_MAX_PIXELS = 40_000_000


def budget(outcome: Outcome, per_item_s: float, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[float, float]:
    """(seconds, MiB) this outcome may take."""
    mib = BUDGET_MIB
    if outcome.at_pixel_limit:
        mib = max(mib, REQUEST_MIB_AT_LIMIT + BYTES_PER_PIXEL_AT_LIMIT * max_pixels / MIB)
    return BUDGET_SECONDS + per_item_s * (outcome.items - 1), mib


def within_budget(outcome: Outcome, per_item_s: float) -> bool:
    """A 200 or a 4xx, in time and memory."""
    seconds, mib = budget(outcome, per_item_s)
    return (outcome.status == 200 or 400 <= outcome.status < 500) and outcome.seconds <= seconds \
        and outcome.peak_growth_mib <= mib


def warm_up(url: str, rounds: int = 5) -> float:
    """A worker's first passes set up its kernels, so no case pays for that; returns the model's seconds per item
    after that (the median of `rounds` requests of one photo and one text, halved)."""
    path, headers, body = multipart({"image-1": jpeg_photo(), "text-1": "a warm up"})
    times = []
    with requests.Session() as session:
        for _ in range(2 + rounds):
            start = time.perf_counter()
            session.post(url + path, data=body, headers=headers, timeout=120).raise_for_status()
            times.append(time.perf_counter() - start)
    return sorted(times[2:])[rounds // 2] / 2
