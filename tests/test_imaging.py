import io

import numpy as np
import pytest
from conftest import image_bytes
from PIL import Image, ImageOps

from clipsvc.encoder.pixels import PixelRecipe
from clipsvc.parsing.containers import MAX_BLOCKS
from clipsvc.parsing.images import WINDOW_MARGIN, ImageRejected, _j2k_levels, decode_image, to_rgb
from testkit import corpus, hostile
from testkit.hostile import encoded
from testkit.images import png_header_only

LIMIT = 40_000_000


@pytest.mark.parametrize("fmt, mode, save", [
    ("JPEG", "RGB", {}),
    ("JPEG", "L", {}),
    ("JPEG", "CMYK", {}),
    ("PNG", "RGB", {}),
    ("PNG", "RGBA", {}),
    ("PNG", "LA", {}),
    ("PNG", "P", {}),
    ("PNG", "I;16", {}),
    ("PNG", "1", {}),
    ("BMP", "RGB", {}),
    ("GIF", "P", {}),
    ("TIFF", "RGB", {}),
    ("TIFF", "F", {}),
    ("PPM", "RGB", {}),
    ("PPM", "L", {}),
    ("ICO", "RGBA", {}),
    ("WEBP", "RGB", {}),
    ("WEBP", "RGBA", {"lossless": True}),
    ("TGA", "RGB", {}),
    ("DDS", "RGBA", {}),
    ("JPEG2000", "RGB", {}),
])
def test_supported_formats_decode_to_rgb(fmt, mode, save):
    color = {"RGB": (10, 200, 30), "RGBA": (10, 200, 30, 255), "CMYK": (0, 0, 0, 0), "LA": (90, 255),
             "L": 90, "P": 3, "I;16": 40000, "1": 1, "F": 0.5}[mode]
    image = decode_image(image_bytes(fmt, (32, 32), mode, color, **save), LIMIT)
    assert image.mode == "RGB" and image.size[0] > 0


def test_content_not_name_decides(tmp_path):
    png = image_bytes("PNG")
    assert decode_image(png, LIMIT).size == (64, 48)  # no name, no content type needed


def test_transparent_pixels_become_white():
    image = decode_image(image_bytes("PNG", (8, 8), "RGBA", (255, 0, 0, 0)), LIMIT)
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_palette_transparency_becomes_white():
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=0)
    assert decode_image(buffer.getvalue(), LIMIT).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    image = decode_image(image_bytes("PNG", (4, 4), "I;16", 32768), LIMIT)
    assert image.getpixel((0, 0)) == (128, 128, 128)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    r, g, b = decode_image(buffer.getvalue(), LIMIT).getpixel((8, 8))
    assert r > 200 and b < 50


def test_exif_orientation_is_applied():
    upright = Image.new("RGB", (40, 20), (255, 255, 255))
    upright.paste((255, 0, 0), (0, 0, 10, 20))  # red band on the left
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera would store it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif, quality=95)
    decoded = decode_image(buffer.getvalue(), LIMIT)
    assert decoded.size == (40, 20)
    assert decoded.getpixel((2, 10))[0] > 200 and decoded.getpixel((2, 10))[1] < 60


@pytest.mark.parametrize("data, code", [
    (b"", "empty_file"),
    (b"this is a text file named photo.jpg", "unsupported_image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unsupported_image"),
    (image_bytes("JPEG", (64, 64))[:200], "invalid_image"),
    (image_bytes("PNG", (64, 64))[:60], "invalid_image"),
    (png_header_only(30000, 30000), "too_many_pixels"),
    (png_header_only(7000, 6000), "too_many_pixels"),
])
def test_bad_images_are_rejected_with_a_code(data, code):
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, LIMIT)
    assert caught.value.error.id == code


def test_odd_shapes_are_fine():
    assert decode_image(image_bytes("PNG", (1, 1)), LIMIT).size == (1, 1)
    assert decode_image(image_bytes("PNG", (10000, 20)), LIMIT).size == (10000, 20)


def test_high_bit_depth_values_survive():
    array = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4096)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    decoded = np.asarray(decode_image(buffer.getvalue(), LIMIT))[..., 0]
    assert decoded.min() == 0 and decoded.max() >= 230


