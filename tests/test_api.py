"""POST /syte_test/clip through the Flask test client, with the tiny stand-in model."""

import io
import logging
import re
import time
import uuid

import numpy as np
import pytest
from conftest import image_bytes, post_clip

from clipsvc.server.request_id import REPLACED_HEADER
from testkit.responses import assert_error

SEED_TEXT = "Man staring at the moon, moon is made of mechanical parts"


def test_seed_request(client, encoder):
    response = post_clip(client, {"image-1": image_bytes(), "text-1": SEED_TEXT}, {"request_id": "1"})
    assert response.status_code == 200
    assert response.headers["request_id"] == "1"
    body = response.json
    assert list(body) == ["image_1_vector", "text_1_vector", "image_vector_1_similarity_score",
                          "image_vector_1_cosine_similarity"]
    image, text = np.array(body["image_1_vector"]), np.array(body["text_1_vector"])
    assert image.shape == text.shape == (encoder.facts.embedding_dim,)
    assert np.linalg.norm(image) == pytest.approx(1, abs=1e-5) and np.linalg.norm(text) == pytest.approx(1, abs=1e-5)
    cosine = body["image_vector_1_cosine_similarity"]
    assert cosine == pytest.approx(float(image @ text), abs=1e-5)
    assert body["image_vector_1_similarity_score"] == round(100 * min(max(2.5 * cosine, 0), 1))
    assert isinstance(body["image_vector_1_similarity_score"], int)


@pytest.mark.parametrize("fields, keys", [
    ({"image-1": image_bytes()}, ["image_1_vector"]),
    ({"text-1": "a dog"}, ["text_1_vector"]),
    ({"image-a": image_bytes(), "text-b": "a dog"}, ["image_a_vector", "text_b_vector"]),
    ({"image-1": image_bytes(), "text-1": "x", "image-2": image_bytes("PNG"), "text-2": "y"},
     ["image_1_vector", "text_1_vector", "image_vector_1_similarity_score", "image_vector_1_cosine_similarity",
      "image_2_vector", "text_2_vector", "image_vector_2_similarity_score", "image_vector_2_cosine_similarity"]),
])
def test_any_mix_of_items(client, fields, keys):
    response = post_clip(client, fields)
    assert response.status_code == 200
    assert sorted(response.json) == sorted(keys)


def test_uuid_when_no_request_id(client):
    import uuid

    response = post_clip(client, {"text-1": "a dog"})
    assert uuid.UUID(response.headers["request_id"]).version == 4


def test_x_request_id_is_accepted(client):
    assert post_clip(client, {"text-1": "a"}, {"X-Request-ID": "abc-123"}).headers["request_id"] == "abc-123"


def test_file_name_and_content_type_do_not_matter(client):
    png = image_bytes("PNG")
    import io

    response = client.post("/syte_test/clip", content_type="multipart/form-data",
                           data={"image-1": (io.BytesIO(png), "photo.jpg", "application/pdf")})
    assert response.status_code == 200


@pytest.mark.parametrize("fields, status, code, field", [
    ({"caption": "x"}, 400, "unknown_key", "caption"),
    ({"image-1": b""}, 400, "empty_file", "image-1"),
    ({"image-1": b"just some text"}, 400, "unsupported_image", "image-1"),
    ({"image-1": image_bytes()[:300]}, 400, "invalid_image", "image-1"),
    ({"image-1": "a text, not a file"}, 400, "image_not_a_file", "image-1"),
    ({"text-1": "ü" * 5}, 400, "empty_text", "text-1"),
    ({"text-1": "word " * 51}, 400, "text_too_long", "text-1"),
    ({"text-1": "ok", "image-1": b"broken"}, 400, "unsupported_image", "image-1"),
])
def test_bad_input(client, fields, status, code, field):
    assert_error(post_clip(client, fields), status, code, field)


def test_empty_request(client):
    assert_error(client.post("/syte_test/clip", data={}, content_type="multipart/form-data"), 400, "empty_request")


def test_duplicate_key(client):
    response = client.post("/syte_test/clip", content_type="multipart/form-data",
                           data={"text-1": ["a", "b"]})
    assert_error(response, 400, "duplicate_key", "text-1")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-url-encoded"])
