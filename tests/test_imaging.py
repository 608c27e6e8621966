import io

import numpy as np
import pytest
from conftest import image_bytes
from PIL import Image

from clipsvc.parsing.images import ImageRejected, decode_image
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


@pytest.mark.parametrize("fmt, size", [("JPEG", (4000, 3000)), ("PNG", (3000, 2000)), ("JPEG", (3000, 100))])
def test_large_images_are_decoded_small_but_not_below_twice_the_model_input(fmt, size):
    full = decode_image(image_bytes(fmt, size), 10**9)
    fast = decode_image(image_bytes(fmt, size), 10**9, min_side=224)
    assert full.size == size
    assert min(fast.size) >= min(448, min(size)) and min(fast.size) < max(896, min(size) + 1)
    assert abs(fast.size[0] / fast.size[1] - size[0] / size[1]) < 0.02  # aspect ratio kept
    assert np.abs(np.asarray(fast.resize((64, 48))).astype(int) - np.asarray(full.resize((64, 48)))).max() < 8


def test_small_images_are_untouched_by_the_fast_path():
    assert decode_image(image_bytes("JPEG", (640, 480)), LIMIT, min_side=224).size == (640, 480)