RECIPE = PixelRecipe(224, (224, 224), Image.Resampling.BICUBIC, 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def crop_of(image: Image.Image) -> np.ndarray:
    return RECIPE.resize_crop(image).numpy().astype(int)


@pytest.mark.parametrize("fmt, size", [("JPEG", (4000, 3000)), ("PNG", (3000, 2000)), ("JPEG", (3000, 100)),
                                       ("PNG", (100, 3000)), ("JPEG", (640, 480)), ("TIFF", (1000, 7000)),
                                       ("PNG", (2000, 2000))])
def test_images_are_decoded_to_what_the_centre_crop_reads(fmt, size):
    data = encoded(corpus.picture("RGB", size), fmt)
    full = decode_image(data, 10**9)
    fast = decode_image(data, 10**9, min_side=224)
    assert full.size == size
    short = min(size)
    assert min(fast.size) >= min(448, short) and min(fast.size) < max(896, short + 1)  # reduced, not below 2x
    assert max(fast.size) <= 2 * min(fast.size) * (1 + WINDOW_MARGIN / 224) + 6  # the long side: its centre only
    # Box filters (JPEG's DCT scaling, reduce) then the same bicubic: close in pixels; test_corpus.py compares vectors
    assert np.abs(crop_of(fast) - crop_of(full)).mean() < 5


@pytest.mark.parametrize("size", [(300, 250), (1000, 300), (641, 480), (250, 300), (897, 895)])
def test_small_images_keep_their_short_side_and_the_crop_pixels(size):
    data = encoded(corpus.picture("RGB", size), "PNG")
    fast, full = decode_image(data, LIMIT, min_side=224), decode_image(data, LIMIT)
    assert min(fast.size) == min(size) and max(fast.size) <= 2 * min(size) + 2 * (3 * min(size) // 224 + 3)
    # The window's length keeps the processor's rounded scale: the same sampling but for float rounding, which
    # moves under 1% of the pixels (a sharp edge by a few levels)
    assert (crop_of(fast) != crop_of(full)).mean() < 0.01


@pytest.mark.parametrize("size", [(10_000_000, 1), (1, 10_000_000), (20_000, 2), (65_500, 3)])
def test_extreme_aspect_ratios_keep_only_the_centre(size):
    """The shortest side scaled to 224 would make a 2.24-billion-pixel intermediate of 10 000 000 x 1."""
    image = decode_image(encoded(Image.new("L", size, 77), "PNG"), LIMIT, min_side=224)
    assert max(image.size) <= min(size) + 2 * (3 + 2) + 1
    assert crop_of(image).shape == (224, 224, 3) and (crop_of(image) == 77).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_window_is_taken_before_turning_upright_and_still_centred(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(corpus.picture("RGB", (3000, 1000)), "JPEG", exif=exif, quality=95)
    full = to_rgb(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    fast = decode_image(data, LIMIT, min_side=224)
    assert (fast.width > fast.height) == (full.width > full.height)
    assert np.abs(crop_of(fast) - crop_of(full)).mean() < 5


@pytest.mark.parametrize("mode, save", [("I;16", {}), ("P", {"transparency": 0}), ("1", {}), ("LA", {}),
                                        ("F", {}), ("RGBA", {})])
def test_large_pictures_of_every_mode_are_reduced_like_the_full_decode(mode, save):
    data = encoded(corpus.picture(mode, (1800, 1000)), "TIFF" if mode == "F" else "PNG", **save)
    fast = decode_image(data, LIMIT, min_side=224)
    assert min(fast.size) < 1000  # reduced
    assert np.abs(crop_of(fast) - crop_of(decode_image(data, LIMIT))).mean() < 5


@pytest.mark.parametrize("make, refused", [
    (lambda: hostile.ztxt_bomb(6, 1024 * 1024), False),  # 6 MB of text metadata: read, and ignored
    (lambda: hostile.ztxt_bomb(64, 1024 * 1024), True),  # 64 MB in all: Pillow's default would keep it
    (lambda: hostile.ztxt_bomb(1, 64 * 1024 * 1024), True),  # one chunk that inflates to 64 MB
    (lambda: hostile.iccp_bomb(64 * 1024 * 1024), True),
    (lambda: hostile.tiff_huge_tag(1_000_000), False),  # an unknown tag of a million values is never parsed
    (lambda: hostile.jpeg_app_segments(50), False),
])
def test_metadata_is_bounded(make, refused):
    if not refused:
        assert decode_image(make(), LIMIT, min_side=224).mode == "RGB"
        return
    with pytest.raises(ImageRejected, match="more metadata than this service reads") as caught:
        decode_image(make(), LIMIT, min_side=224)
    assert caught.value.error.id == "invalid_image"


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF", "WEBP"])
def test_multi_frame_files_are_read_at_their_first_frame_only(fmt, monkeypatch):
    """No later frame is sought or decoded (counting frames walks the file: a bomb of 100 000 frames)."""
    data = hostile.frames(fmt, 300)
    image_type = type(Image.open(io.BytesIO(data)))
    step = "_get_next" if fmt == "WEBP" else "_seek"  # how each plugin moves to a frame
    original, calls = getattr(image_type, step), []

    def recorded(self, *args, **kwargs):
        calls.append(args[:1])
        return original(self, *args, **kwargs)
    monkeypatch.setattr(image_type, step, recorded)
    assert decode_image(data, LIMIT, min_side=224).size == (64, 64)
    assert calls in ([()], []) if fmt == "WEBP" else set(calls) <= {(0,)}, calls


def test_a_webp_canvas_over_the_limit_is_refused_before_libwebp_allocates_it():
    with pytest.raises(ImageRejected, match="16383x10000") as caught:
        decode_image(hostile.webp_canvas_claim((16_383, 10_000)), LIMIT)
    assert caught.value.error.id == "too_many_pixels"


def test_a_codestream_header_of_millions_of_markers_is_walked_no_further_than_the_block_limit():
    """The levels are read in Python: past MAX_BLOCKS markers the walk stops, and the picture is decoded whole."""
    assert _j2k_levels(hostile.j2k_marker_flood(10)) == 5
    flood = hostile.j2k_marker_flood(MAX_BLOCKS + 10)
    assert _j2k_levels(flood) == 0
    assert min(decode_image(flood, LIMIT, min_side=224).size) >= 448


@pytest.mark.parametrize("resolutions", [1, 2, 6])
def test_jpeg_2000_is_decoded_at_a_resolution_level_it_holds(resolutions):
    data = encoded(corpus.picture("RGB", (2400, 1000)), "JPEG2000", num_resolutions=resolutions)
    image = decode_image(data, LIMIT, min_side=224)
    assert 448 <= min(image.size) < 1000 or (resolutions == 1 and min(image.size) < 1000)
