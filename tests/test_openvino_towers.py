"""OpenVINO as the CPU engine: the conversion, its cache and lock, int8 weights, text shapes, and the vectors
against transformers' own fp32 model."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import stat

import numpy as np
import openvino as ov
import pytest
import torch
from transformers import CLIPModel, CLIPTokenizer

from clipsvc.encoder import loading, openvino_towers
from clipsvc.encoder.modeldir import ModelLoadError
from clipsvc.encoder.openvino_towers import OpenVINOTowers, converted, image_padding, text_shape
from clipsvc.encoder.towers import TorchTowers
from testkit.encoding import cpu_encoder

TEXTS = ["a dog", "a red car parked on a street at night in the rain, seen from across the road",
         "Man staring at the moon, moon is made of mechanical parts"]


@pytest.fixture(scope="module")
def model(model_dir):
    return CLIPModel.from_pretrained(model_dir, dtype=torch.float32).eval()


def tokens(model_dir, texts):
    batch = CLIPTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def convert(model, model_dir, cache, precision):
    """The conversion's directory, keeping the logit scale as the loader does."""
    directory, kept = converted(lambda: model, model_dir, cache, precision, lambda m: {"scale": m.logit_scale.item()})
    assert kept == {"scale": model.logit_scale.item()}
    return directory


def compiled(model, model_dir, cache, precision, threads=1):
    directory = convert(model, model_dir, cache, precision)
    return OpenVINOTowers(directory, precision, threads, native_bf16=False, pad_id=0,
                          max_tokens=model.config.text_config.max_position_embeddings,
                          image_tokens=loading._image_tokens(model.config))


def cosines(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(ours.float(), theirs.float()).min())


@pytest.mark.parametrize("precision, closest", [("fp32", 0.99999), ("int8", 0.99)])
def test_both_towers_give_transformers_vectors(model, model_dir, tmp_path, precision, closest):
    """Every batch size and text length, padding included, against the fp32 model they were converted from."""
    ours, theirs = compiled(model, model_dir, tmp_path, precision), TorchTowers(model)
    pixels = torch.randn(5, 3, model.config.vision_config.image_size, model.config.vision_config.image_size)
    with torch.inference_mode():
        for count in (1, 5):
            assert cosines(ours.images(pixels[:count]), theirs.images(pixels[:count])) > closest
        for texts in (TEXTS[:1], TEXTS, TEXTS * 3):
            ids, mask = tokens(model_dir, texts)
            assert cosines(ours.texts(ids, mask), theirs.texts(ids, mask)) > closest


def test_a_conversion_is_made_once_and_reused_without_loading_the_model(model, model_dir, tmp_path, monkeypatch):
    first = convert(model, model_dir, tmp_path, "bf16")
    monkeypatch.setattr(openvino_towers, "_convert", lambda *args: pytest.fail("converted again"))
    again = converted(lambda: pytest.fail("loaded the model"), model_dir, tmp_path, "fp32", lambda m: {})
    assert again == (first, {"scale": model.logit_scale.item()})  # fp32 and bf16 compile from the same IR
    assert {p.name for p in first.iterdir()} == {"image.xml", "image.bin", "text.xml", "text.bin", "facts.json",
                                                 ".complete"}


def test_changed_model_files_make_a_new_conversion_and_drop_the_old(model, model_dir, tmp_path):
    copy, cache = shutil.copytree(model_dir, tmp_path / "model"), tmp_path / "cache"
    first = convert(model, copy, cache, "int8")
    config = copy / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    second = convert(model, copy, cache, "int8")
    assert second != first and not first.exists()
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [second.name]


class Events(logging.Handler):
    """Remembers the `event` of each record."""

    def __init__(self):
        super().__init__()
        self.events = []

    def emit(self, record):
        self.events.append(getattr(record, "event", None))


def _build_in_a_child(model_dir, cache, queue):
    events = Events()
    log = logging.getLogger("clipsvc.encoder.openvino_towers")
    log.setLevel(logging.INFO)
    log.addHandler(events)
    encoder = cpu_encoder(model_dir, model_cache_dir=cache, precision="fp32")
    queue.put((encoder.serving.engine, events.events.count("openvino_converted")))


