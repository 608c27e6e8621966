"""Weaviate's multi2vec-clip module on this service, sent as the module sends it: its Go client's exact bodies (today's
with Content-Type and `omitempty`, 2023's with neither and `null` lists) against real gunicorn, the reference
container's smoke tests as the minimum, and each answer read as the Go client reads it."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests
from conftest import image_bytes

from clipsvc.parsing.items import ItemRules
from clipsvc.parsing.weaviate import WeaviateVectorizeRequest, parse_vectorize
from clipsvc.settings import MAX_TEXT_CHARS, Settings
from clipsvc.web.app import create_app
from testkit.faults import wait_for
from testkit.jsonlog import request_lines
from testkit.metrics import scrape_until, value

JPEG = image_bytes("JPEG", (96, 64), color=(200, 40, 30))
PNG = image_bytes("PNG", (40, 30), color=(20, 90, 200))
B64_JPEG, B64_PNG = base64.b64encode(JPEG).decode(), base64.b64encode(PNG).decode()
TEXTS = ["This is plane", "a photo of a cat", "red square"]
NEW, OLD = {"Content-Type": "application/json"}, {}  # the module since 2024; the 2023 module (no Content-Type)


def go_json(value: object) -> bytes:
    """As Go's json.Marshal writes a struct: no spaces, keys in field order."""
    return json.dumps(value, separators=(",", ":")).encode()


def go_decode(response: requests.Response) -> dict:
    """What the module's client does with an answer: json.Unmarshal first (a body that is not JSON fails the
    vectorisation as "failed to parse"), then for a status > 399 it reports the string `error`."""
    body = json.loads(response.content)
    assert isinstance(body, dict)
    if response.status_code > 399:
        assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body
    return body


def post(served, body: bytes, headers: dict, **extra) -> requests.Response:
    response = requests.post(served.url + "/vectorize", data=body, headers=headers | extra, timeout=30)
    if not headers:
        assert "Content-Type" not in response.request.headers  # really the 2023 client's request
    return response


def encoded(served, items: list[dict]) -> np.ndarray:
    """The same items' vectors through /encode (BentoML's JSON API)."""
    response = requests.post(served.url + "/encode", json=items, timeout=30)
    assert response.status_code == 200
    return np.array(response.json(), dtype=np.float32).reshape(len(items), -1)


# --- the reference container's smoke tests, and the Go client's exact bodies -----------------------------------

@pytest.mark.parametrize("path", ["/.well-known/live", "/.well-known/ready"])
def test_the_probes_answer_204(served, path):
    response = requests.get(served.url + path, timeout=5)
    assert (response.status_code, response.content) == (204, b"")
    assert response.headers["request_id"] and response.headers["X-Request-ID"]


def test_meta_is_a_json_object(served):
    response = requests.get(served.url + "/meta", timeout=5)
    assert response.status_code == 200 and isinstance(response.json(), dict)


# (name, the body as the module writes it, headers, texts sent, images sent (bytes))
CONFORMANCE = [
    ("1 text, 1 image", {"texts": TEXTS[:1], "images": [B64_JPEG]}, NEW, TEXTS[:1], [JPEG]),
    ("3 texts, 2 images", {"texts": TEXTS, "images": [B64_JPEG, B64_PNG]}, NEW, TEXTS, [JPEG, PNG]),
    ("texts only (images left out)", {"texts": TEXTS}, NEW, TEXTS, []),
    ("images only (texts left out)", {"images": [B64_PNG, B64_JPEG]}, NEW, [], [PNG, JPEG]),
    ("PNG", {"images": [B64_PNG]}, NEW, [], [PNG]),
    ("empty lists", {"texts": [], "images": [B64_PNG]}, NEW, [], [PNG]),
    ("2023: no Content-Type, 1 text, 1 image", {"texts": TEXTS[:1], "images": [B64_JPEG]}, OLD, TEXTS[:1], [JPEG]),
    ("2023: null texts", {"texts": None, "images": [B64_PNG]}, OLD, [], [PNG]),
    ("2023: null images", {"texts": TEXTS, "images": None}, OLD, TEXTS, []),
    ("nothing asked", {}, NEW, [], []),
    ("2023: nothing asked", {"texts": None, "images": None}, OLD, [], []),
]


@pytest.mark.parametrize("body, headers, texts, images", [case[1:] for case in CONFORMANCE],
                         ids=[case[0] for case in CONFORMANCE])
def test_the_modules_requests_get_unit_vectors_in_order_equal_to_encodes(served, body, headers, texts, images):
    response = post(served, go_json(body), headers)
    assert response.status_code == 200, response.text
    answer = go_decode(response)
    assert set(answer) == {"textVectors", "imageVectors"}
    assert (len(answer["textVectors"]), len(answer["imageVectors"])) == (len(texts), len(images))
    items = [{"text": text} for text in texts] + [{"img_blob": base64.b64encode(data).decode()} for data in images]
    if not items:
        return  # two empty lists, as the reference container answers
    got = np.array(answer["textVectors"] + answer["imageVectors"], dtype=np.float32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, encoded(served, items), atol=1e-5)  # the same vectors, in the order sent


