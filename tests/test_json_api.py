"""POST /encode and /rank with BentoML's JSON shapes, and ?encoding=base64 on every vector endpoint."""

import base64
import io
from dataclasses import replace

import numpy as np
import pytest
from conftest import image_bytes, post_clip

from clipsvc.errors import ApiError
from clipsvc.parsing.items import ItemRules
from clipsvc.parsing.json_items import parse_items
from clipsvc.settings import Settings
from clipsvc.web.app import create_app

PNG = image_bytes("PNG", (32, 24))
BLOB = base64.b64encode(PNG).decode()


def decode_b64(value: str) -> np.ndarray:
    """What the README tells users to write."""
    return np.frombuffer(base64.b64decode(value), dtype="<f4")


def test_encode_the_seed_example(client, encoder):
    items = [{"text": "picture of a dog"}, {"img_blob": BLOB}, {"img_uri": f"data:image/png;base64,{BLOB}"}]
    response = client.post("/encode", json=items, headers={"request_id": "e1"})
    assert response.status_code == 200 and response.headers["request_id"] == "e1"
    vectors = np.array(response.json)
    assert vectors.shape == (3, encoder.facts.embedding_dim)
    np.testing.assert_allclose(vectors[1], vectors[2], atol=1e-6)  # blob and data URI: the same picture
    np.testing.assert_allclose(vectors[0], encoder.encode([], ["picture of a dog"]).texts[0], atol=1e-5)


def test_rank_the_seed_example(client, encoder):
    candidates = [{"text": f"picture of a {x}"} for x in ("dog", "cat", "bird", "car", "plane", "boat")]
    response = client.post("/rank", json={"queries": [{"img_blob": BLOB}, {"text": "a dog"}],
                                          "candidates": candidates})
    assert response.status_code == 200
    probabilities, cosines = np.array(response.json["probabilities"]), np.array(response.json["cosine_similarities"])
    assert probabilities.shape == cosines.shape == (2, 6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    logits = encoder.facts.logit_scale * cosines
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5)
    vectors = np.array(client.post("/encode", json=[{"text": "a dog"}] + candidates).json)
    np.testing.assert_allclose(cosines[1], vectors[1:] @ vectors[0], atol=1e-5)


@pytest.mark.parametrize("path, body", [
    ("/encode", [{"text": "a"}, {"img_blob": BLOB}]),
    ("/rank", {"queries": [{"text": "a"}], "candidates": [{"text": "b"}, {"img_blob": BLOB}]}),
])
def test_json_endpoints_count_items_in_the_request_log(client, path, body, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="clipsvc.request")
    client.post(path, json=body)
    (record,) = [r for r in caplog.records if r.name == "clipsvc.request"]
    assert (record.images, record.texts) == (1, 1 if path == "/encode" else 2)


def test_base64_encoding_on_every_vector_endpoint(client):
    floats = client.post("/encode", json=[{"text": "a dog"}]).json[0]
    packed = client.post("/encode?encoding=base64", json=[{"text": "a dog"}]).json[0]
    np.testing.assert_allclose(decode_b64(packed), floats, atol=1e-7)
    body = post_clip(client, {"text-1": "a dog"}).json
    packed_body = client.post("/syte_test/clip?encoding=base64", content_type="multipart/form-data",
                              data={"text-1": "a dog"}).json
    np.testing.assert_allclose(decode_b64(packed_body["text_1_vector"]), body["text_1_vector"], atol=1e-7)


@pytest.mark.parametrize("path, kwargs", [
    ("/encode?encoding=hex", dict(json=[{"text": "a"}])),
    ("/syte_test/clip?encoding=float16", dict(content_type="multipart/form-data", data={"text-1": "a"})),
])
def test_unknown_encoding_is_refused(client, path, kwargs):
    response = client.post(path, **kwargs)
    assert response.status_code == 400 and response.json["error"]["field"] == "encoding"


