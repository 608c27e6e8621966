import io

import numpy as np
import pytest
from conftest import image_bytes
from PIL import Image, ImageOps

from clipsvc.encoder.pixels import PixelRecipe
from clipsvc.parsing.images import WINDOW_MARGIN, ImageRejected, decode_image, to_rgb
from testkit import corpus
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
    assert max(fast.size) <= min(fast.size) * (1 + 2 * WINDOW_MARGIN / 224) + 6  # the long side: its centre only
    # Box filters (JPEG's DCT scaling, reduce) then the same bicubic: close in pixels; test_corpus.py compares vectors
    assert np.abs(crop_of(fast) - crop_of(full)).mean() < 5


def test_small_images_keep_their_short_side_and_the_crop_pixels():
    data = encoded(corpus.picture("RGB", (300, 250)), "PNG")
    fast = decode_image(data, LIMIT, min_side=224)
    assert fast.size == (262, 250)  # 250 + 2 * (3 * 250 / 224 + 2, rounded up)
    # No box filter here: only the long side's scale differs, by its rounding to whole pixels (0.1%)
    assert np.abs(crop_of(fast) - crop_of(decode_image(data, LIMIT))).mean() < 0.5


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