def test_wrong_content_type(client, content_type):
    response = client.post("/syte_test/clip", data='{"text-1": "a"}', content_type=content_type)
    assert_error(response, 415, "unsupported_media_type", "Content-Type")
    assert "multipart/form-data" in response.json["error"]["message"]
    assert "application/x-www-form-urlencoded" in response.json["error"]["message"]


def post_urlencoded(client, fields: dict | str, headers: dict | None = None):
    """POST text fields as application/x-www-form-urlencoded (curl -d, requests' data=dict, HTML forms)."""
    return client.post("/syte_test/clip", data=fields, headers=headers or {},
                       content_type="application/x-www-form-urlencoded")


SEVERAL_TEXTS = {"text-a": "a dog", "text-b": "a cat", "text-c": "a moon"}


@pytest.mark.parametrize("urlencoded, multipart", [
    ({"text-1": "a dog"}, {"text-1": "a dog"}),
    (SEVERAL_TEXTS, SEVERAL_TEXTS),
    ({"text-1": "  A\tdög  on the 🚀\n"}, {"text-1": "A dg on the"}),  # the text rules: ASCII only, one space
    ("text-1=a+dog&text-2=caf%C3%A9+au+lait", {"text-1": "a dog", "text-2": "caf au lait"}),  # as browsers encode
])
def test_urlencoded_texts_answer_as_multipart_does(client, urlencoded, multipart):
    response = post_urlencoded(client, urlencoded, {"request_id": "form-1"})
    assert response.status_code == 200 and response.headers["request_id"] == "form-1"
    expected = post_clip(client, multipart).json
    assert response.json == expected and list(response.json) == list(expected)  # same keys, same order, same vectors


@pytest.mark.parametrize("fields, status, code, field", [
    ({"image-1": "aGVsbG8="}, 400, "image_not_a_file", "image-1"),
    ({"text-1": "a dog", "image-1": "photo.jpg"}, 400, "image_not_a_file", "image-1"),
    ("text-1=a&text-1=b", 400, "duplicate_key", "text-1"),
    ({"caption": "a dog"}, 400, "unknown_key", "caption"),
    ({"text-1": "🚀"}, 400, "empty_text", "text-1"),
    ({"text-1": "word " * 51}, 400, "text_too_long", "text-1"),
    ("", 400, "empty_request", None),
    ({f"text-{i}": "a" for i in range(65)}, 400, "too_many_items", None),
    ({f"text-{i}": "a" for i in range(200)}, 400, "too_many_items", None),  # more fields than the parser reads
    ({"text-1": "a" * 600_000}, 413, "form_too_large", None),  # over MAX_FORM_MEMORY_SIZE, under CLIP_MAX_REQUEST_MB
])
def test_urlencoded_bad_input(client, fields, status, code, field):
    response = post_urlencoded(client, fields)
    assert_error(response, status, code, field)
    if code == "image_not_a_file":
        assert "multipart/form-data" in response.json["error"]["message"]
        assert "curl -F image-1=@photo.jpg" in response.json["error"]["message"]
    if code == "form_too_large":
        assert "application/x-www-form-urlencoded" in response.json["error"]["message"]


def test_request_larger_than_limit_is_413(app, client):
    limit = app.extensions["clipsvc.settings"].max_request_bytes
    response = post_clip(client, {"image-1": b"\0" * (limit + 1)})
    assert_error(response, 413, "request_too_large")


def test_image_larger_than_its_limit_is_413(client, app):
    limit = app.extensions["clipsvc.settings"].max_image_bytes
    assert_error(post_clip(client, {"image-1": b"\0" * (limit + 1)}), 413, "image_too_large", "image-1")


def test_too_many_items(client):
    fields = {f"text-{i}": "a" for i in range(65)}
    assert_error(post_clip(client, fields), 400, "too_many_items")


ITEM_LIMIT = re.compile(r"the limit is 64 (items )?\(CLIP_MAX_ITEMS\)")


@pytest.mark.parametrize("pairs", [33, 40, 72, 73, 100, 1000])
def test_too_many_pairs_get_one_answer_naming_the_item_limit(client, pairs):
    """Counted by the view (up to 2 x 64 + 16 parts) or refused by the parser (beyond): the same answer."""
    png = image_bytes("PNG", (4, 4))
    fields = {key: value for i in range(pairs) for key, value in ((f"image-{i}", png), (f"text-{i}", "a dog"))}
    response = post_clip(client, fields)
    assert_error(response, 400, "too_many_items")
    assert ITEM_LIMIT.search(response.json["error"]["message"]), response.json["error"]["message"]


