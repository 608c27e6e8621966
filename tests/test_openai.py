"""POST /v1/embeddings and GET /v1/models: OpenAI's shapes, our validators, and the real `openai` SDK."""

from __future__ import annotations

import base64
import json

import numpy as np
import openai
import pytest
from conftest import image_bytes

from testkit.readme import ADDRESS, API, code_blocks, run_bash

MODEL = "clip-tiny"  # the stand-in's directory name: what /meta and /v1/models call the model


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def encode(client, items: list[dict]) -> np.ndarray:
    response = client.post("/encode", json=items)
    assert response.status_code == 200, response.json
    return np.array(response.json, dtype=np.float32)


def embeddings(client, **body) -> dict:
    response = client.post("/v1/embeddings", json={"model": MODEL, **body})
    assert response.status_code == 200, response.json
    return response.json


def test_texts_and_images_in_one_list_come_back_in_order_equal_to_encode(client):
    png = image_bytes("PNG")
    body = embeddings(client, input=["a dog", {"image": data_uri(png)}, {"text": "a cat"},
                                     {"image": base64.b64encode(png).decode()}])
    assert body["object"] == "list" and body["model"] == MODEL
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", i) for i in range(4)]
    expected = encode(client, [{"text": "a dog"}, {"img_blob": base64.b64encode(png).decode()}, {"text": "a cat"},
                               {"img_uri": data_uri(png)}])
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_one_string_is_one_text(client):
    body = embeddings(client, input="a dog")
    np.testing.assert_allclose(body["data"][0]["embedding"], encode(client, [{"text": "a dog"}])[0], atol=1e-6)


def test_base64_is_the_float32_bytes_of_the_same_vectors(client):
    floats = embeddings(client, input=["a dog", "a cat"], encoding_format="float")
    packed = embeddings(client, input=["a dog", "a cat"], encoding_format="base64")
    for plain, b64 in zip(floats["data"], packed["data"], strict=True):
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(b64["embedding"]), dtype="<f4"),
                                      np.array(plain["embedding"], dtype=np.float32))


def test_usage_counts_clip_tokens_and_image_patches(client, encoder):
    texts = ["a dog", "a photo of a cat on a mat"]
    body = embeddings(client, input=[*texts, {"image": data_uri(image_bytes("PNG"))}])
    counts = [len(encoder.tokenizer(text)["input_ids"]) for text in texts]  # start and end tokens included
    expected = sum(counts) + encoder.facts.image_tokens
    assert body["usage"] == {"prompt_tokens": expected, "total_tokens": expected}
    assert encoder.encode([], texts).text_tokens == counts


def test_usage_tokenizes_each_text_once(client, encoder, monkeypatch):
    """The tokens counted for `usage` are those the model read: the tokenizer is not run a second time."""
    calls, tokens = [], encoder._tokens
    monkeypatch.setattr(encoder, "_tokens", lambda texts: calls.append(list(texts)) or tokens(texts))
    body = embeddings(client, input=["a dog on a beach", "a red car"])
    assert body["usage"]["prompt_tokens"] > 0 and calls == [["a dog on a beach", "a red car"]]


def test_model_may_be_left_out_and_dimensions_may_be_the_models_own(client, encoder):
    response = client.post("/v1/embeddings", json={"input": "a dog", "dimensions": encoder.facts.embedding_dim})
    assert response.status_code == 200 and len(response.json["data"][0]["embedding"]) == encoder.facts.embedding_dim


BAD = [
    ({"model": "text-embedding-3-small", "input": "a"}, 404, "model_not_found", "model"),
    ({"model": 3, "input": "a"}, 400, "invalid_input", "model"),
    ({"model": MODEL}, 400, "invalid_input", "input"),
    ({"model": MODEL, "input": []}, 400, "invalid_input", "input"),
    ({"model": MODEL, "input": [1, 2, 3]}, 400, "token_ids_unsupported", "input"),
    ({"model": MODEL, "input": [[1, 2], [3]]}, 400, "token_ids_unsupported", "input"),
    ({"model": MODEL, "input": ["a", 3]}, 400, "invalid_input", "input[1]"),
    ({"model": MODEL, "input": [{"image": 3}]}, 400, "invalid_input", "input[0].image"),
    ({"model": MODEL, "input": [{"audio": "x"}]}, 400, "invalid_input", "input[0]"),
    ({"model": MODEL, "input": [""]}, 400, "empty_text", "input[0]"),
    ({"model": MODEL, "input": [{"image": "not base64!"}]}, 400, "invalid_base64", "input[0].image"),
    ({"model": MODEL, "input": [{"image": "https://example.com/a.png"}]}, 400, "url_fetch_disabled",
     "input[0].image"),
    ({"model": MODEL, "input": "a", "dimensions": 256}, 400, "invalid_dimensions", "dimensions"),
    ({"model": MODEL, "input": "a", "dimensions": True}, 400, "invalid_dimensions", "dimensions"),
    ({"model": MODEL, "input": "a", "encoding_format": "int8"}, 400, "invalid_encoding", "encoding_format"),
    ({"model": MODEL, "input": "a", "user": 7}, 400, "invalid_input", "user"),
    ({"model": MODEL, "input": "a", "temperature": 1}, 400, "unknown_parameter", "temperature"),
    ({"model": MODEL, "input": ["a"] * 65}, 400, "too_many_items", None),
    (["a"], 400, "invalid_input", None),
]