def test_the_request_id_is_echoed_and_the_line_logged_with_its_counts(served):
    body = go_json({"texts": TEXTS[:2], "images": [B64_PNG]})
    response = post(served, body, NEW, request_id="weaviate-1")
    assert response.status_code == 200
    assert response.headers["request_id"] == response.headers["X-Request-ID"] == "weaviate-1"
    (line,) = wait_for(lambda: [r for r in request_lines(served.log_records(), "/vectorize")
                                if r.get("request_id") == "weaviate-1"], 10, "its line")
    assert (line["status"], line["images"], line["texts"]) == (200, 1, 2)


# --- errors, as the Go client reads them -----------------------------------------------------------------------

TOO_MANY = Settings().max_items + 1
# (name, body, headers, status, what the message names)
ERRORS = [
    ("bad base64", go_json({"images": [B64_PNG, "not base64!"]}), NEW, 400, "images[1]"),
    ("not an image", go_json({"images": [base64.b64encode(b"plain text").decode()]}), NEW, 400, "images[0]"),
    ("text over the limit", go_json({"texts": ["a" * (MAX_TEXT_CHARS + 1)]}), NEW, 400, "texts[0]"),
    ("empty text", go_json({"texts": ["\u2603"]}), NEW, 400, "texts[0]"),
    ("too many items", go_json({"texts": ["a"] * (TOO_MANY - 1), "images": [B64_PNG]}), NEW, 400, str(TOO_MANY)),
    ("invalid JSON", b'{"texts":["a"', NEW, 400, "not valid JSON"),
    ("2023: invalid JSON", b'{"texts":["a"', OLD, 400, "not valid JSON"),
    ("a list of numbers", b"[1,2,3]", NEW, 400, "JSON list"),
    ("texts not a list", go_json({"texts": "a dog"}), NEW, 400, "texts"),
    ("a number among the texts", go_json({"texts": ["a", 7]}), NEW, 400, "texts[1]"),
    ("null among the images", go_json({"images": [None]}), OLD, 400, "images[0]"),
]


@pytest.mark.parametrize("body, headers, status, names", [case[1:] for case in ERRORS],
                         ids=[case[0] for case in ERRORS])
def test_errors_are_a_string_error_the_go_client_reports(served, body, headers, status, names):
    response = post(served, body, headers, request_id="weaviate-error")
    assert response.status_code == status and response.headers["X-Request-ID"] == "weaviate-error"
    assert names in go_decode(response)["error"]


@pytest.fixture
def small(settings, encoder):
    """An app that takes bodies of at most 1 MB and needs a key."""
    keyed = Settings(**{**vars(settings), "max_request_mb": 1, "max_image_mb": 1, "api_keys": ("k" * 16,)})
    return create_app(keyed, encoder).test_client()


KEY = {"Authorization": "Bearer " + "k" * 16}


@pytest.mark.parametrize("headers, body, status", [
    (NEW | KEY, b'{"images":["' + b"A" * 2 * 1024 * 1024 + b'"]}', 413),  # refused from Content-Length, unread
    (NEW, go_json({"texts": ["a"]}), 401),  # the module sends no key (docs/api.md)
    (OLD, go_json({"texts": ["a"]}), 401),
])
def test_errors_before_the_view_take_weaviates_shape_too(small, headers, body, status):
    response = small.post("/vectorize", data=body, headers=headers)
    assert response.status_code == status and response.json == {"error": response.json["error"]}
    assert isinstance(response.json["error"], str) and response.headers["request_id"]


def test_an_untyped_body_over_the_limit_cannot_be_peeked_at_and_gets_our_shape(small):
    """The 2023 module's body is told by its first byte, which a body refused from its Content-Length never shows."""
    response = small.post("/vectorize", data=b'{"images":["' + b"A" * 2 * 1024 * 1024 + b'"]}', headers=KEY)
    assert response.status_code == 413 and response.json["error"]["code"] == "request_too_large"


def test_the_probes_need_no_key_and_ready_waits_for_the_model(small, settings):
    assert [small.get(path).status_code for path in ("/.well-known/live", "/.well-known/ready")] == [204, 204]
    unloaded = create_app(Settings(**{**vars(settings), "api_keys": ("k" * 16,)})).test_client()  # still loading
    assert unloaded.get("/.well-known/live").status_code == 204
    response = unloaded.get("/.well-known/ready")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json["error"]["code"] == "model_not_ready"


# --- BentoML's raw image keeps the route: the type tells the two apart ------------------------------------------

