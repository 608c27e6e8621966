"""CLIP_PRECISION and its accuracy guard (clipsvc.encoder.precision), on real stand-in models."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from clipsvc.encoder import precision
from clipsvc.encoder.modeldir import ModelLoadError
from testkit.encoding import cpu_encoder, encode_images, encode_texts
from testkit.models import plant_outliers

IMAGES = [Image.new("RGB", (60, 40), (200, 30, 30)), Image.new("RGB", (40, 60), (20, 120, 230))]
TEXTS = ["a red square", "a blue rectangle on a white wall"]


@pytest.fixture(scope="module")
def planted(model_dir, tmp_path_factory):
    return plant_outliers(model_dir, tmp_path_factory.mktemp("planted") / "clip-tiny-outliers")


@pytest.mark.parametrize("requested, device, native, chosen", [
    ("auto", "cpu", True, "bf16"),
    ("auto", "cpu", False, "fp32"),
    ("auto", "cuda", False, "fp16"),
    ("fp32", "cpu", True, "fp32"),
    ("bf16", "cpu", False, "bf16"),  # asked for: honoured, however slow emulated bf16 is
    ("int8", "cpu", True, "int8"),
    ("fp16", "cuda", True, "fp16"),
    ("bf16", "cuda", True, "bf16"),
    ("fp16", "cpu", True, ModelLoadError),
    ("int8", "cuda", True, ModelLoadError),
])
def test_resolve(monkeypatch, requested, device, native, chosen):
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    if chosen is ModelLoadError:
        with pytest.raises(ModelLoadError, match="CLIP_PRECISION"):
            precision.resolve(requested, torch.device(device))
    else:
        assert precision.resolve(requested, torch.device(device)) == chosen


@pytest.mark.parametrize("missing", ["_is_avx512_bf16_supported", "_is_amx_tile_supported"])
def test_without_torch_s_private_cpu_probes_auto_takes_fp32_and_says_so(monkeypatch, caplog, missing):
    """torch reports native bf16 only through private functions; a torch without them must still start."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.delattr(torch.cpu, missing)
    assert precision.resolve("auto", torch.device("cpu")) == "fp32"
    assert [r.event for r in caplog.records if hasattr(r, "event")] == ["bf16_unknown"]


@pytest.mark.parametrize("engine", ["openvino", "torch"])
@pytest.mark.parametrize("name, dtype", [("bf16", "bfloat16"), ("int8", "float32")])
def test_each_precision_is_guarded_and_close_to_fp32(model_dir, encoder, engine, name, dtype):
    low = cpu_encoder(model_dir, cpu_engine=engine, precision=name)
    serving = low.serving
    assert (serving.precision, serving.dtype, serving.precision_fallback) == (name, dtype, False)
    assert precision.MIN_COSINE[name] <= serving.precision_cosine < 1
    for ours, exact in ((encode_images(low, IMAGES), encode_images(encoder, IMAGES)),
                        (encode_texts(low, TEXTS), encode_texts(encoder, TEXTS))):
        assert ours.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
        assert (ours * exact).sum(axis=1).min() > precision.MIN_COSINE[name]


def test_fp32_runs_no_guard(model_dir):
    serving = cpu_encoder(model_dir, precision="fp32").serving
    assert (serving.precision, serving.precision_cosine, serving.precision_fallback) == ("fp32", None, False)


def test_the_guard_can_be_turned_off(model_dir):
    serving = cpu_encoder(model_dir, precision="bf16", precision_min_cosine=0).serving
    assert (serving.precision, serving.precision_cosine) == ("bf16", None)


def test_planted_outliers_leave_fp32_unchanged(model_dir, planted, encoder):
    outliers = cpu_encoder(planted)
    assert (encode_texts(outliers, TEXTS) * encode_texts(encoder, TEXTS)).sum(axis=1).min() > 0.999
    assert (encode_images(outliers, IMAGES) * encode_images(encoder, IMAGES)).sum(axis=1).min() > 0.999


@pytest.mark.parametrize("engine, name, packed", [
    ("torch", "bf16", False), ("torch", "bf16", True), ("torch", "int8", False), ("openvino", "bf16", False),
    ("openvino", "int8", False)])
def test_a_model_too_inaccurate_in_low_precision_falls_back_to_fp32(planted, encoder, caplog, engine, name, packed):
    """Either engine, packed or not (CLIP_CPU_PACKED_WEIGHTS): the guard measures the layers that will serve."""
    caplog.set_level(logging.WARNING, logger="clipsvc.encoder.loading")
    fallen = cpu_encoder(planted, cpu_engine=engine, precision=name, cpu_packed_weights=packed)
    serving = fallen.serving
    assert (serving.engine, serving.precision, serving.dtype, serving.precision_fallback) == (
        engine, "fp32", "float32", True)
    assert serving.packed_weights == packed  # the fp32 model it falls back to is packed as asked
    assert serving.precision_cosine < precision.MIN_COSINE[name]
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "precision_fallback"]
    assert record.precision == name and record.precision_cosine == serving.precision_cosine
    assert (encode_texts(fallen, TEXTS) * encode_texts(encoder, TEXTS)).sum(axis=1).min() > 0.999


def test_a_threshold_of_one_refuses_any_error(model_dir):
    serving = cpu_encoder(model_dir, precision="bf16", precision_min_cosine=1.0).serving
    assert serving.precision == "fp32" and serving.precision_fallback


@pytest.mark.parametrize("name, configured, expected", [
    ("fp32", None, 0.0), ("bf16", None, 0.999), ("int8", None, 0.99), ("fp16", None, 0.999), ("int8", 0.5, 0.5),
    ("bf16", 0.0, 0.0)])
def test_threshold(name, configured, expected):
    assert precision.threshold(name, configured) == expected
