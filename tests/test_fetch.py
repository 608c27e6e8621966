"""img_uri http(s) fetching: the allow-list and its SSRF guards, against a real HTTP server on loopback.

The server is on 127.0.0.1, which the guards refuse, so most tests replace `fetch.resolve` to map the test
host names to it; the guards themselves are tested on their own and once, unpatched, against that server.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import image_bytes

from clipsvc.parsing import fetch, pinned_http
from clipsvc.web.app import create_app
from testkit.responses import assert_error

PNG = image_bytes("PNG", (40, 30))


class Origin(BaseHTTPRequestHandler):
    """Routes for every case; counts requests and the most handled at once."""

    hits: list[str] = []
    active = 0
    most_active = 0
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 - the stdlib's name
        with Origin.lock:
            Origin.hits.append(self.path)
            Origin.active += 1
            Origin.most_active = max(Origin.most_active, Origin.active)
        try:
            self.route()
        finally:
            with Origin.lock:
                Origin.active -= 1

    def route(self):
        path, _, query = self.path.partition("?")
        if path == "/cat.png":
            return self.send(200, PNG)
        if path == "/slow.png":
            time.sleep(float(query or 0.3))
            return self.send(200, PNG)
        if path == "/hang":
            time.sleep(5)
            return self.send(200, PNG)
        if path == "/trickle":  # each byte well within the timeout, the whole far beyond it
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
            return None
        if path == "/big-declared":
            return self.send(200, b"x" * 1024, length=str(50 * 1024 * 1024))
        if path == "/big-undeclared":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * (2 * 1024 * 1024))
            return None
        if path == "/text":
            return self.send(200, b"not an image at all")
        if path.startswith("/redirect/"):
            return self.send(302, b"", location=path.removeprefix("/redirect") if "://" not in query else query)
        if path == "/loop":
            return self.send(302, b"", location="/loop")
        return self.send(404, b"missing")

    def send(self, status: int, body: bytes, length: str | None = None, location: str | None = None):
        self.send_response(status)
        self.send_header("Content-Length", length or str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: that is the point
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def test_hosts(monkeypatch):
    """images.test and other.test resolve to loopback, past the public-address check, for these tests only."""
    def resolve(host, port):
        if host in ("images.test", "other.test"):
            return ["127.0.0.1"]
        raise fetch.FetchError(f"{host} could not be resolved")

    monkeypatch.setattr(fetch, "resolve", resolve)
    Origin.hits.clear()


@pytest.fixture
def fetching_client(settings, encoder, origin, test_hosts):
    allowed = replace(settings, fetch_allow_hosts=(f"images.test:{origin}",), fetch_timeout_s=1.0,
                               max_image_mb=1)
    return create_app(allowed, encoder).test_client()


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory):
    """The same routes over HTTPS, with a self-signed certificate for images.test (made by openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=images.test",
                    "-addext", "subjectAltName=DNS:images.test"], check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


@pytest.fixture
def tls_client(settings, encoder, tls_origin, test_hosts):
    port, _ = tls_origin
    hosts = (f"images.test:{port}", f"other.test:{port}")
    return create_app(replace(settings, fetch_allow_hosts=hosts, fetch_timeout_s=2.0), encoder).test_client()


def test_https_certificates_are_verified(tls_client, tls_origin):
    port, _ = tls_origin
    response = encode(tls_client, f"https://images.test:{port}/cat.png")
    assert_error(response, 400, "url_fetch_failed", "[0].img_uri")
    assert "CERTIFICATE_VERIFY_FAILED" in response.json["error"]["message"]


def test_https_with_a_trusted_certificate_checks_the_host_name(tls_client, tls_origin, monkeypatch):
    port, cert = tls_origin
    monkeypatch.setattr(pinned_http, "tls_context", lambda: ssl.create_default_context(cafile=str(cert)))
    good = encode(tls_client, f"https://images.test:{port}/cat.png")
    assert good.status_code == 200, good.json
    assert good.json == tls_client.post("/encode", json=[{"img_blob": base64.b64encode(PNG).decode()}]).json
    # other.test resolves to the same server, whose certificate does not name it.
    wrong_name = encode(tls_client, f"https://other.test:{port}/cat.png")
    assert_error(wrong_name, 400, "url_fetch_failed", "[0].img_uri")
    assert "other.test" in wrong_name.json["error"]["message"]
    # An https URL may not be sent to http by a redirect.
    downgrade = encode(tls_client, f"https://images.test:{port}/redirect/x?http://images.test:{port}/cat.png")
    assert_error(downgrade, 400, "url_redirect_refused", "[0].img_uri")