def test_thousands_of_fields_are_refused_cheaply(client):
    fields = {f"f{i}": "a" for i in range(10_000)}
    assert_error(post_clip(client, fields), 400, "too_many_items")


def test_a_hundred_thousand_empty_parts_are_refused_after_the_first_read(client):
    """The parser stops where the parts run past the bound: the rest of the body is never read, nothing is stored."""
    body = io.BytesIO(b'--b\r\nContent-Disposition: form-data; name=""\r\n\r\n\r\n' * 100_000 + b"--b--\r\n")
    started = time.perf_counter()
    response = client.post("/syte_test/clip", input_stream=body, content_length=len(body.getvalue()),
                           content_type="multipart/form-data; boundary=b")
    seconds = time.perf_counter() - started
    assert_error(response, 400, "too_many_items")
    assert body.tell() <= 2 * 65536 and seconds < 1, (body.tell(), len(body.getvalue()), seconds)


# (the client's request_id, what the log keeps of it as original_request_id: escaped, and cut at 64 characters)
REPLACED_IDS = [
    ("a" * 10_000, "a" * 64 + "... (10000 characters)"),
    ("bad value", "bad value"),
    ("<script>", "<script>"),
    ("1;DROP", "1;DROP"),
    ("x\ty", "x\\ty"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("caf\u00e9", "caf\\xe9"),
    ("back\\slash", "back\\\\slash"),
    ("", ""),
]


@pytest.mark.parametrize("value, logged", REPLACED_IDS)
def test_unusable_request_ids_are_replaced_served_and_logged_escaped(client, caplog, value, logged):
    caplog.set_level(logging.INFO, logger="clipsvc.request")
    response = post_clip(client, {"text-1": "a"}, {"request_id": value})
    assert response.status_code == 200 and "text_1_vector" in response.json
    new_id = response.headers["request_id"]
    assert new_id != value and response.headers["X-Request-ID"] == new_id
    assert response.headers[REPLACED_HEADER] == "true"
    (line,) = [record for record in caplog.records if record.name == "clipsvc.request"]
    assert (line.request_id, line.original_request_id) == (new_id, logged)


@pytest.mark.parametrize("headers, echoed", [
    ({"request_id": "order-42"}, "order-42"),
    ({"X-Request-ID": "order:42_a.b"}, "order:42_a.b"),
    ({}, None),  # a new UUID4
])
def test_usable_or_absent_request_ids_are_not_called_replaced(client, caplog, headers, echoed):
    caplog.set_level(logging.INFO, logger="clipsvc.request")
    response = post_clip(client, {"text-1": "a"}, headers)
    assert REPLACED_HEADER not in response.headers
    request_id = response.headers["request_id"]
    assert request_id == (echoed or str(uuid.UUID(request_id, version=4)))
    (line,) = [record for record in caplog.records if record.name == "clipsvc.request"]
    assert not hasattr(line, "original_request_id")


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_wrong_method(client, method):
    response = getattr(client, method)("/syte_test/clip")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.json["error"]["message"]


def test_unknown_path_lists_every_endpoint(app, client):
    response = client.get("/nope")
    assert_error(response, 404, "not_found")
    routes = [rule for rule in app.url_map.iter_rules() if "<" not in rule.rule]
    for rule in routes:
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        assert f"{method} {rule.rule}" in response.json["error"]["message"]
    assert "POST /syte_test/clip" in response.json["error"]["message"]


def test_unexpected_failure_is_a_json_500_without_traceback(client, encoder, monkeypatch, caplog):
    def explode(images, texts):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(encoder, "encode", explode)
    response = post_clip(client, {"text-1": "a"})
    assert_error(response, 500, "internal_server_error")
    assert "secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "secret internal detail" in caplog.text


def test_worker_keeps_serving_after_errors(client):
    for fields in ({"image-1": b"junk"}, {"bad": "x"}, {"text-1": ""}):
        assert post_clip(client, fields).status_code == 400
    assert post_clip(client, {"text-1": "still here"}).status_code == 200