@pytest.mark.parametrize("body, status, code, param", BAD)
def test_bad_requests_get_openais_error_shape_naming_the_parameter(client, body, status, code, param):
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == status
    assert response.json == {"error": {"message": response.json["error"]["message"], "type": "invalid_request_error",
                                       "param": param, "code": code}}
    assert response.json["error"]["message"] and response.headers["request_id"]


def test_a_body_of_json_null_is_valid_json_of_the_wrong_shape_in_openais_error_shape(client):
    response = client.post("/v1/embeddings", data="null", content_type="application/json")
    assert response.status_code == 400
    error = response.json["error"]
    assert (error["code"], error["param"], error["type"]) == ("invalid_input", None, "invalid_request_error")
    assert error["message"] == ('The body is JSON null: valid JSON, but not what this endpoint takes; send an object '
                                '{"model": ..., "input": ...}')


@pytest.mark.parametrize("path, method, status, code", [
    ("/v1/embeddings", "get", 405, "method_not_allowed"),
    ("/v1/nothing", "get", 404, "not_found"),
    ("/v1/models/gpt-4", "get", 404, "model_not_found"),
])
def test_routing_errors_under_v1_are_in_openais_shape_too(client, path, method, status, code):
    response = getattr(client, method)(path)
    assert response.status_code == status and response.json["error"]["code"] == code
    assert set(response.json["error"]) == {"message", "type", "param", "code"}


def test_other_paths_keep_our_error_shape(client):
    assert client.post("/encode", json={}).json["error"]["status"] == 400


def test_not_json_is_refused_as_elsewhere(client):
    assert client.post("/v1/embeddings", data="input=a").json["error"]["code"] == "unsupported_media_type"
    response = client.post("/v1/embeddings", data="{", content_type="application/json")
    assert response.json["error"]["code"] == "invalid_json"


def test_models_lists_the_one_model(client, encoder):
    listed = client.get("/v1/models").json
    card = {"id": MODEL, "object": "model", "created": encoder.facts.model_created, "owned_by": "clipsvc"}
    assert listed == {"object": "list", "data": [card]}
    assert client.get(f"/v1/models/{MODEL}").json == card
    assert client.get("/meta").json["model"] == MODEL


# --- The real SDK against real gunicorn --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.mark.parametrize("encoding_format", [openai.omit, "float", "base64"])
def test_the_openai_sdk_embeds_texts_and_images_as_encode_does(sdk, served, encoding_format):
    """The SDK's default asks for base64 and decodes it itself; "float" asks for numbers."""
    import requests

    png = image_bytes("PNG")
    result = sdk.embeddings.create(model=MODEL, input=["a dog", {"image": data_uri(png)}],
                                   encoding_format=encoding_format)
    assert result.model == MODEL and [d.index for d in result.data] == [0, 1]
    expected = requests.post(f"{served.url}/encode", json=[{"text": "a dog"}, {"img_uri": data_uri(png)}],
                             timeout=60).json()
    if encoding_format == "base64":  # asked for explicitly, the SDK hands the string through
        got = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in result.data]
    else:
        got = [d.embedding for d in result.data]
    np.testing.assert_allclose(np.array(got, dtype=np.float32), np.array(expected, dtype=np.float32), atol=1e-6)
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


def test_the_sdk_lists_the_model_and_raises_its_own_errors(sdk):
    assert [m.id for m in sdk.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.embeddings.create(model="text-embedding-3-small", input="a dog")
    assert caught.value.code == "model_not_found" and "clip-tiny" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model=MODEL, input=[[1, 2, 3]])
    assert caught.value.code == "token_ids_unsupported" and caught.value.param == "input"


# --- docs/api.md's examples, run as written (against the test server's address) ----------------------------

SECTION = "## OpenAI-compatible API"


def test_the_guides_python_example_runs(served):
    (code,) = code_blocks(SECTION, "python", API)
    scope: dict = {}
    exec(code.replace(ADDRESS, served.url), scope)  # our own guide, run as a user would
    assert len(scope["vectors"]) == 2 and scope["model"] == MODEL


def test_the_guides_curl_example_runs(served, tmp_path):
    (code,) = code_blocks(SECTION, "bash", API)
    (tmp_path / "dog.jpg").write_bytes(image_bytes("JPEG"))
    body = json.loads(run_bash(code, served.url, tmp_path).stdout)
    assert [d["index"] for d in body["data"]] == [0, 1] and body["usage"]["prompt_tokens"] > 0