@pytest.mark.parametrize("headers, data, answer", [
    ({"Content-Type": "image/png"}, PNG, ["vector"]),
    ({}, PNG, ["vector"]),  # no type, not `{`: BentoML's image, as before
    ({"Content-Type": "application/octet-stream"}, go_json({"texts": ["a"]}), None),  # typed as bytes: an image
    (NEW, go_json({"texts": ["a"]}), ["textVectors", "imageVectors"]),
    ({"Content-Type": "application/json; charset=utf-8"}, go_json({"texts": ["a"]}), ["textVectors", "imageVectors"]),
    ({}, b" \n" + go_json({"texts": ["a"]}), ["textVectors", "imageVectors"]),
])
def test_one_route_two_apis(client, headers, data, answer):
    response = client.post("/vectorize", data=data, headers=headers)
    if answer is None:  # BentoML's error, in our shape
        assert response.status_code == 400 and response.json["error"]["code"] == "unsupported_image"
    else:
        assert response.status_code == 200 and list(response.json) == answer


def test_the_probes_and_the_route_are_counted_by_route(served):
    """Through gunicorn (the metrics of every worker, summed), as every route is."""
    requests.get(served.url + "/.well-known/ready", timeout=5)
    requests.post(served.url + "/vectorize", json={"texts": ["a"]}, timeout=30)
    wanted = [{"endpoint": "/.well-known/ready", "method": "GET", "status": "204"},
              {"endpoint": "/vectorize", "method": "POST", "status": "200"}]
    scraped = scrape_until(served, lambda got: all(value(got, "clipsvc_requests_total", **labels) for labels in wanted))
    assert all(value(scraped, "clipsvc_requests_total", **labels) >= 1 for labels in wanted)


# --- the body, declared once -------------------------------------------------------------------------------------

@pytest.fixture
def rules(settings) -> ItemRules:
    return ItemRules(settings)


@pytest.mark.parametrize("body", [{}, {"texts": None}, {"texts": []}, {"texts": None, "images": []},
                                  {"texts": [], "images": None, "other": 1}])
def test_missing_null_and_empty_are_the_same(rules, body):
    asked = parse_vectorize(body, rules)
    assert (asked.texts, asked.images) == ([], [])


def test_items_keep_their_lists_and_order(rules):
    asked = parse_vectorize({"images": [B64_PNG, B64_JPEG], "texts": [" a  dog ", "b"]}, rules)
    assert [item.text for item in asked.texts] == ["a dog", "b"]  # the one text rule cleaned them
    assert [item.id for item in asked.images] == ["images[0]", "images[1]"]
    assert [item.image.size for item in asked.images] == [(40, 30), (96, 64)]


@pytest.mark.parametrize("body, code, field", [
    (None, "invalid_items", None),
    ({"images": {}}, "invalid_items", "images"),
    ({"texts": ["x", 1.5]}, "invalid_item", "texts[1]"),
    ({"images": ["data:image/png;base64,%%%"]}, "invalid_base64", "images[0]"),
    ({"images": ["https://example.com/a.png"]}, "url_fetch_disabled", "images[0]"),
    ({"texts": ["a"] * (TOO_MANY - 1), "images": ["?"]}, "too_many_items", None),  # counted before anything is decoded
])
def test_refusals_name_the_field(rules, body, code, field):
    from clipsvc.errors import ApiError

    with pytest.raises(ApiError) as refused:
        parse_vectorize(body, rules)
    assert (refused.value.error.id, refused.value.field) == (code, field)


def test_the_document_shows_the_model_and_its_example_is_served(client):
    spec = client.get("/openapi.json").json
    schema = spec["components"]["schemas"]["WeaviateVectorizeRequest"]
    assert schema["properties"].keys() == WeaviateVectorizeRequest.model_json_schema()["properties"].keys()
    assert "{max" not in str(schema)  # the server's limits filled in
    media = spec["paths"]["/vectorize"]["post"]["requestBody"]["content"]["application/json"]
    assert media["schema"] == {"$ref": "#/components/schemas/WeaviateVectorizeRequest"}
    response = client.post("/vectorize", json=media["example"])
    assert response.status_code == 200 and len(response.json["imageVectors"]) == 1
    for path in ("/.well-known/live", "/.well-known/ready"):
        assert "204" in spec["paths"][path]["get"]["responses"]


def test_with_keys_the_document_gives_vectorize_both_shapes_and_leaves_the_probes_open(small):
    paths = small.get("/openapi.json").json["paths"]
    unauthorized = paths["/vectorize"]["post"]["responses"]["401"]["content"]["application/json"]["schema"]
    assert unauthorized["allOf"][0] == {"anyOf": [{"$ref": "#/components/schemas/Error"},
                                                  {"$ref": "#/components/schemas/WeaviateError"}]}
    for path in ("/.well-known/live", "/.well-known/ready"):
        assert "401" not in paths[path]["get"]["responses"] and "security" not in paths[path]["get"]
