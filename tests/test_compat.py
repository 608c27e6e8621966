"""Other CLIP servers' APIs on this app: BentoML's image vectorizer and the CLIP Truss, each seed's own request."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from conftest import image_bytes

from testkit.readme import API, code_blocks, run_bash
from testkit.responses import assert_error

JPEG, PNG = image_bytes("JPEG", (96, 64)), image_bytes("PNG", (40, 30), color=(20, 90, 200))


def encoded(client, data: bytes) -> np.ndarray:
    response = client.post("/encode", json=[{"img_blob": base64.b64encode(data).decode()}])
    return np.array(response.json[0], dtype=np.float32)


# --- BentoML's image vectorizer (seed 002) -------------------------------------------------------------------

def test_the_seeds_vectorize_request(client):
    """curl -X POST -H "Content-Type: image/jpeg" --data-binary @image.jpg http://127.0.0.1:3000/vectorize"""
    response = client.post("/vectorize", data=JPEG, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200 and list(response.json) == ["vector"] and response.headers["request_id"]
    vector = np.array(response.json["vector"], dtype=np.float32)
    assert math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-5)  # the unit vector, as everywhere
    np.testing.assert_allclose(vector, encoded(client, JPEG), atol=1e-6)


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", "image/png", None])
def test_the_content_decides_not_the_content_type(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/vectorize", data=PNG, headers=headers)
    np.testing.assert_allclose(response.json["vector"], encoded(client, PNG), atol=1e-6)


@pytest.mark.parametrize("body, status, code", [
    (b"", 400, "empty_file"),
    (b"this is not an image", 400, "unsupported_image"),
    (JPEG[:200], 400, "invalid_image"),
])
def test_a_body_that_is_not_an_image_is_the_usual_json_error(client, body, status, code):
    assert_error(client.post("/vectorize", data=body, headers={"Content-Type": "image/jpeg"}), status, code, "body")


def test_an_image_over_the_limit_is_refused(app, client):
    limit = app.extensions["clipsvc.settings"].max_image_bytes
    response = client.post("/vectorize", data=b"\xff" * (limit + 1), headers={"Content-Type": "image/jpeg"})
    assert_error(response, 413, "image_too_large", "body")


# --- The CLIP Truss (seed 003) -------------------------------------------------------------------------------

LABELS = ["small cat", "not cat", "big cat"]


def data_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def ranked(client, data: bytes, labels: list[str]) -> list[float]:
    body = {"queries": [{"img_blob": base64.b64encode(data).decode()}], "candidates": [{"text": t} for t in labels]}
    return client.post("/rank", json=body).json["probabilities"][0]


@pytest.mark.parametrize("path", ["/v1/models/model:predict", "/predict", "/model_versions/abc123/predict",
                                  "/production/predict"])
def test_the_seeds_predict_request(client, path):
    """curl -X POST .../predict -H 'Authorization: Api-Key ...' -d '{"image_url": ..., "labels": [...]}', the URL
    a data: URI here; `curl -d` sends a form Content-Type, which Truss never looked at, and neither do we."""
    body = json.dumps({"image_url": data_uri(JPEG), "labels": LABELS})
    response = client.post(path, data=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                     "Authorization": "Api-Key unused"})
    assert response.status_code == 200 and list(response.json) == LABELS and response.headers["request_id"]
    assert math.isclose(sum(response.json.values()), 1.0, rel_tol=1e-5)
    np.testing.assert_allclose(list(response.json.values()), ranked(client, JPEG, LABELS), atol=1e-6)


def test_a_nested_list_image_is_the_same_picture(client):
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(PNG)).convert("RGB")).tolist()
    response = client.post("/v1/models/model:predict", json={"image": pixels, "labels": LABELS})
    assert response.status_code == 200, response.json
    np.testing.assert_allclose(list(response.json.values()), ranked(client, PNG, LABELS), atol=1e-5)


ROW = [[255, 0, 0], [0, 255, 0]]


