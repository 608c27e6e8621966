"""An image file's blocks are counted before Pillow walks them: floods of empty blocks and piles of metadata are
refused at once, and no file a camera, editor or Pillow writes comes near either limit."""

from __future__ import annotations

import pytest

from clipsvc.parsing.containers import MAX_BLOCKS, WALKS, over_limits
from testkit import corpus, hostile


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "JPEG2000"])
def test_a_flood_of_empty_blocks_is_refused(fmt):
    assert "more than 65536 blocks" in over_limits(hostile.block_flood(fmt, MAX_BLOCKS + 10))
    assert over_limits(hostile.block_flood(fmt, 1000)) is None


@pytest.mark.parametrize("data, refused", [
    (hostile.jpeg_app_segments(100), False),  # 6.4 MB of Exif segments
    (hostile.jpeg_app_segments(140), True),  # 9 MB: Pillow joins them in quadratic time
    (hostile.png_with([hostile.png_chunk(b"tEXt", b"k\0" + b"v" * 1_000_000)] * 7), False),
    (hostile.png_with([hostile.png_chunk(b"tEXt", b"k\0" + b"v" * 1_000_000)] * 9), True),
])
def test_metadata_past_8_mb_is_refused(data, refused):
    assert (over_limits(data) is not None) == refused
    if refused:
        assert "more than 8 MB of metadata" in over_limits(data)


def test_every_file_of_the_corpus_is_within_the_limits():
    files = corpus.whole_files()
    walked = {f.name for f in files if any(f.data.startswith(signature) for signature, _ in WALKS)}
    assert {"jpeg-photo-4000x3000", "png-rgba-2400x1600", "gif-animated", "jpeg2000-photo-2400x1600"} <= walked
    assert [f.name for f in files if over_limits(f.data)] == []


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"\xff\xd8" + b"\xff" * 50,
                                  b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x01ftyp"])
def test_truncated_headers_end_the_walk_quietly(data):
    assert over_limits(data) is None  # Pillow then says what is wrong with the file