def test_workers_loading_together_convert_once(model_dir, tmp_path):
    """The first takes the lock and converts; the other waits for it, then compiles the same files."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_build_in_a_child, args=(model_dir, tmp_path, queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = sorted(queue.get(timeout=120) for _ in children)
    for child in children:
        child.join(10)
    assert results == [("openvino", 0), ("openvino", 1)]


def test_an_unwritable_cache_is_a_load_error_that_names_the_setting(model, model_dir, tmp_path):
    if os.geteuid() == 0:
        cache = tmp_path / "file"
        cache.write_text("not a directory")
    else:
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(ModelLoadError, match="CLIP_MODEL_CACHE_DIR"):
        convert(model, model_dir, cache / "sub" if cache.is_file() else cache, "fp32")


def test_int8_compresses_every_matmul_weight(model):
    tower = openvino_towers._traced(model, model.config.vision_config.image_size, torch.ones(2, 8, dtype=torch.long))[
        "image"]
    matmuls = [op for op in tower.get_ordered_ops() if op.get_type_name() == "MatMul"
               and op.input_value(1).get_node().get_type_name() == "Constant"]
    assert openvino_towers.compress_weights(tower) == len(matmuls) > 0
    weights = [op.input_value(1).get_node().input_value(0).get_node().input_value(0).get_node() for op in matmuls]
    assert {w.get_element_type() for w in weights} == {ov.Type.i8}


def layers(*widths: tuple[int, int]) -> ov.Model:
    """Matmuls by weights of these (input, output) widths, one after another, and an attention-like matmul of two
    activations, which has no weight and is left out."""
    from openvino import opset13 as ops

    hidden = start = ops.parameter([-1, -1, widths[0][0]], ov.Type.f32)
    for width, out in widths:
        hidden = ops.matmul(hidden, ops.constant(np.ones((width, out), np.float32)), False, False)
    heads = ops.reshape(hidden, [0, 0, 2, -1], special_zero=True)
    return ov.Model([ops.matmul(heads, heads, False, True)], [start])


@pytest.mark.parametrize("widths, most, group", [
    ([(1024, 4096), (4096, 1024)], 1024, 1024),  # ViT-L/14's image layers
    ([(768, 3072), (3072, 768)], 1024, 768),  # its text layers: 1024 would miss the first
    ([(768, 3072), (3072, 768)], 256, 256),
    ([(1280, 5120), (5120, 1280)], 1024, 640),  # ViT-H/14's images
    ([(32, 64), (64, 32)], 1024, 32),  # the tiny stand-in
])
def test_int8_groups_divide_every_layer(widths, most, group):
    assert openvino_towers.quantisation_group(layers(*widths), most) == group


@pytest.mark.parametrize("rows, length, shape", [
    (1, 5, (1, 5)), (1, 77, (1, 77)), (2, 8, (2, 8)), (3, 9, (3, 16)), (5, 77, (6, 77)), (7, 73, (8, 77)),
    (9, 20, (12, 24)), (13, 1, (16, 8)), (200, 40, (256, 40)), (256, 77, (256, 77))])
def test_text_shapes_are_rounded_up_to_few(rows, length, shape):
    assert text_shape(rows, length, 77) == shape


def test_text_shapes_stay_few_and_less_than_half_more_rows():
    shapes = {text_shape(rows, length, 77) for rows in range(1, 257) for length in range(1, 78)}
    assert len(shapes) == 227
    assert all(rows <= text_shape(rows, 8, 77)[0] < rows * 1.5 for rows in range(2, 257))


@pytest.mark.parametrize("images, tokens, padding", [
    (1, 257, 7), (1, 577, 7), (1, 197, 3), (1, 256, 0), (1, 50, 0), (2, 257, 0), (8, 257, 0)])
def test_a_lone_image_is_padded_where_a_few_rows_reach_a_multiple_of_eight(images, tokens, padding):
    """ViT-L/14 at 224 and 336, ViT-B/16; ViT-B/32 would gain 12 % more rows, and batches are left alone."""
    assert image_padding(images, tokens) == padding


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_padded_tokens_do_not_change_an_image_vector(model, model_dir, tmp_path, precision):
    """They are masked out of attention: the same vectors, at any padding."""
    towers = compiled(model, model_dir, tmp_path, precision)
    pixels = torch.randn(2, 3, model.config.vision_config.image_size, model.config.vision_config.image_size)
    for rows in (pixels[:1], pixels):
        plain = towers.images(rows, padding=0)
        for padding in (1, 7, 30):
            assert cosines(towers.images(rows, padding=padding), plain) > 0.99999


def test_dropping_the_weight_files_pages_keeps_the_vectors(model, model_dir, tmp_path):
    towers = compiled(model, model_dir, tmp_path, "fp32")
    pixels = torch.randn(2, 3, model.config.vision_config.image_size, model.config.vision_config.image_size)
    before = towers.images(pixels)
    assert towers.release_file_pages() > 0
    assert torch.equal(towers.images(pixels), before)


def test_the_default_engine_serves_the_cpu(encoder):
    """What users get: OpenVINO, its threads fixed (they do not follow the load)."""
    assert (encoder.serving.engine, encoder.serving.dynamic_threads) == ("openvino", False)
    assert np.isfinite(encoder.encode([], ["a dog"]).texts).all()


def test_a_worker_finding_the_conversion_cached_never_loads_transformers_model(model_dir, tmp_path, monkeypatch):
    """The logit scale and the guard's fp32 reference were kept beside the conversion: same facts, same guard."""
    first = cpu_encoder(model_dir, model_cache_dir=tmp_path, precision="bf16")
    monkeypatch.setattr(loading, "_fp32_model", lambda *args: pytest.fail("loaded transformers' model"))
    again = cpu_encoder(model_dir, model_cache_dir=tmp_path, precision="bf16")
    assert again.facts == first.facts
    assert again.serving.precision_cosine == first.serving.precision_cosine >= 0.999