@pytest.mark.parametrize("body, code, field", [
    ({"labels": LABELS}, "invalid_items", None),
    ({"labels": LABELS, "image": [ROW], "image_url": "data:,"}, "invalid_items", None),
    ({"labels": [], "image": [ROW]}, "invalid_items", "labels"),
    ({"labels": ["a", "a"], "image": [ROW]}, "invalid_items", "labels"),
    ({"labels": ["a", 3], "image": [ROW]}, "invalid_items", "labels"),
    ({"labels": ["\u00e9\u00e9"], "image": [ROW]}, "empty_text", "labels[0]"),
    ({"labels": LABELS, "image": [ROW, [[1, 2, 3]]]}, "invalid_pixels", "image"),  # ragged rows
    ({"labels": LABELS, "image": [[[1, 2], [3, 4]]]}, "invalid_pixels", "image"),  # two channels
    ({"labels": LABELS, "image": [[[0, 0, 256], [0, 0, 0]]]}, "invalid_pixels", "image"),
    ({"labels": LABELS, "image": [[[0, 0, -1], [0, 0, 0]]]}, "invalid_pixels", "image"),
    ({"labels": LABELS, "image": [[["a", 0, 0]]]}, "invalid_pixels", "image"),
    ({"labels": LABELS, "image": []}, "invalid_pixels", "image"),
    ({"labels": LABELS, "image": "pixels"}, "invalid_pixels", "image"),
    ({"labels": LABELS, "image_url": "https://source.unsplash.com/gKXKBY-C-Dk/300x300"}, "url_fetch_disabled",
     "image_url"),
    ({"labels": LABELS, "image_url": 3}, "invalid_item", "image_url"),
    ({"labels": LABELS, "image_url": "ftp://example.com/a.jpg"}, "invalid_uri", "image_url"),
])
def test_bad_predict_requests_are_400s_in_our_shape(client, body, code, field):
    assert_error(client.post("/v1/models/model:predict", json=body), 400, code, field)


def test_a_nested_list_over_the_pixel_limit_is_refused_before_it_becomes_an_array(settings, encoder):
    from clipsvc.settings import Settings
    from clipsvc.web.app import create_app

    client = create_app(Settings(**{**vars(settings), "max_image_pixels": 100}), encoder).test_client()
    response = client.post("/predict", json={"labels": ["a"], "image": [[[0, 0, 0]] * 11] * 10})
    assert_error(response, 400, "too_many_pixels", "image")


def test_the_new_routes_are_counted_by_route(client):
    client.post("/vectorize", data=PNG)
    client.post("/model_versions/v1/predict", json={"image_url": data_uri(JPEG), "labels": ["a"]})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="/vectorize"' in text and 'endpoint="/model_versions/<version>/predict"' in text


# --- docs/api.md's examples, run as written against real gunicorn ----------------------------------------------

@pytest.mark.parametrize("heading, keys", [
    ("### BentoML's image vectorizer", ["vector"]),
    ("### The CLIP Truss", LABELS),
])
def test_the_guides_examples_run(served, tmp_path, heading, keys):
    for name in ("image.jpg", "cat.jpg"):
        (tmp_path / name).write_bytes(JPEG)
    (code,) = code_blocks(heading, "bash", API)
    done = run_bash(code, served.url, tmp_path)
    assert list(json.loads(done.stdout)) == keys, done.stdout[:300]


def test_with_keys_on_the_truss_path_under_v1_answers_and_documents_401_in_our_shape(settings, encoder):
    """Only OpenAI's routes under /v1 speak OpenAI's error shape; the runtime and the document agree on that."""
    from clipsvc.settings import Settings
    from clipsvc.web.app import create_app

    client = create_app(Settings(**{**vars(settings), "api_keys": ("k" * 16,)}), encoder).test_client()
    assert_error(client.post("/v1/models/model:predict", json={"labels": ["a"], "image": [ROW]}), 401, "unauthorized")
    assert client.post("/v1/embeddings", json={"input": "a"}).json["error"]["type"] == "invalid_request_error"
    paths = client.get("/openapi.json").json["paths"]
    shape = paths["/v1/models/model:predict"]["post"]["responses"]["401"]["content"]["application/json"]["schema"]
    assert shape["allOf"][0] == {"$ref": "#/components/schemas/Error"}