@pytest.mark.parametrize("body, status, code, field", [
    ([], 400, "invalid_items", None),
    ({"text": "a"}, 400, "invalid_items", None),
    ([{"text": "a", "img_blob": BLOB}], 400, "invalid_item", "[0]"),
    ([{"image": BLOB}], 400, "invalid_item", "[0]"),
    (["a dog"], 400, "invalid_item", "[0]"),
    ([{"text": 5}], 400, "invalid_item", "[0].text"),
    ([{"text": "ok"}, {"text": "日本"}], 400, "empty_text", "[1].text"),
    ([{"text": " ".join(["w"] * 51)}], 400, "text_too_long", "[0].text"),
    ([{"img_blob": "not base64!!"}], 400, "invalid_base64", "[0].img_blob"),
    ([{"img_blob": base64.b64encode(b"hello").decode()}], 400, "unsupported_image", "[0].img_blob"),
    ([{"img_uri": "https://example.com/dog.jpg"}], 400, "url_fetch_disabled", "[0].img_uri"),
    ([{"img_uri": "http://169.254.169.254/latest/meta-data"}], 400, "url_fetch_disabled", "[0].img_uri"),
    ([{"img_uri": "file:///etc/passwd"}], 400, "invalid_uri", "[0].img_uri"),
    ([{"img_uri": "data:image/png,rawbytes"}], 400, "invalid_uri", "[0].img_uri"),
    ([{"text": "a"}] * 65, 400, "too_many_items", None),
])
def test_encode_rejections(client, body, status, code, field):
    response = client.post("/encode", json=body)
    assert response.status_code == status
    assert response.json["error"]["code"] == code and response.json["error"]["field"] == field