def encode(client, *uris: str):
    return client.post("/encode", json=[{"img_uri": uri} for uri in uris])


def test_an_allowed_url_gives_the_same_vector_as_the_bytes(fetching_client, origin):
    by_url = encode(fetching_client, f"http://images.test:{origin}/cat.png")
    by_blob = fetching_client.post("/encode", json=[{"img_blob": base64.b64encode(PNG).decode()}])
    assert by_url.status_code == 200, by_url.json
    assert by_url.json == by_blob.json
    assert Origin.hits == ["/cat.png"]


def test_rank_takes_urls_too(fetching_client, origin):
    response = fetching_client.post("/rank", json={"queries": [{"img_uri": f"http://images.test:{origin}/cat.png"}],
                                                   "candidates": [{"text": "a cat"}, {"text": "a dog"}]})
    assert response.status_code == 200, response.json
    assert abs(sum(response.json["probabilities"][0]) - 1) < 1e-5


@pytest.mark.parametrize("path, status, code", [
    ("/missing", 400, "url_fetch_failed"),
    ("/hang", 400, "url_fetch_failed"),
    ("/trickle", 400, "url_fetch_failed"),
    ("/big-declared", 413, "url_too_large"),
    ("/big-undeclared", 413, "url_too_large"),
    ("/loop", 400, "url_redirect_refused"),
    ("/text", 400, "unsupported_image"),
])
def test_failed_fetches_are_client_errors_naming_the_field(fetching_client, origin, path, status, code):
    started = time.monotonic()
    response = encode(fetching_client, f"http://images.test:{origin}/cat.png", f"http://images.test:{origin}{path}")
    assert_error(response, status, code, "[1].img_uri")
    assert time.monotonic() - started < 4, "one deadline bounds the whole fetch"


def test_redirects_within_the_host_are_followed(fetching_client, origin):
    response = encode(fetching_client, f"http://images.test:{origin}/redirect/cat.png")
    assert response.status_code == 200, response.json
    assert Origin.hits == ["/redirect/cat.png", "/cat.png"]


@pytest.mark.parametrize("target", ["http://other.test:{port}/cat.png", "http://127.0.0.1:{port}/cat.png",
                                    "http://169.254.169.254/latest/meta-data/"])
def test_redirects_to_another_host_are_refused(fetching_client, origin, target):
    url = f"http://images.test:{origin}/redirect/x?{target.format(port=origin)}"
    assert_error(encode(fetching_client, url), 400, "url_redirect_refused", "[0].img_uri")
    assert Origin.hits == ["/redirect/x?" + target.format(port=origin)]


@pytest.mark.parametrize("url, code", [
    ("http://other.test:{port}/cat.png", "url_host_not_allowed"),
    ("http://images.test/cat.png", "url_host_not_allowed"),  # port 80 is not the listed port
    ("http://sub.images.test:{port}/cat.png", "url_host_not_allowed"),
    ("http://user:secret@images.test:{port}/cat.png", "invalid_uri"),
    ("http://images.test:99999/cat.png", "invalid_uri"),
    ("http://:{port}/cat.png", "invalid_uri"),
    ("http://[images.test/cat.png", "invalid_uri"),  # urlsplit raises ValueError: a 400, not a 500
    ("http://images.test:{port}/" + "a" * 5000, "invalid_uri"),
])
def test_refused_urls_are_never_requested(fetching_client, origin, url, code):
    assert_error(encode(fetching_client, url.format(port=origin)), 400, code, "[0].img_uri")
    assert Origin.hits == []


def test_urls_are_refused_when_no_host_is_allowed(client, origin):
    Origin.hits.clear()
    response = encode(client, f"http://127.0.0.1:{origin}/cat.png")
    assert_error(response, 400, "url_fetch_disabled", "[0].img_uri")
    assert "CLIP_FETCH_ALLOW_HOSTS" in response.json["error"]["message"]
    assert Origin.hits == []


URL = "https://images.example.com/cat.png"


