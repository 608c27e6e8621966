"""A client that misbehaves on the wire, against real gunicorn with 2 s client deadlines: a body trickled within
the deadline gets its answer, a stalled one a JSON 408; malformed HTTP gets a JSON 4xx with a request id; no
worker is lost. The measured figures are printed (pytest -s) and kept with record_property.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from http import HTTPStatus

import pytest
import requests
from urllib3 import encode_multipart_formdata

from testkit.faults import SMALL_JPEG, clip_files, report
from testkit.jsonlog import epoch
from testkit.rawhttp import multipart_head, parse_reply, read_to_close
from testkit.server import gunicorn

CLIENT_TIMEOUT = 2  # CLIP_CLIENT_TIMEOUT_S and CLIP_HEADER_TIMEOUT_S


@pytest.fixture(scope="module")
def short_timeout(model_dir, tmp_path_factory):
    """One server with 2 s client deadlines for every test here (none leaves it broken)."""
    log_path = tmp_path_factory.mktemp("gunicorn-timeout") / "server.log"
    with gunicorn(model_dir, log_path, CLIP_CLIENT_TIMEOUT_S=str(CLIENT_TIMEOUT),
                  CLIP_HEADER_TIMEOUT_S=str(CLIENT_TIMEOUT)) as server:
        yield server


def test_a_slowly_sent_body_that_finishes_within_the_timeout_gets_a_normal_answer(short_timeout, record_property):
    """Slow uplinks are normal: trickling a body over half the client timeout must not cost the request."""
    short_timeout.wait_loaded()
    body, content_type = encode_multipart_formdata({"image-1": ("x.jpg", SMALL_JPEG, "image/jpeg"),
                                                    "text-1": "a red square sent slowly"})
    pieces = [body[i:i + len(body) // 10 + 1] for i in range(0, len(body), len(body) // 10 + 1)]
    started, started_at = time.monotonic(), time.time()
    with socket.create_connection(("127.0.0.1", short_timeout.port), timeout=5) as sock:
        sock.sendall(multipart_head(short_timeout.port, body, content_type, "trickle-1"))
        for piece in pieces:
            time.sleep(CLIENT_TIMEOUT / 2 / len(pieces))
            sock.sendall(piece)
        raw, _ = read_to_close(sock, timeout=2)  # kept alive: the reply comes, the connection stays open
    elapsed = time.monotonic() - started
    report(record_property, "trickled body", pieces=len(pieces), seconds=round(elapsed, 3))
    status, headers, reply = parse_reply(raw)
    assert status == 200, reply
    assert headers["request_id"] == "trickle-1"
    assert {"image_1_vector", "text_1_vector", "image_vector_1_similarity_score"} <= set(json.loads(reply))
    assert not any(r.get("event") == "client_timeout" and epoch(r) >= started_at for r in short_timeout.log_records())


def test_a_stalled_body_gets_a_json_408_and_the_worker_goes_on_serving(short_timeout, record_property):
    """A client that stops sending mid-body is cut off at its deadline; only its own thread was held."""
    before = set(short_timeout.wait_loaded())
    body, content_type = encode_multipart_formdata({"image-1": ("x.jpg", SMALL_JPEG, "image/jpeg")})
    started, started_at = time.monotonic(), time.time()
    with socket.create_connection(("127.0.0.1", short_timeout.port), timeout=5) as sock:
        sock.sendall(multipart_head(short_timeout.port, body, content_type, "stall-1") + body[: len(body) // 2])
        raw, closed = read_to_close(sock, timeout=CLIENT_TIMEOUT + 5)
    elapsed = time.monotonic() - started
    report(record_property, "stalled body", closed_after_s=round(elapsed, 3))
    assert closed, "the server kept the stalled connection open past the client timeout"
    assert CLIENT_TIMEOUT - 0.5 <= elapsed <= CLIENT_TIMEOUT + 3
    status, headers, reply = parse_reply(raw)
    assert (status, headers["content-type"], headers["request_id"]) == (408, "application/json", "stall-1")
    assert headers["connection"] == "close"
    error = json.loads(reply)["error"]
    assert error["code"] == "request_timeout" and "CLIP_CLIENT_TIMEOUT_S" in error["message"]
    later = [requests.post(short_timeout.url + "/syte_test/clip", files=clip_files(i), timeout=10) for i in range(4)]
    assert [r.status_code for r in later] == [200] * 4
    assert short_timeout.worker_pids() == before, "no worker was replaced for a slow client"
    lines = [r for r in short_timeout.log_records() if epoch(r) >= started_at]
    assert not [r for r in lines if "WORKER TIMEOUT" in r["message"]]
    assert [r["status"] for r in lines if r.get("request_id") == "stall-1" and r["message"] == "request"] == [408]


# --- Malformed HTTP straight to the socket ----------------------------------------------------------------------------

INJECTED = b"Set-Cookie: injected=1"
MALFORMED = [
    pytest.param(b"\x16\x03\x01\x02\x00 this is not HTTP\r\n\r\n", 400, None, id="garbage-request-line"),
    pytest.param(b"GET /livez HTTP/1.1\r\nHost: x\r\nrequest_id: a\r" + INJECTED + b"\r\n\r\n", 400, INJECTED,
                 id="bare-CR-in-request_id"),
    pytest.param(b"GET /livez HTTP/1.1\r\nHost: x\r\nrequest_id: " + b"Q" * 10_000 + b"\r\n\r\n", 431, b"Q" * 32,
                 id="10000-char-request_id"),
    pytest.param(b"GET /" + b"u" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, b"u" * 32, id="10000-char-URL"),
    pytest.param(b"POST /encode HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: bzip2\r\n\r\n", 501, None,
                 id="unsupported-transfer-encoding"),
]


CODES = {414: "uri_too_long"}  # gunicorn's wording; the stdlib says Request-URI Too Long


def raw_exchange(server, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        raw, closed = read_to_close(sock, timeout=5)
    assert closed, "the server left a malformed request's connection open"
    return raw


@pytest.mark.parametrize("request_bytes, status, never_reflected", MALFORMED)
def test_malformed_http_gets_a_json_4xx_with_a_request_id(short_timeout, request_bytes, status, never_reflected):
    """gunicorn answers these before Flask runs; clients still need our JSON shape and an id to quote."""
    raw = raw_exchange(short_timeout, request_bytes)
    got, headers, body = parse_reply(raw)
    assert got == status, raw
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)["error"]
    assert set(error) == {"status", "code", "message", "field"} and error["status"] == status
    assert error["code"] == CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
    assert uuid.UUID(headers["request_id"]).version == 4 and headers["x-request-id"] == headers["request_id"]
    if never_reflected is not None:
        assert never_reflected not in raw
        assert never_reflected.decode() not in json.dumps(error)


def test_the_server_keeps_serving_after_malformed_http(short_timeout):
    """A parser error must cost only that connection: no worker dies and the next request is served."""
    before = set(short_timeout.wait_loaded())
    for param in MALFORMED:
        raw_exchange(short_timeout, param.values[0])
    responses = [requests.post(short_timeout.url + "/syte_test/clip", files=clip_files(i), timeout=10)
                 for i in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    assert short_timeout.worker_pids() == before
    warnings = [r for r in short_timeout.log_records() if r["message"].startswith("Invalid request from ip=")]
    assert len(warnings) >= len(MALFORMED) and all(r["level"] == "warning" for r in warnings)
