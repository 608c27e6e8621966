"""Property-based fuzzing of the endpoint: random keys, bytes, texts and headers never break it."""

import re

from conftest import image_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3 import encode_multipart_formdata

VALID_KEY = re.compile(r"(image|text)-[A-Za-z0-9_-]{1,64}")
IMAGES = [image_bytes("JPEG", (40, 30)), image_bytes("PNG", (8, 8), "RGBA", (0, 0, 0, 0)), image_bytes("GIF", mode="P",
                                                                                                       color=3)]

ids = st.text(alphabet="abc123_-", min_size=1, max_size=6)
keys = st.one_of(
    ids.map(lambda i: f"image-{i}"),
    ids.map(lambda i: f"text-{i}"),
    st.text(min_size=0, max_size=30),  # anything at all: unknown, unicode, empty
)
values = st.one_of(
    st.sampled_from(IMAGES).map(lambda data: ("file", data)),
    st.binary(max_size=300).map(lambda data: ("file", data)),
    st.sampled_from(IMAGES).flatmap(lambda data: st.integers(0, len(data)).map(lambda n: ("file", data[:n]))),
    st.text(max_size=80).map(lambda text: ("text", text)),
)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200)
fuzz_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(response, embedding_dim: int, sent_keys: list[str]) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert response.is_json
    assert response.headers.get("request_id")
    if response.status_code == 200:
        for key in sent_keys:
            kind, item_id = key.split("-", 1)
            vector = response.json[f"{kind}_{item_id}_vector"]
            assert len(vector) == embedding_dim


@fuzz_settings
@given(parts=st.lists(st.tuples(keys, values), max_size=6), request_id=st.none() | header_text)
def test_random_multipart_forms(client, encoder, parts, request_id):
    fields = []
    for key, (kind, value) in parts:
        fields.append((key, ("upload.bin", value) if kind == "file" else value))
    body, content_type = encode_multipart_formdata(fields)
    headers = {"Content-Type": content_type}
    if request_id is not None:
        headers["request_id"] = request_id
    response = client.post("/syte_test/clip", data=body, headers=headers)
    check(response, encoder.info.embedding_dim, [key for key, _ in parts if VALID_KEY.fullmatch(key)])


@fuzz_settings
@given(body=st.binary(max_size=2000), content_type=st.sampled_from(
    ["multipart/form-data; boundary=xyz", "multipart/form-data", "application/json", "text/plain", "image/png", ""]),
    extra=st.dictionaries(st.sampled_from(["X-Request-ID", "request_id", "Accept", "Content-Encoding"]), header_text,
                          max_size=3))
def test_random_bodies_and_headers(client, encoder, body, content_type, extra):
    response = client.post("/syte_test/clip", data=body, headers={"Content-Type": content_type, **extra})
    check(response, encoder.info.embedding_dim, [])
