"""clipsvc.client.Client against real gunicorn: vectors in input order equal /encode's, broken items are dropped
with the server's reason, and connection errors, 503 and 408 are retried as documented."""

from __future__ import annotations

import base64
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import image_bytes
from PIL import Image

from clipsvc.client import Client, ItemsRefused, ServiceError
from clipsvc.client.api import as_json_item


def served_vectors(url: str, items: list[dict]) -> np.ndarray:
    rows = requests.post(f"{url}/encode?encoding=base64", json=items, timeout=60).json()
    return np.stack([np.frombuffer(base64.b64decode(row), dtype="<f4") for row in rows])


def test_every_kind_of_item_in_input_order(served, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes("PNG", (50, 40), color=(10, 200, 30)))
    jpeg = image_bytes("JPEG", (64, 48))
    picture = Image.new("RGB", (30, 30), (0, 0, 255))
    items = ["a red car", photo, jpeg, picture, "photo.png"]  # a str is a text, even one that names a file
    vectors = Client(served.url).encode(items, batch_size=2, concurrency=2)
    assert vectors.shape == (5, 32) and vectors.dtype == np.float32
    expected = served_vectors(served.url, [as_json_item(item) for item in items])
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


class Flaky(http.server.BaseHTTPRequestHandler):
    """Answers the first `failures` POSTs with 503 (Retry-After: 0) or 408, then passes requests to the server."""

    target = ""
    plan: list[int] = []
    seen: list[int] = []

    def _forward(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if method == "POST" and self.plan:
            status = self.plan.pop(0)
            self.seen.append(status)
            self.send_response(status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        upstream = requests.request(method, self.target + self.path, data=body or None,
                                    headers={"Content-Type": self.headers.get("Content-Type", "")}, timeout=60)
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", ""))
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    def do_GET(self):  # noqa: N802 - http.server's names
        self._forward("GET")

    def do_POST(self):  # noqa: N802
        self._forward("POST")

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky(served):
    Flaky.target, Flaky.seen = served.url, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_503_and_408_are_retried(flaky):
    Flaky.plan = [503, 408, 503]
    vectors = Client(flaky, backoff=0.01).encode(["a dog", "a cat"])
    assert Flaky.seen == [503, 408, 503] and vectors.shape == (2, 32)


def test_retries_give_up_with_a_service_error(flaky):
    Flaky.plan = [503] * 10
    with pytest.raises(ServiceError, match="503"):
        Client(flaky, retries=2, backoff=0.01).encode(["a dog"])
    assert len(Flaky.seen) == 3


def test_a_server_that_is_not_there_is_a_service_error():
    with pytest.raises(ServiceError):
        Client("http://127.0.0.1:9", retries=1, backoff=0.01).encode(["a dog"])


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
