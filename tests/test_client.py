"""clipsvc.client.Client against real gunicorn: vectors in input order equal /encode's, broken items are dropped
with the server's reason, an item the server fails on alone (a 500, an HTML error page, a closed connection, a
timeout: a proxy before the server plays them) is dropped while the rest is embedded, a server that fails every
request or cannot be reached stops the run at once, and 503 and 408 are retried as documented."""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import image_bytes
from PIL import Image

from clipsvc.client import Client, ItemsRefused, ServiceError, Unreachable
from clipsvc.client.api import as_json_item, check_url


def served_vectors(served, items: list[dict]) -> np.ndarray:
    rows = requests.post(f"{served.url}/encode?encoding=base64", json=items, timeout=60).json()
    return np.stack([np.frombuffer(base64.b64decode(row), dtype="<f4") for row in rows])


def test_every_kind_of_item_in_input_order(served, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes("PNG", (50, 40), color=(10, 200, 30)))
    jpeg = image_bytes("JPEG", (64, 48))
    picture = Image.new("RGB", (30, 30), (0, 0, 255))
    items = ["a red car", photo, jpeg, picture, "photo.png"]  # a str is a text, even one that names a file
    vectors = Client(served.url).encode(items, batch_size=2, concurrency=2)
    assert vectors.shape == (5, 32) and vectors.dtype == np.float32
    expected = served_vectors(served, [as_json_item(item) for item in items])
    assert ((vectors * expected).sum(axis=1) > 0.9999).all()  # bf16 batches may round apart by ~1e-5
    assert as_json_item("photo.png") == {"text": "photo.png"}


def test_a_broken_item_is_dropped_with_the_servers_reason_and_the_rest_embedded(served):
    items = ["a dog", b"not an image at all", image_bytes("PNG", (20, 20)), b"", "a cat"]
    with pytest.raises(ItemsRefused) as refused:
        Client(served.url).encode(items, batch_size=5)
    failures = {f.index: f.code for f in refused.value.failures}
    assert failures == {1: "unsupported_image", 3: "empty_file"}
    vectors = refused.value.vectors
    assert np.isnan(vectors[[1, 3]]).all() and not np.isnan(vectors[[0, 2, 4]]).any()


def test_unreadable_and_oversized_files_fail_locally(served, tmp_path):
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff" * (21 * 1024 * 1024))  # over the default CLIP_MAX_IMAGE_MB (20)
    with pytest.raises(ItemsRefused) as refused:
        Client(served.url).encode([tmp_path / "missing.jpg", big, "fine"])
    assert [(f.index, f.code) for f in refused.value.failures] == [(0, "unreadable"), (1, "too_large")]


class Faulty(http.server.BaseHTTPRequestHandler):
    """A proxy before the test server that fails as told. `plan`: the statuses of the next POSTs (Retry-After: 0);
    `poison`: item values (a text, an img_blob) whose requests meet `fault`; `works_for`: how many POSTs pass before
    every later one gets a 500 (a server that broke). The rest goes to the server."""

    target = ""
    plan: list[int] = []
    poison: set[str] = set()
    fault = "500"
    works_for: int | None = None
    seen: list[int] = []  # each POST's status (0: closed unanswered)

    @classmethod
    def reset(cls, target: str) -> None:
        cls.target, cls.plan, cls.poison, cls.fault, cls.works_for, cls.seen = target, [], set(), "500", None, []

    def _forward(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if method == "POST" and (self.plan or self._broken() or self._poisoned(body)):
            self._fail(self.plan.pop(0) if self.plan else 500 if self._broken() else self.fault)
            return
        upstream = requests.request(method, self.target + self.path, data=body or None,
                                    headers={"Content-Type": self.headers.get("Content-Type", "")}, timeout=60)
        if method == "POST":
            self.seen.append(upstream.status_code)
        self._answer(upstream.status_code, upstream.headers.get("Content-Type", ""), upstream.content)

    def _broken(self) -> bool:
        return self.works_for is not None and sum(status == 200 for status in self.seen) >= self.works_for

    def _poisoned(self, body: bytes) -> bool:
        return any(value in self.poison for item in json.loads(body) for value in item.values())

    def _fail(self, fault: int | str) -> None:
        """What a broken server or a proxy before it answers: our JSON 500, an HTML page, nothing, or too late."""
        self.seen.append(0 if fault in ("close", "slow") else int(fault))
        if fault == "close":
            self.close_connection = True
        elif fault == "slow":
            time.sleep(1.0)
            self.close_connection = True
        elif int(fault) == 500:
            error = {"error": {"code": "internal_server_error", "message": "a bug: the details go to the log only"}}
            self._answer(500, "application/json", json.dumps(error).encode())
        else:
            self._answer(int(fault), "text/html", f"<html><h1>{fault} from the proxy</h1></html>".encode())

    def _answer(self, status: int, content_type: str, content: bytes) -> None:
        self.send_response(status)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def do_GET(self):  # noqa: N802 - http.server's names
        self._forward("GET")

    def do_POST(self):  # noqa: N802
        self._forward("POST")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def faulty_proxy(target: str) -> Iterator[str]:
    """Faulty on a free loopback port, reset, for the length of a test."""
    Faulty.reset(target)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Faulty)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def faulty(served) -> Iterator[str]:
    with faulty_proxy(served.url) as url:
        yield url


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_503_and_408_are_retried(faulty):
    Faulty.plan = [503, 408, 503]
    vectors = Client(faulty, backoff=0.01).encode(["a dog", "a cat"])
    assert Faulty.seen == [503, 408, 503, 200] and vectors.shape == (2, 32)


