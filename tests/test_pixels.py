"""The split preprocessing against transformers' processor: the same pixels, or the processor itself."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from clipsvc.encoder.model import ClipEncoder
from clipsvc.parsing.images import decode_image
from testkit.encoding import encode_images, preprocess_images

# One uint8 level, normalised: where the resized picture would dwarf the crop (a side of 3 pixels), only the crop's
# box is resized, the same sampling with other float rounding: on average under half a level apart.
ONE_LEVEL = 1 / 255 / 0.26


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (224, 224), (225, 224), (1000, 333), (97, 61), (3, 500),
                                  (5000, 7)])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_pixels_equal_the_processors(encoder, size, mode):
    """The uint8 resize-and-crop plus normalisation gives the processor's pixels: any shape, upscaled or down,
    from pictures that were grey or transparent before decode_image made them RGB."""
    rng = np.random.default_rng(size[0] * size[1])
    array = rng.integers(0, 255, (size[1], size[0], 3 if mode == "RGB" else len(mode)), dtype=np.uint8)
    image = decode_image(png(Image.fromarray(array.squeeze(), mode)), 10**9)
    assert encoder.pixels is not None  # CLIP's config: the fast path applies
    expected = encoder.processor(images=[image], return_tensors="pt")["pixel_values"]
    rows = encoder.image_rows([image])
    assert rows[0].dtype == torch.uint8 and rows[0].shape == (224, 224, 3)
    pixels = preprocess_images(encoder, [image]).numpy()
    if max(size) / min(size) > 4:
        assert np.abs(pixels - expected.numpy()).mean() < ONE_LEVEL / 2
    else:
        np.testing.assert_allclose(pixels, expected.numpy(), atol=1e-5)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_the_encoder_takes_rgb_pictures_only(encoder, mode):
    """Pictures are made RGB once, by decode_image (white behind transparency); the encoder does not convert again."""
    with pytest.raises(ValueError, match=f"RGB pictures, not {mode}"):
        encoder.image_rows([Image.new("RGB", (32, 32)).convert(mode)])


def test_other_preprocessing_configs_use_the_processor(model_dir, encoder):
    """A config the recipe does not cover (here: a square resize) falls back to the processor for everything."""
    processor = type(encoder.processor).from_pretrained(model_dir, size={"height": 224, "width": 224})
    other = ClipEncoder(encoder.towers, encoder.tokenizer, processor, encoder.facts, encoder.serving)
    image = Image.fromarray(np.full((48, 64, 3), 128, dtype=np.uint8))
    assert other.pixels is None
    assert preprocess_images(other, [image]).shape == (1, 3, 224, 224)
    assert encode_images(other, [image]).shape == (1, encoder.facts.embedding_dim)
