"""Property-based fuzzing of the endpoint: random keys, parts, bytes, texts and headers never break it.

Every run is the same run (derandomized, no example database), so CI checks the same few hundred cases each time;
the cases that once found a bug are pinned as explicit examples on top.
"""

import re

import pytest
import requests
from conftest import image_bytes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from testkit.multipart import Part, multipart_body

VALID_KEY = re.compile(r"(image|text)-[A-Za-z0-9_-]{1,64}")
IMAGES = [image_bytes("JPEG", (40, 30)), image_bytes("PNG", (8, 8), "RGBA", (0, 0, 0, 0)),
          image_bytes("GIF", mode="P", color=3)]
# Filename parameters as clients write them, well and badly (RFC 2231 with bad charsets, bad escapes, separators).
FILENAMES = ['filename="upload.bin"', 'filename=""', "filename*=UTF-8''%ff%fe.jpg", "filename*=bogus''x.png",
             "filename*=''", "filename*=utf-8'en'%e2%82%ac.png", "filename*=UTF-8''%", 'filename="a;b,c=.jpg"',
             'filename="..\\..\\x.jpg"', 'filename=x"y', "filename*=UTF-8''a.jpg; filename=\"b.jpg\""]

ids = st.text(alphabet="abc123_-", min_size=1, max_size=6)
names = st.one_of(
    ids.map(lambda i: f"image-{i}"),
    ids.map(lambda i: f"text-{i}"),
    st.none(),  # no name= at all
    st.just(""),  # name=""
    st.text(min_size=0, max_size=30),  # anything: unknown, unicode, quotes, CR/LF
)
values = st.one_of(
    st.sampled_from(IMAGES),
    st.binary(max_size=300),
    st.sampled_from(IMAGES).flatmap(lambda data: st.integers(0, len(data)).map(lambda n: data[:n])),
    st.text(max_size=80).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
parts = st.builds(Part, name=names, value=values, filename=st.none() | st.sampled_from(FILENAMES),
                  star_name=st.booleans(), repeat_boundary=st.integers(0, 7).map(lambda n: n == 0))
bodies = st.builds(multipart_body, st.lists(parts, max_size=6), preamble=st.sampled_from([b"", b"\r\n", b"junk\r\n"]),
                   epilogue=st.sampled_from([b"", b"--fuzz-b0undary--\r\n", b"\r\n\r\ntrailing"]),
                   closed=st.integers(0, 7).map(lambda n: n != 0))
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200)


def fuzz_settings(examples: int):
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check(status: int, headers, body: dict | None, embedding_dim: int) -> None:
    assert status < 500, body
    assert body is not None, "not JSON"
    assert headers.get("request_id")
    if status == 200:
        assert all(len(vector) == embedding_dim for key, vector in body.items() if key.endswith("_vector"))
    else:
        assert body["error"]["message"] and body["error"]["code"]


NAMELESS = multipart_body([Part(None, b"a dog")])
NAMELESS_FILE = multipart_body([Part("text-1", b"a dog"), Part(None, IMAGES[0], 'filename="photo.jpg"')])
EMPTY_NAME = multipart_body([Part("", b"a dog")])


@fuzz_settings(300)
@given(body=bodies, request_id=st.none() | header_text)
@example(body=NAMELESS, request_id=None)
@example(body=NAMELESS_FILE, request_id=None)
@example(body=EMPTY_NAME, request_id="1")
def test_random_multipart_forms(client, encoder, body, request_id):
    data, content_type = body
    headers = {"Content-Type": content_type} | ({"request_id": request_id} if request_id is not None else {})
    response = client.post("/syte_test/clip", data=data, headers=headers)
    check(response.status_code, response.headers, response.json if response.is_json else None,
          encoder.facts.embedding_dim)


@pytest.mark.parametrize("body", [NAMELESS, NAMELESS_FILE, EMPTY_NAME], ids=["no name", "no name, file", "name=''"])
def test_a_part_without_a_name_is_named_in_the_error(client, body):
    data, content_type = body
    response = client.post("/syte_test/clip", data=data, content_type=content_type)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"]["code"] == "unknown_key" and response.json["error"]["field"] == ""
    assert "no name" in response.json["error"]["message"]


@fuzz_settings(150)
@given(body=st.binary(max_size=2000), content_type=st.sampled_from(
    ["multipart/form-data; boundary=xyz", "multipart/form-data", "application/json", "text/plain", "image/png", ""]),
    extra=st.dictionaries(st.sampled_from(["X-Request-ID", "request_id", "Accept", "Content-Encoding"]), header_text,
                          max_size=3))
def test_random_bodies_and_headers(client, encoder, body, content_type, extra):
    response = client.post("/syte_test/clip", data=body, headers={"Content-Type": content_type, **extra})
    check(response.status_code, response.headers, response.json if response.is_json else None,
          encoder.facts.embedding_dim)


@fuzz_settings(60)
@given(body=bodies)
@example(body=NAMELESS)
@example(body=NAMELESS_FILE)
def test_random_multipart_forms_against_gunicorn(served, encoder, body):
    """The same bodies through real gunicorn's HTTP parser: never a 5xx, a reset or a lost worker."""
    workers = served.worker_pids()
    data, content_type = body
    response = requests.post(served.url + "/syte_test/clip", data=data, headers={"Content-Type": content_type},
                             timeout=30)
    is_json = response.headers.get("Content-Type", "").startswith("application/json")
    check(response.status_code, response.headers, response.json() if is_json else None, encoder.facts.embedding_dim)
    assert served.worker_pids() == workers
