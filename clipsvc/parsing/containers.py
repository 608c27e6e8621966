"""An image file's blocks (JPEG markers, PNG chunks, GIF extensions, JPEG 2000 boxes) counted before Pillow reads
them. Pillow walks them in Python, a few microseconds each: a 20 MB PNG of a million empty chunks cost it 2.4 s
of a core, a 4 MB JPEG of a million comment markers 1.5 s, and a JPEG's Exif segments are joined in quadratic
time. Here the walk is a few byte reads a block, stops at the first limit passed, and says which: no camera or
editor writes a file near either limit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

MAX_BLOCKS = 65_536  # chunks, markers, extension sub-blocks or boxes: a 40 MP PNG in 8 KB chunks has 2 560
MAX_METADATA_BYTES = 8 * 1024 * 1024  # what is not pixels (text, Exif, XMP, ICC, comments); Pillow's PNG text too


def over_limits(data: bytes) -> str | None:
    """Why this file has too many blocks or too much metadata, in words that end a message; None if it has not."""
    for signature, walk in WALKS:
        if data.startswith(signature):
            return walk(data)
    return None


def _verdict(blocks: int, metadata: int) -> str | None:
    if blocks > MAX_BLOCKS:
        return f"has more than {MAX_BLOCKS} blocks (chunks, markers or boxes); save it again"
    if metadata > MAX_METADATA_BYTES:
        return (f"has more than {MAX_METADATA_BYTES // 1024 ** 2} MB of metadata (text, Exif, ICC, comments); "
                "save it again without its metadata")
    return None


# PNG chunks that are the picture, not metadata about it
_PNG_PICTURE = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"acTL", b"fcTL", b"fdAT", b"IEND"})


def _png(data: bytes) -> str | None:
    at, blocks, metadata = 8, 0, 0
    while at + 8 <= len(data) and blocks <= MAX_BLOCKS and metadata <= MAX_METADATA_BYTES:
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        blocks += 1
        if kind not in _PNG_PICTURE:
            metadata += length
        if kind == b"IEND":
            break
        at += 12 + length
    return _verdict(blocks, metadata)


_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn: no length follows


def _jpeg(data: bytes) -> str | None:
    """The markers before the first scan (after it, libjpeg reads the file, in C)."""
    at, blocks, metadata = 2, 0, 0
    while at + 4 <= len(data) and data[at] == 0xFF and blocks <= MAX_BLOCKS and metadata <= MAX_METADATA_BYTES:
        marker = data[at + 1]
        blocks += 1
        if marker == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            break
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            metadata += length
        at += 2 + length
    return _verdict(blocks, metadata)


def _gif(data: bytes) -> str | None:
    """Extension blocks and their sub-blocks, up to the first image."""
    if len(data) < 13:
        return None
    flags = data[10]
    at = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    blocks, metadata = 0, 0
    while at + 2 <= len(data) and data[at] == 0x21 and blocks <= MAX_BLOCKS:
        at += 2  # introducer and label
        while at < len(data) and data[at] and blocks <= MAX_BLOCKS:
            blocks += 1
            metadata += data[at]
            at += 1 + data[at]
        at += 1  # the terminator
        blocks += 1
    return _verdict(blocks, metadata)


def _jp2(data: bytes) -> str | None:
    """The file's boxes up to the codestream, and those inside its header box."""
    blocks, metadata = 0, 0
    for kind, start, stop in _boxes(data, 0, len(data)):
        blocks += 1
        if kind == b"jp2c" or blocks > MAX_BLOCKS:
            break
        if kind == b"jp2h":  # Pillow reads its boxes one by one too
            blocks += sum(1 for _ in itertools.islice(_boxes(data, start, stop), MAX_BLOCKS + 1))
        else:
            metadata += stop - start
    return _verdict(blocks, metadata)


def _boxes(data: bytes, at: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, start of content, end) of each box from `at` to `end`."""
    while at + 8 <= end:
        length, kind, header = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8], 8
        if length == 1 and at + 16 <= end:
            length, header = int.from_bytes(data[at + 8:at + 16], "big"), 16
        elif length == 0:  # to the end of the file
            length = end - at
        if length < header:
            return
        yield kind, at + header, at + length
        at += length


WALKS: tuple[tuple[bytes, Callable[[bytes], str | None]], ...] = (
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8", _jpeg),
    (b"GIF8", _gif),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", _jp2),
)
