"""The bad-input matrix: every case gets a clear JSON answer (never a 5xx or HTML), and the app serves on."""

import io
import json
import resource
import select
import socket
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import image_bytes, post_clip
from PIL import Image

from clipsvc.server.request_id import REPLACED_HEADER
from testkit.images import png_header_only
from testkit.rawhttp import parse_reply
from testkit.server import gunicorn


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    return buffer.getvalue()


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    return buffer.getvalue()


def sixteen_bit_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(buffer, format="PNG")
    return buffer.getvalue()


def other_format(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format=fmt)
    return buffer.getvalue()


OK, BAD = 200, 400
# (case, form fields, expected status, expected error code or None)
MATRIX = [
    ("zero-byte file", {"image-1": b""}, BAD, "empty_file"),
    ("text file named .jpg", {"image-1": b"Just some notes, not a picture.\n" * 20}, BAD, "unsupported_image"),
    ("truncated JPEG", {"image-1": image_bytes("JPEG", (256, 256))[:400]}, BAD, "invalid_image"),
    ("truncated PNG", {"image-1": image_bytes("PNG", (256, 256))[:100]}, BAD, "invalid_image"),
    ("PNG bomb 30000x30000", {"image-1": png_header_only(30000, 30000)}, BAD, "too_many_pixels"),
    ("animated GIF", {"image-1": animated_gif()}, OK, None),
    ("16-bit PNG", {"image-1": sixteen_bit_png()}, OK, None),
    ("CMYK JPEG", {"image-1": image_bytes("JPEG", mode="CMYK", color=(0, 50, 100, 0))}, OK, None),
    ("grayscale JPEG", {"image-1": image_bytes("JPEG", mode="L", color=90)}, OK, None),
    ("palette PNG with transparency", {"image-1": palette_png_with_transparency()}, OK, None),
    ("1x1 image", {"image-1": image_bytes("PNG", (1, 1))}, OK, None),
    ("10000x20 strip", {"image-1": image_bytes("PNG", (10000, 20))}, OK, None),
    ("PDF (Pillow can write, we do not read)", {"image-1": other_format("PDF")}, BAD, "unsupported_image"),
    ("EPS", {"image-1": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\nshowpage\n"}, BAD, "unsupported_image"),
    ("PSD-like header", {"image-1": b"8BPS\x00\x01" + b"\x00" * 40}, BAD, "unsupported_image"),
    ("SVG", {"image-1": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'}, BAD,
     "unsupported_image"),
    ("51 words", {"text-1": " ".join(["word"] * 51)}, BAD, "text_too_long"),
    ("only non-ASCII", {"text-1": "日本語 ёжик 🚀"}, BAD, "empty_text"),
    ("control characters and NUL", {"text-1": "a\x00b\x01c\x1b[31m red\x7f"}, OK, None),
    ("empty text", {"text-1": ""}, BAD, "empty_text"),
    ("field name with spaces", {"text 1": "x"}, BAD, "unknown_key"),
    ("field name with unicode", {"text-ü": "x"}, BAD, "unknown_key"),
    ("field name of 1000 characters", {"text-" + "a" * 995: "x"}, BAD, "unknown_key"),
    ("image key as a plain value", {"image-1": "hello"}, BAD, "image_not_a_file"),
    ("image and garbage together", {"image-1": image_bytes(), "image-2": b"garbage"}, BAD, "unsupported_image"),
]


@pytest.mark.parametrize("fields, status, code", [case[1:] for case in MATRIX], ids=[case[0] for case in MATRIX])
def test_matrix(client, fields, status, code):
    response = post_clip(client, fields, {"request_id": "matrix-1"})
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.is_json and response.headers["request_id"] == "matrix-1"
    if code is not None:
        assert response.json["error"]["code"] == code
        assert response.json["error"]["message"]
    assert post_clip(client, {"text-1": "still serving"}).status_code == 200


@pytest.mark.parametrize("name, request_kwargs, status, code", [
    ("duplicate keys", dict(data={"text-1": ["a", "b"]}, content_type="multipart/form-data"), 400, "duplicate_key"),
    ("JSON body", dict(json={"text-1": "a"}), 415, "unsupported_media_type"),
    ("10 000 fields", dict(data={f"f{i}": "x" for i in range(10_000)}, content_type="multipart/form-data"), 400,
     "too_many_items"),
    ("no body", dict(), 415, "unsupported_media_type"),
    ("multipart without boundary", dict(data=b"--x\r\n", content_type="multipart/form-data"), 400, "empty_request"),
])
def test_request_level_cases(client, name, request_kwargs, status, code):
    response = client.post("/syte_test/clip", **request_kwargs)
    assert response.status_code == status and response.json["error"]["code"] == code


@pytest.mark.parametrize("value", ["a" * 10_000, "a b", "x\ty", "<script>alert(1)</script>", "ü"])
def test_request_ids_that_are_replaced_and_never_reflected(client, value):
    """An id the service cannot echo gets a new one, and the request is served, as a proxy's router would."""
    response = post_clip(client, {"text-1": "a"}, {"request_id": value})
    assert response.status_code == 200 and "text_1_vector" in response.json
    assert response.headers[REPLACED_HEADER] == "true"
    assert str(uuid.UUID(response.headers["request_id"])) == response.headers["request_id"]
    assert value not in response.headers["request_id"] and value not in response.get_data(as_text=True)


def test_decompression_bomb_is_refused_without_decoding(client):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = post_clip(client, {"image-1": png_header_only(30000, 30000)})
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert response.json["error"]["code"] == "too_many_pixels"
    assert grown_mb < 50  # decoding would need 30000*30000*3 bytes = 2.7 GB


def test_exif_rotated_jpeg_gives_the_upright_vector(client):
    x = np.linspace(0, 255, 96)
    upright = Image.fromarray(np.stack([np.add.outer(x[:64] * 0, x), np.add.outer(x[:64], x * 0),
                                        np.full((64, 96), 128.0)], -1).astype(np.uint8))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated, plain, reference = io.BytesIO(), io.BytesIO(), io.BytesIO()
    stored.save(rotated, format="JPEG", quality=98, exif=exif)
    stored.save(plain, format="JPEG", quality=98)
    upright.save(reference, format="JPEG", quality=98)
    body = post_clip(client, {"image-r": rotated.getvalue(), "image-p": plain.getvalue(),
                              "image-u": reference.getvalue()}).json
    u, r, p = (np.array(body[f"image_{k}_vector"]) for k in "urp")
    assert float(u @ r) > 0.99
    assert float(u @ r) > float(u @ p)  # the orientation tag, not luck, made them equal


# Chunked bodies over CLIP_MAX_REQUEST_MB, on every POST endpoint of real gunicorn: each body is what the endpoint
# takes (valid JSON, a valid form), only too long, and endless for all the server can tell: a 64 MB body sent
# chunk by chunk until a reply comes. The image limit equals the request limit, so /vectorize's read reaches it.
LIMIT_MB = 0.25
LIMIT = int(LIMIT_MB * 1024 * 1024)
CHUNK = 64 * 1024
SENT = 64 * 1024 * 1024  # what the client would send in all
SENT_BOUND = 24 * 1024 * 1024  # the limit plus loopback's socket buffers; far less than the body
SECONDS_BOUND = 5
BOUNDARY = "chunked-boundary"
MULTIPART_IMAGE = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image-1"; filename="a.png"\r\n'
                   "Content-Type: image/png\r\n\r\n").encode()
JSON = "application/json"
# (path, Content-Type, what comes first, what fills the body, what would end it)
CHUNKED_BODIES = [
    ("/syte_test/clip", f"multipart/form-data; boundary={BOUNDARY}", MULTIPART_IMAGE, b"\0",
     f"\r\n--{BOUNDARY}--\r\n".encode()),
    ("/syte_test/clip", "application/x-www-form-urlencoded", b"text-1=", b"a", b""),
    ("/encode", JSON, b"", b" ", b'[{"text": "a dog"}]'),
    ("/rank", JSON, b"", b" ", b'{"queries": [{"text": "a"}], "candidates": [{"text": "b"}]}'),
    ("/vectorize", "image/png", b"\x89PNG\r\n\x1a\n", b"\0", b""),
    ("/v1/embeddings", JSON, b"", b" ", b'{"input": "a dog"}'),
    ("/post", JSON, b"", b" ", b'{"data": [{"text": "a dog"}]}'),
    ("/v1/models/model:predict", JSON, b"", b" ", b'{"labels": ["a", "b"], "image": [[[0, 0, 0]]]}'),
    ("/predict", "application/x-www-form-urlencoded", b"", b" ", b'{"labels": ["a", "b"], "image": [[[0, 0, 0]]]}'),
    ("/model_versions/abc123/predict", JSON, b"", b" ", b'{"labels": ["a"], "image": [[[0, 0, 0]]]}'),
    ("/production/predict", JSON, b"", b" ", b'{"labels": ["a"], "image": [[[0, 0, 0]]]}'),
]


@pytest.fixture(scope="module")
def small_limit_server(model_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("chunked") / "server.log"
    with gunicorn(model_dir, log_path, CLIP_MAX_REQUEST_MB=str(LIMIT_MB), CLIP_MAX_IMAGE_MB=str(LIMIT_MB)) as server:
        yield server


def test_the_chunked_table_covers_every_post_endpoint(app):
    """A POST route added later fails here until its row is in CHUNKED_BODIES."""
    adapter = app.url_map.bind("localhost")
    posted = {rule.endpoint for rule in app.url_map.iter_rules() if "POST" in rule.methods}
    assert {adapter.match(path, "POST")[0] for path, *_ in CHUNKED_BODIES} == posted


def chunks(head: bytes, filler: bytes, tail: bytes) -> Iterator[bytes]:
    """SENT bytes of body, in CHUNK pieces: `head`, then `filler` repeated, then `tail`."""
    yield from filter(None, [head])  # an empty chunk would end the body
    for _ in range((SENT - len(head) - len(tail)) // CHUNK):
        yield filler * CHUNK
    yield from filter(None, [tail])


def post_chunked(port: int, path: str, content_type: str, pieces: Iterator[bytes]) -> tuple[bytes, int, float]:
    """Send the body chunked until the server answers (or stops reading); the reply, the body bytes sent before
    it, and the seconds it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                     "Transfer-Encoding: chunked\r\nrequest_id: chunked-1\r\n\r\n".encode())
        started, sent = time.monotonic(), 0
        try:
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:  # the reply (or the close) has come
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            else:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection after answering
            pass
        return read_one_reply(sock), sent, time.monotonic() - started


def read_one_reply(sock: socket.socket) -> bytes:
    """Headers, then Content-Length bytes, or whatever came before the server closed."""
    data = b""
    while True:
        head, found, body = data.partition(b"\r\n\r\n")
        if found and len(body) >= int(parse_reply(head + found)[1].get("content-length", 0)):
            return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("path, content_type, head, filler, tail", CHUNKED_BODIES,
                         ids=[f"{row[0]} {row[1].split(';')[0]}" for row in CHUNKED_BODIES])
def test_a_chunked_body_over_the_limit_is_a_413_while_it_is_read(small_limit_server, path, content_type, head,
                                                                 filler, tail):
    raw, sent, seconds = post_chunked(small_limit_server.port, path, content_type, chunks(head, filler, tail))
    status, headers, body = parse_reply(raw)
    assert status == 413, body[:300]
    assert headers["content-type"] == "application/json" and headers["request_id"] == "chunked-1"
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and "CLIP_MAX_REQUEST_MB" in error["message"]
    assert sent < SENT_BOUND and seconds < SECONDS_BOUND, (sent, seconds)