TEXTS = [f"a photo of thing {i}" for i in range(8)]


@pytest.mark.parametrize("fault, code", [("500", "internal_server_error"), ("502", "http_502"),
                                         ("413", "http_413"), ("close", "connection_lost"), ("slow", "timeout")])
@pytest.mark.parametrize("poisoned", [[0], [7], [2, 5]], ids=["first", "last", "two"])
def test_an_item_that_fails_alone_is_dropped_and_the_rest_embedded(faulty, served, fault, code, poisoned):
    """A batch that fails for no named item is halved until the items that fail alone are found: only they go."""
    items = [f"poison {i}" if i in poisoned else text for i, text in enumerate(TEXTS)]
    Faulty.poison, Faulty.fault = {items[i] for i in poisoned}, fault
    with pytest.raises(ItemsRefused) as refused:
        Client(faulty, backoff=0.01, timeout=0.3).encode(items, batch_size=8)
    assert [(f.index, f.code) for f in refused.value.failures] == [(i, code) for i in poisoned]
    assert all("alone" in f.message for f in refused.value.failures)
    kept = [i for i in range(len(items)) if i not in poisoned]
    expected = served_vectors(served, [{"text": items[i]} for i in kept])
    assert ((refused.value.vectors[kept] * expected).sum(axis=1) > 0.9999).all()
    assert np.isnan(refused.value.vectors[poisoned]).all()


@pytest.mark.parametrize("status, requests_sent", [(500, 4), (502, 4), (401, 1)])
def test_a_server_that_fails_every_request_stops_the_run_at_once(faulty, status, requests_sent):
    """Two tries of the batch and two of the probe (a 401: one), not one request per item."""
    Faulty.plan = [status] * 50
    started = time.monotonic()
    with pytest.raises(ServiceError, match=f"fails every request.*{status}") as stopped:
        Client(faulty, backoff=0.01).encode(TEXTS, batch_size=8)
    assert len(Faulty.seen) == requests_sent and stopped.value.status == status
    assert time.monotonic() - started < 2


def test_busy_answers_are_retried_then_the_run_stops(faulty):
    Faulty.plan = [503] * 50
    with pytest.raises(ServiceError, match="fails every request.*503"):
        Client(faulty, retries=2, backoff=0.01).encode(["a dog"])
    assert len(Faulty.seen) == 6  # three tries of the batch, three of the probe


def test_a_refused_connection_fails_in_about_a_second_and_a_half():
    started = time.monotonic()
    with pytest.raises(Unreachable, match="connection refused"):
        Client(f"http://127.0.0.1:{closed_port()}").encode(["a dog"])  # the default retries and backoff
    assert 1.4 < time.monotonic() - started < 3


def test_a_host_name_that_does_not_resolve_is_not_retried(monkeypatch):
    def unknown(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)  # no DNS query leaves the machine
    started = time.monotonic()
    with pytest.raises(Unreachable, match="'photos.invalid' does not resolve"):
        Client("http://photos.invalid:8081").encode(["a dog"])
    assert time.monotonic() - started < 0.5


def test_a_server_that_went_away_gets_every_retry(faulty):
    client = Client(faulty, retries=3, backoff=0.05)
    client.meta()
    client.url = f"http://127.0.0.1:{closed_port()}"  # as if it stopped after answering
    started = time.monotonic()
    with pytest.raises(Unreachable):
        client.encode(["a dog"])
    assert time.monotonic() - started > 0.05 + 0.1 + 0.2


@pytest.mark.parametrize("url, error", [
    ("http://127.0.0.1:8081", None), ("https://clip.example.com/", None), ("http://localhost:8081/prefix", None),
    ("127.0.0.1:8081", "write e.g. http://127.0.0.1:8081"), ("localhost", "write e.g. http://localhost"),
    ("ftp://host/", "write e.g. http://host/"), ("http://127.0.0.1:99999", "port"), ("http://:8081", "no host"),
    ("", "not an http"),
])
def test_urls_are_checked_before_any_request(url, error):
    if error is None:
        assert check_url(url) == url
    else:
        with pytest.raises(ValueError, match=error):
            Client(url)


def test_a_pil_image_goes_as_png(served):
    picture = Image.new("RGB", (16, 16), (255, 0, 0))
    sent = base64.b64decode(as_json_item(picture)["img_blob"])
    assert Image.open(io.BytesIO(sent)).format == "PNG"


def test_items_of_other_types_are_refused_locally():
    with pytest.raises(TypeError, match="pathlib.Path"):
        as_json_item(3.5)
    assert as_json_item(Path(__file__))["img_blob"]


def test_requirements_client_pins_every_import_of_the_client():
    import ast
    import sys

    root = Path(__file__).resolve().parent.parent
    names = set()
    for path in (root / "clipsvc" / "client").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    third_party = {n for n in names if n not in sys.stdlib_module_names and n != "__future__"}
    pinned = {line.split("==")[0] for line in (root / "requirements-client.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    assert third_party == pinned == {"requests", "numpy", "tqdm", "pyarrow"}
