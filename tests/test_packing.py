"""oneDNN-packed layers (clipsvc.encoder.packing) against the transformers layers they replace."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image
from torch import nn
from transformers import CLIPModel
from transformers.models.clip.modeling_clip import CLIPMLP

from clipsvc.encoder import packing
from testkit import procs
from testkit.encoding import cpu_encoder, encode_images, encode_texts

pytestmark = pytest.mark.skipif(not packing.supported(torch.float32), reason="torch without oneDNN")
DTYPES = [torch.float32] + ([torch.bfloat16] if packing.supported(torch.bfloat16) else [])
# Worst relative error of one layer's output: fp32 rounding, or bf16's 8-bit mantissa over a 64-term sum.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2}


def relative_error(ours: torch.Tensor, exact: torch.Tensor) -> float:
    return float((ours.float() - exact).abs().max() / exact.abs().max())


@pytest.mark.parametrize("rows, bucket", [(0, 0), (1, 16), (16, 16), (17, 32), (256, 256), (257, 320), (320, 320),
                                         (321, 384), (513, 640), (256 * 77, 20480)])
def test_bucket(rows, bucket):
    assert packing.bucket(rows) == bucket


def test_texts_meet_few_buckets():
    """Every text pass's row count (texts x tokens, up to 256 x 77) lands on one of 41 sizes, none 25% over."""
    sizes = {packing.bucket(rows) for rows in range(1, 256 * 77 + 1)}
    assert len(sizes) == 41
    assert all(rows <= packing.bucket(rows) <= max(rows + 15, rows * 1.25) for rows in range(1, 256 * 77 + 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bucketed", [False, True])
@pytest.mark.parametrize("shape", [(1, 64), (3, 64), (2, 257, 64)])  # one row, a batch, (images, tokens, width)
def test_packed_linear_is_the_linear(dtype, shape, bucketed):
    torch.manual_seed(0)
    linear, x = nn.Linear(64, 48), torch.randn(*shape)
    with torch.inference_mode():
        ours = packing.PackedLinear(linear, dtype, bucketed=bucketed)(x.to(dtype))
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
def test_pack_swaps_every_image_linear_and_in_bf16_every_text_one(model_dir, dtype):
    model = CLIPModel.from_pretrained(model_dir).eval()
    text_layers = [id(m) for m in [*model.text_model.modules(), model.text_projection]]
    assert packing.pack(model, dtype)
    image = [*model.vision_model.modules(), model.visual_projection]
    text = [*model.text_model.modules(), model.text_projection]
    assert not any(isinstance(m, (nn.Linear, CLIPMLP)) for m in image)
    assert sum(isinstance(m, packing.PackedMLP) for m in image) == model.config.vision_config.num_hidden_layers
    assert not any(m.bucketed for m in image if isinstance(m, packing.PackedLinear))
    if dtype == torch.bfloat16:  # texts come in thousands of shapes: rows rounded up to buckets
        assert not any(isinstance(m, (nn.Linear, CLIPMLP)) for m in text)
        assert all(m.bucketed for m in text if isinstance(m, packing.PackedLinear))
    else:  # fp32 texts stay on plain linears (MKL keeps no state per shape)
        assert [id(m) for m in text] == text_layers


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_packed_encoder_gives_the_vectors_of_the_plain_one(model_dir, encoder, precision):
    """CLIP_CPU_PACKED_WEIGHTS (on in the service), in both formats it packs."""
    if precision == "bf16" and not packing.supported(torch.bfloat16):
        pytest.skip("no bf16 linear in oneDNN on this CPU")
    packed = cpu_encoder(model_dir, cpu_engine="torch", cpu_packed_weights=True, precision=precision)
    plain = cpu_encoder(model_dir, cpu_engine="torch", cpu_packed_weights=False, precision=precision)
    assert packed.serving.packed_weights and not plain.serving.packed_weights
    assert packed.serving.precision == precision and packed.serving.dtype == plain.serving.dtype
    images = [Image.new("RGB", (90, 60), (i * 40, 200 - i * 30, 90)) for i in range(4)]
    texts = ["a red square", "a much longer caption about a dog on a sofa"]
    closest = 0.99999 if precision == "fp32" else 0.9999
    for encode, items in ((encode_images, images), (encode_texts, texts)):
        ours, theirs, exact = (encode(model, items) for model in (packed, plain, encoder))
        assert (ours * theirs).sum(axis=1).min() > closest
        assert (ours * exact).sum(axis=1).min() > 0.999


def test_int8_is_never_packed(model_dir):
    serving = cpu_encoder(model_dir, cpu_engine="torch", cpu_packed_weights=True, precision="int8").serving
    assert serving.precision == "int8" and not serving.packed_weights


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_texts_of_every_shape_do_not_grow_a_bf16_worker(model_dir, engine):
    """oneDNN (torch's and OpenVINO's) keeps kernels per input shape: unbucketed, these 300 passes grow the tiny
    stand-in's process by ~200 MiB with torch (plain bf16 linears too), ~65 MiB with OpenVINO; bucketed, by a
    few."""
    if not packing.supported(torch.bfloat16):
        pytest.skip("no bf16 linear in oneDNN on this CPU")
    encoder = cpu_encoder(model_dir, cpu_engine=engine, cpu_packed_weights=True, precision="bf16")
    rng, words = random.Random(0), "the a dog cat on of red big small house photo tree river".split()

    def passes(count: int) -> None:
        for _ in range(count):
            length, texts = rng.randint(1, 70), rng.randint(1, 16)
            encoder.forward_texts(encoder._tokens([" ".join(rng.choices(words, k=length))] * texts))

    passes(100)  # most buckets met
    before = procs.smaps_rollup("self")["rss_mib"]
    passes(300)
    assert procs.smaps_rollup("self")["rss_mib"] - before < 40
