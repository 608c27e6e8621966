"""The encoder against transformers itself: the service must give what CLIPModel gives."""

import io

import numpy as np
import pytest
import torch
from conftest import post_clip
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from clipsvc.encoder.model import ClipEncoder
from clipsvc.encoder.modeldir import ModelLoadError
from clipsvc.encoder.standin import build_standin


def noise_jpeg(seed: int = 0, size=(320, 240)) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def reference_vectors(model_dir, image_data: bytes, text: str) -> tuple[np.ndarray, np.ndarray]:
    """What a user of transformers writes by hand, with no code of ours."""
    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)
    inputs = processor(text=[text], images=[Image.open(io.BytesIO(image_data)).convert("RGB")],
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=inputs["pixel_values"])
        text_out = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    image = getattr(image, "pooler_output", image)[0].numpy()
    text_out = getattr(text_out, "pooler_output", text_out)[0].numpy()
    return image / np.linalg.norm(image), text_out / np.linalg.norm(text_out)


@pytest.mark.parametrize("seed", [0, 1])
def test_served_vectors_equal_transformers(client, model_dir, seed):
    data, text = noise_jpeg(seed), "Man staring at the moon, moon is made of mechanical parts"
    body = post_clip(client, {"image-1": data, "text-1": text}).json
    ref_image, ref_text = reference_vectors(model_dir, data, text)
    assert float(np.dot(body["image_1_vector"], ref_image)) > 0.999
    assert float(np.dot(body["text_1_vector"], ref_text)) > 0.999


def test_batching_does_not_change_vectors(encoder):
    images = [Image.open(io.BytesIO(noise_jpeg(s))).convert("RGB") for s in range(10)]
    together = encoder.encode_images(images)
    alone = np.concatenate([encoder.encode_images([im]) for im in images])
    assert together.shape == (10, encoder.info.embedding_dim)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_texts_are_truncated_to_77_tokens(encoder):
    vectors = encoder.encode_texts(["word " * 200, "short"])
    assert vectors.shape == (2, encoder.info.embedding_dim)


def test_pytorch_bin_weights_load_the_same(tmp_path, encoder):
    bin_dir = build_standin(tmp_path / "bin", arch="tiny", weights="bin")
    assert (bin_dir / "pytorch_model.bin").is_file() and not (bin_dir / "model.safetensors").exists()
    from_bin = ClipEncoder.load(bin_dir, device="cpu", threads=1)
    np.testing.assert_allclose(from_bin.encode_texts(["a cat"]), encoder.encode_texts(["a cat"]), atol=1e-6)


def test_info(encoder, model_dir):
    info = encoder.info
    assert (info.device, info.dtype, info.threads) == ("cpu", "float32", 1)
    assert info.embedding_dim == 32 and info.max_text_tokens == 77 and info.model_path == str(model_dir)


def test_truncated_weights_fail_with_the_path(tmp_path):
    broken = build_standin(tmp_path / "broken", arch="tiny")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match=str(broken)):
        ClipEncoder.load(broken, device="cpu")


def test_cuda_without_a_gpu_is_a_clear_error(model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        ClipEncoder.load(model_dir, device="cuda")
