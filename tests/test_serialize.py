"""Vectors to JSON (clipsvc.web.serialize): orjson writes the float32 arrays, and they parse back exactly."""

import json

import numpy as np
import pytest
from conftest import post_clip

from clipsvc.web.serialize import VectorJSON


def test_float32_vectors_parse_back_to_the_same_float32(app):
    rows = np.random.default_rng(1).standard_normal((64, 768)).astype(np.float32)
    text = VectorJSON(app).dumps({"v": rows, "scalar": np.float32(0.1), "key order": 1})
    parsed = json.loads(text)  # any client's JSON parser, into float64
    assert np.array_equal(np.asarray(parsed["v"], dtype=np.float32), rows)
    assert parsed["scalar"] == pytest.approx(0.1, rel=1e-7)


def test_keys_keep_their_order_unless_sorting_is_asked_for(app):
    body = {"b": 1, "a": np.arange(2, dtype=np.float32)}
    assert VectorJSON(app).dumps(body, sort_keys=False) == '{"b":1,"a":[0.0,1.0]}'
    assert VectorJSON(app).dumps(body, sort_keys=True).startswith('{"a"')


def test_served_vectors_are_the_encoders_float32(client, encoder):
    body = post_clip(client, {"text-1": "a red car", "text-2": "a dog"}).json
    expected = encoder.encode([], ["a red car", "a dog"]).texts
    assert list(body) == ["text_1_vector", "text_2_vector"]
    for i in (1, 2):
        assert np.array_equal(np.asarray(body[f"text_{i}_vector"], dtype=np.float32), expected[i - 1])