@pytest.mark.parametrize("path, body, field, inline", [
    ("/encode", [{"img_uri": URL}], "[0].img_uri", "img_blob (base64)"),
    ("/v1/embeddings", {"input": [{"image": URL}]}, "input[0].image", '{"image": "<base64>"}'),
    ("/v1/models/model:predict", {"labels": ["a"], "image_url": URL}, "image_url", "a data: URI in image_url"),
    ("/post", {"data": [{"uri": URL}]}, "data[0].uri", "blob (base64)"),
])
def test_with_fetching_off_each_api_names_its_own_way_to_send_the_image(client, path, body, field, inline):
    """Not BentoML's img_blob everywhere: the field of the API the client speaks."""
    response = client.post(path, json=body)
    error = response.json["error"]
    assert response.status_code == 400 and error["code"] == "url_fetch_disabled"
    assert error.get("field", error.get("param")) == field
    assert f"send the image itself as {inline}" in error["message"], error["message"]
    assert ("img_blob" in error["message"]) == (path == "/encode")


def test_loopback_is_refused_even_when_listed(settings, encoder, origin):
    """No patched resolver here: the real one, and the real guard."""
    Origin.hits.clear()
    allowed = replace(settings, fetch_allow_hosts=(f"localhost:{origin}", f"127.0.0.1:{origin}"))
    client = create_app(allowed, encoder).test_client()
    for host in ("localhost", "127.0.0.1"):
        assert_error(encode(client, f"http://{host}:{origin}/cat.png"), 400, "url_address_forbidden", "[0].img_uri")
    assert Origin.hits == []


def test_items_are_checked_before_any_url_is_fetched(fetching_client, origin):
    response = fetching_client.post("/encode", json=[{"img_uri": f"http://images.test:{origin}/cat.png"},
                                                     {"text": 7}])
    assert_error(response, 400, "invalid_item", "[1].text")
    assert Origin.hits == []


def test_a_requests_urls_are_fetched_in_parallel(fetching_client, origin):
    Origin.most_active = 0
    response = encode(fetching_client, *[f"http://images.test:{origin}/slow.png?0.3"] * 4)
    assert response.status_code == 200, response.json
    assert Origin.most_active >= 2


@pytest.mark.parametrize("entry, host, port, scheme, allowed", [
    ("images.example.com", "images.example.com", 443, "https", True),
    ("images.example.com", "images.example.com", 80, "http", True),
    ("images.example.com", "images.example.com", 8443, "https", False),
    ("images.example.com:8443", "images.example.com", 8443, "https", True),
    ("images.example.com", "evil-images.example.com", 443, "https", False),
    ("images.example.com", "images.example.com.evil.net", 443, "https", False),
    ("*.example.com", "a.b.example.com", 443, "https", True),
    ("*.example.com", "example.com", 443, "https", False),
    ("*.example.com", "evilexample.com", 443, "https", False),
])
def test_host_allowed(entry, host, port, scheme, allowed):
    assert fetch.host_allowed(host, port, scheme, (entry,)) is allowed


@pytest.mark.parametrize("address, public", [
    ("93.184.215.14", True),
    ("2606:4700:4700::1111", True),
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("172.16.5.4", False),
    ("192.168.1.1", False),
    ("169.254.169.254", False),  # cloud metadata
    ("100.64.0.1", False),  # carrier-grade NAT
    ("0.0.0.0", False),
    ("224.0.0.1", False),
    ("255.255.255.255", False),
    ("::1", False),
    ("::", False),
    ("fe80::1%eth0", False),
    ("fc00::1", False),
    ("::ffff:127.0.0.1", False),
    ("::ffff:169.254.169.254", False),
    ("::ffff:93.184.215.14", True),
    ("2002:7f00:1::", False),  # 6to4 wrapping 127.0.0.1
    ("ff02::1", False),
])
def test_public_address(address, public):
    assert fetch.public_address(address) is public


def test_one_private_answer_among_public_ones_refuses_the_host(monkeypatch):
    answers = [(None, None, None, "", ("93.184.215.14", 443)), (None, None, None, "", ("10.0.0.5", 443))]
    monkeypatch.setattr(fetch.socket, "getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(fetch.AddressForbidden, match="10.0.0.5"):
        fetch.resolve("images.example.com", 443)
