"""The encoder against transformers itself: the service must give what CLIPModel gives."""

import io

import numpy as np
import pytest
import torch
from conftest import post_clip
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from clipsvc.encoder.modeldir import ModelLoadError
from clipsvc.encoder.standin import build_standin
from testkit.encoding import cpu_encoder, encode_images, encode_texts


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
    together = encode_images(encoder, images)
    alone = np.concatenate([encode_images(encoder, [im]) for im in images])
    assert together.shape == (10, encoder.facts.embedding_dim)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_texts_are_truncated_to_77_tokens(encoder):
    vectors = encode_texts(encoder, ["word " * 200, "short"])
    assert vectors.shape == (2, encoder.facts.embedding_dim)


def test_pytorch_bin_weights_load_the_same(tmp_path, encoder):
    bin_dir = build_standin(tmp_path / "bin", arch="tiny", weights="bin")
    assert (bin_dir / "pytorch_model.bin").is_file() and not (bin_dir / "model.safetensors").exists()
    from_bin = cpu_encoder(bin_dir)
    np.testing.assert_allclose(encode_texts(from_bin, ["a cat"]), encode_texts(encoder, ["a cat"]), atol=1e-6)


def test_facts(encoder, model_dir):
    serving, facts = encoder.serving, encoder.facts
    assert (serving.device, serving.dtype, serving.threads, serving.precision) == ("cpu", "float32", 1, "fp32")
    assert (serving.batching, serving.max_batch, serving.dynamic_threads) == (True, 8, False)
    assert facts.embedding_dim == 32 and facts.max_text_tokens == 77 and facts.model_path == str(model_dir)


def test_the_model_loaded_line_has_its_keys_in_their_order(encoder):
    """docs/configuration.md shows the line (tests/test_readme.py compares it with a served one)."""
    assert list(encoder.describe()) == [
        "model_path", "model_name", "embedding_dim", "image_size", "max_text_tokens", "image_tokens", "model_created",
        "logit_scale", "device", "engine", "dtype", "threads", "load_seconds", "batching", "max_batch",
        "dynamic_threads", "packed_weights", "precision", "precision_cosine", "precision_fallback", "text_cache_size"]



def test_truncated_weights_fail_with_the_path(tmp_path):
    broken = build_standin(tmp_path / "broken", arch="tiny")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match=str(broken)):
        cpu_encoder(broken)


def test_cuda_without_a_gpu_is_a_clear_error(model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        cpu_encoder(model_dir, device="cuda")