@pytest.mark.parametrize("body, code, field", [
    ({"queries": [{"text": "a"}]}, "invalid_items", "candidates"),
    ({"candidates": [{"text": "a"}]}, "invalid_items", "queries"),
    ([{"text": "a"}], "invalid_items", None),
    ({"queries": [{"text": "a"}], "candidates": [{"img_blob": "%%%"}]}, "invalid_base64", "candidates[0].img_blob"),
    ({"queries": [{"text": "a"}] * 40, "candidates": [{"text": "b"}] * 40}, "too_many_items", None),
])
def test_rank_rejections(client, body, code, field):
    response = client.post("/rank", json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == code and response.json["error"]["field"] == field


@pytest.mark.parametrize("path", ["/encode", "/rank"])
def test_json_endpoints_want_json(client, path):
    assert client.post(path, data="text=a").status_code == 415
    bad = client.post(path, data="{not json", content_type="application/json")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_json"


def test_oversized_blob_is_refused_before_decoding():
    rules = ItemRules(Settings(max_image_mb=0.001, max_request_mb=1))
    with pytest.raises(ApiError) as caught:
        parse_items([{"img_blob": "A" * 4000}], "", rules)
    assert (caught.value.code, caught.value.error.id) == (413, "image_too_large")


def test_urlsafe_and_unpadded_base64_are_accepted():
    urlsafe = base64.urlsafe_b64encode(PNG).decode().rstrip("=")
    (item,) = parse_items([{"img_blob": urlsafe}], "", ItemRules(Settings()))
    assert item.image.size == (32, 24)


@pytest.mark.parametrize("body", ["[" * 100_000, "[" * 5_000 + "]" * 5_000], ids=["unclosed", "valid-but-deep"])
def test_deeply_nested_json_is_a_400_not_a_500(client, body):
    response = client.post("/encode", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_json"


def test_oversized_json_body_uses_the_same_code_as_multipart(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = client.post("/encode", data=b"[" + b" " * limit + b"]", content_type="application/json")
    assert response.status_code == 413 and response.json["error"]["code"] == "request_too_large"


def post_chunked(client, path: str, body: bytes, content_type: str = "application/json"):
    """A chunked body, as gunicorn hands it to the app: no Content-Length, the stream ended by the server."""
    return client.post(path, input_stream=io.BytesIO(body), content_type=content_type,
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


@pytest.fixture
def small_limit(settings, encoder):
    """CLIP_MAX_REQUEST_MB (and CLIP_MAX_IMAGE_MB) of 0.01: 10485 bytes."""
    return create_app(replace(settings, max_request_mb=0.01, max_image_mb=0.01), encoder)


@pytest.mark.parametrize("path, body", [
    ("/encode", b'[{"text": "a dog"}]'),
    ("/v1/embeddings", b'{"input": "a dog"}'),
    ("/post", b'{"data": [{"text": "a dog"}]}'),
])
def test_a_chunked_json_body_of_exactly_the_limit_is_read_whole_and_one_byte_more_is_a_413(small_limit, path, body):
    """The JSON is valid either way: one byte of padding past the limit makes the 413, not invalid_json."""
    limit, client = small_limit.config["MAX_CONTENT_LENGTH"], small_limit.test_client()
    assert post_chunked(client, path, b" " * (limit - len(body)) + body).status_code == 200
    response = post_chunked(client, path, b" " * (limit - len(body) + 1) + body)
    assert response.status_code == 413 and response.json["error"]["code"] == "request_too_large"
    assert response.json["error"]["message"] == ("The request body (chunked) passed the limit of 0.01 MB (CLIP_MAX_"
                                                 "REQUEST_MB) while it was read. Send fewer or smaller files.")


def test_a_chunked_raw_image_over_the_limit_is_a_413_not_a_truncated_image(small_limit):
    png = image_bytes("PNG", (8, 8))
    response = post_chunked(small_limit.test_client(), "/vectorize", png + b"\0" * small_limit.config[
        "MAX_CONTENT_LENGTH"], "image/png")
    assert response.status_code == 413 and response.json["error"]["code"] == "request_too_large"


# Valid JSON of another type than the endpoint takes: each endpoint's own shape code, and a message that says so.
WRONG_TYPES = [(b"null", "JSON null"), (b"5", "a JSON number"), (b'"a dog"', "a JSON string"), (b"true", "JSON true"),
               (b"[]", "an empty JSON list")]


@pytest.mark.parametrize("path, code, expected", [
    ("/encode", "invalid_items", "a non-empty JSON list of items"),
    ("/rank", "invalid_items", '{"queries": [items], "candidates": [items]}'),
    ("/v1/embeddings", "invalid_input", '{"model": ..., "input": ...}'),
    ("/post", "invalid_documents", '{"data": [documents]'),
    ("/v1/models/model:predict", "invalid_items", '{"labels": [...]}'),
])
@pytest.mark.parametrize("body, kind", WRONG_TYPES, ids=[kind for _, kind in WRONG_TYPES])
def test_valid_json_of_the_wrong_type_is_not_called_invalid_json(client, path, code, expected, body, kind):
    response = client.post(path, data=body, content_type="application/json")
    error = response.json["error"]
    assert response.status_code == 400 and error["code"] == code
    assert error["message"].startswith(f"The body is {kind}: valid JSON") and expected in error["message"]
    assert "not valid JSON" not in error["message"]


def test_rank_counts_both_lists_before_decoding_anything(client):
    body = {"queries": [{"text": "a"}] * 40, "candidates": [{"img_blob": "%%%"}] * 40}
    assert client.post("/rank", json=body).json["error"]["code"] == "too_many_items"


def test_a_bad_encoding_is_refused_before_the_model_runs(client, encoder, monkeypatch):
    calls = []
    monkeypatch.setattr(encoder, "encode", lambda images, texts: calls.append(texts))
    response = client.post("/syte_test/clip?encoding=bogus", content_type="multipart/form-data", data={"text-1": "a"})
    assert response.status_code == 400 and calls == []


@pytest.mark.parametrize("path, body, field, index", [
    ("/encode", [{"text": "a"}, {"text": "b"}, {"text": "c"}, {"img_blob": "%%%"}], "[3].img_blob", 3),
    ("/encode", [{"text": "a"}, "a dog"], "[1]", 1),
    ("/rank", {"queries": [{"text": "a"}], "candidates": [{"text": "b"}, {"text": "c"}, {"img_blob": "%%%"}]},
     "candidates[2].img_blob", 2),
    ("/rank", {"queries": [{"text": "a"}, {"text": 5}], "candidates": [{"text": "b"}]}, "queries[1].text", 1),
    ("/post", {"data": [{"text": "a"}, {"blob": "%%%"}]}, "data[1].blob", 1),
    ("/post", {"data": [{"text": "a", "matches": [{"text": "b"}]}, {"text": "c", "matches": [{"text": "d"}, {}]}],
               "execEndpoint": "/rank"},
     "data[1].matches[1]", 1),
    ("/v1/models/model:predict", {"labels": ["a", ""], "image_url": f"data:image/png;base64,{BLOB}"}, "labels[1]", 1),
])
def test_an_items_error_carries_its_index_as_a_number(client, path, body, field, index):
    """Clients drop the item by `index` (the position in the list `field` names), not by reading `field`."""
    error = client.post(path, json=body).json["error"]
    assert (error["field"], error["index"]) == (field, index)


@pytest.mark.parametrize("path, body", [
    ("/encode", []), ("/encode", [{"text": "a"}] * 65), ("/rank", {"queries": [{"text": "a"}]}),
    ("/post", {"data": [{"text": "a"}], "parameters": 5}),
])
def test_an_error_of_no_one_item_has_no_index(client, path, body):
    assert "index" not in client.post(path, json=body).json["error"]


def test_openais_error_shape_has_no_index(client):
    error = client.post("/v1/embeddings", json={"input": ["a", 3]}).json["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == "input[1]"
