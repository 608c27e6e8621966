"""oneDNN-packed image-tower layers (clipsvc.encoder.packing) against the transformers layers they replace."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn
from transformers import CLIPModel
from transformers.models.clip.modeling_clip import CLIPMLP

from clipsvc.encoder import packing
from clipsvc.encoder.model import ClipEncoder

pytestmark = pytest.mark.skipif(not packing.supported(torch.float32), reason="torch without oneDNN")
DTYPES = [torch.float32] + ([torch.bfloat16] if packing.supported(torch.bfloat16) else [])
# Worst relative error of one layer's output: fp32 rounding, or bf16's 8-bit mantissa over a 64-term sum.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2}


def relative_error(ours: torch.Tensor, exact: torch.Tensor) -> float:
    return float((ours.float() - exact).abs().max() / exact.abs().max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 64), (3, 64), (2, 257, 64)])  # one row, a batch, (images, tokens, width)
def test_packed_linear_is_the_linear(dtype, shape):
    torch.manual_seed(0)
    linear, x = nn.Linear(64, 48), torch.randn(*shape)
    with torch.inference_mode():
        ours = packing.PackedLinear(linear, dtype)(x.to(dtype))
        exact = linear(x.to(dtype).float())
    assert ours.shape == exact.shape and ours.dtype == dtype
    assert relative_error(ours, exact) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_folded_mlp_is_clip_mlp_with_quick_gelu(model_dir, dtype):
    """quick_gelu(x) = swish(1.702 x) / 1.702, with the factors in the weights around it."""
    model = CLIPModel.from_pretrained(model_dir)
    assert model.config.vision_config.hidden_act == "quick_gelu"
    mlp = model.vision_model.encoder.layers[0].mlp
    x = torch.randn(2, 50, mlp.fc1.in_features)
    with torch.inference_mode():
        ours, exact = packing.PackedMLP(mlp, dtype)(x.to(dtype)), mlp(x.to(dtype).float())
    assert relative_error(ours, exact) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_pack_image_tower_swaps_every_image_linear_and_no_text_one(model_dir, dtype):
    model = CLIPModel.from_pretrained(model_dir).eval()
    text_layers = [id(m) for m in model.text_model.modules()]
    assert packing.pack_image_tower(model, dtype)
    image = [*model.vision_model.modules(), model.visual_projection]
    assert not any(isinstance(m, (nn.Linear, CLIPMLP)) for m in image)
    assert sum(isinstance(m, packing.PackedMLP) for m in image) == model.config.vision_config.num_hidden_layers
    assert isinstance(model.visual_projection, packing.PackedLinear)
    assert [id(m) for m in model.text_model.modules()] == text_layers


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_packed_encoder_gives_the_vectors_of_the_plain_one(model_dir, encoder, precision):
    """CLIP_CPU_PACKED_WEIGHTS (on in the service), in both formats it packs."""
    if precision == "bf16" and not packing.supported(torch.bfloat16):
        pytest.skip("no bf16 linear in oneDNN on this CPU")
    packed = ClipEncoder.load(model_dir, device="cpu", threads=1, packed_weights=True, precision=precision)
    plain = ClipEncoder.load(model_dir, device="cpu", threads=1, precision=precision)
    assert packed.info.packed_weights and not plain.info.packed_weights
    assert packed.info.precision == precision and packed.info.dtype == plain.info.dtype
    images = [Image.new("RGB", (90, 60), (i * 40, 200 - i * 30, 90)) for i in range(4)]
    texts = ["a red square", "a much longer caption about a dog on a sofa"]
    closest = 0.99999 if precision == "fp32" else 0.9999
    assert (packed.encode_images(images) * plain.encode_images(images)).sum(axis=1).min() > closest
    assert (packed.encode_images(images) * encoder.encode_images(images)).sum(axis=1).min() > 0.999
    assert (packed.encode_texts(texts) == plain.encode_texts(texts)).all()  # the text tower is not packed


def test_int8_is_never_packed(model_dir):
    info = ClipEncoder.load(model_dir, device="cpu", threads=1, packed_weights=True, precision="int8").info
    assert info.precision == "int8" and not info.packed_weights
