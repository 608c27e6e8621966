"""The real server: gunicorn preforks two workers, each loads the model; logs are JSON lines only.

Most tests use the session's shared server (`served`, tests/conftest.py); those that stop it or need other
limits start their own."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch
from conftest import image_bytes

from clipsvc.encoder import precision
from clipsvc.server.request_id import REPLACED_HEADER
from clipsvc.settings import Settings
from testkit.faults import wait_for
from testkit.metrics import scrape_until, series, value
from testkit.server import gunicorn

SEED_TEXT = "Man staring at the moon, moon is made of mechanical parts"


def post(server, files, headers=None):
    return requests.post(server.url + "/syte_test/clip", files=files, headers=headers or {}, timeout=30)


def test_seed_request_over_http(served):
    response = post(served, {"image-1": ("moon.jpg", image_bytes(), "image/jpeg"), "text-1": (None, SEED_TEXT)},
                    {"request_id": "1"})
    assert response.status_code == 200
    assert response.headers["request_id"] == "1"  # survives gunicorn's header mapping
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"image_1_vector", "text_1_vector", "image_vector_1_similarity_score",
                                    "image_vector_1_cosine_similarity"}


def test_concurrent_requests_each_get_their_own_id(served):
    def one(i):
        files = {f"text-{i}": (None, f"caption number {i}"), f"image-{i}": ("x.png", image_bytes("PNG"), "image/png")}
        response = post(served, files, {"request_id": str(1000 + i)})
        return i, response

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(16)))
    for i, response in results:
        assert response.status_code == 200
        assert response.headers["request_id"] == str(1000 + i)
        assert f"text_{i}_vector" in response.json()


@pytest.mark.parametrize("files, status", [
    ({"image-1": ("x.jpg", b"not an image", "image/jpeg")}, 400),
    ({"unknown": (None, "x")}, 400),
    ({}, 400),
])
def test_bad_input_over_http_is_json(served, files, status):
    response = post(served, files or {"": (None, "")})
    assert response.status_code == status
    assert response.json()["error"]["status"] == status
    assert response.headers["request_id"]


@pytest.mark.parametrize("data, status, keys", [
    ({"text-1": SEED_TEXT, "text-2": "a dog & a cat"}, 200, {"text_1_vector", "text_2_vector"}),
    ({"text-1": "a dog", "image-1": "photo.jpg"}, 400, {"error"}),
])
def test_urlencoded_form_over_http(served, data, status, keys):
    """requests' data=dict, like curl -d and Postman's x-www-form-urlencoded: texts work, images are refused."""
    response = requests.post(served.url + "/syte_test/clip", data=data, headers={"request_id": "form-1"}, timeout=30)
    assert response.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert response.status_code == status and set(response.json()) == keys
    assert response.headers["request_id"] == "form-1"
    if status != 200:
        assert response.json()["error"]["code"] == "image_not_a_file"


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_urlencoded_body_is_413_json(served, chunked):
    """werkzeug would read a urlencoded body up to CLIP_MAX_REQUEST_MB; the form memory limit applies instead."""
    body = b"text-1=" + b"a" * 600_000
    data = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    response = requests.post(served.url + "/syte_test/clip", data=data,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "form_too_large"


def test_probes_and_meta(served):
    assert requests.get(served.url + "/livez", timeout=5).json() == {"status": "alive"}
    assert requests.get(served.url + "/readyz", timeout=5).status_code == 200
    meta = requests.get(served.url + "/meta", timeout=5).json()
    assert meta["embedding_dim"] == 32 and meta["device"] == "cpu"
    assert (meta["request_threads"], meta["torch_threads"]) == (Settings().request_threads, 1)  # CLIP_THREADS: default
    # CLIP_PRECISION=auto: bf16 where this CPU has it natively, else fp32; the guard ran for bf16.
    expected = precision.resolve("auto", torch.device("cpu"))
    assert meta["precision"] == expected and not meta["precision_fallback"]
    assert meta["dtype"] == {"bf16": "bfloat16", "fp32": "float32"}[expected]
    assert (meta["precision_cosine"] is None) == (expected == "fp32")


def test_both_workers_loaded_the_model_and_every_line_is_json(served):
    requests.get(served.url + "/livez", headers={"request_id": "log-check"}, timeout=5)
    time.sleep(0.2)
    lines = served.log_lines()
    records = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    loaded = [r for r in records if r.get("event") == "model_loaded"]
    assert len({r["pid"] for r in loaded}) == 2
    assert all(r["device"] == "cpu" and r["threads"] == 1 and "load_seconds" in r for r in loaded)
    assert all(r["request_threads"] == Settings().request_threads for r in loaded)
    request_lines = [r for r in records if r["logger"] == "clipsvc.request"]
    mine = [r for r in request_lines if r["request_id"] == "log-check"]
    assert len(mine) == 1
    assert {"method", "path", "status", "duration_ms", "images", "texts", "worker_pid", "counters"} <= set(mine[0])
    assert set(mine[0]["counters"]) == {"requests", "images", "texts", "errors"}


# (request id sent, status, the line's original_request_id and error_code; None: not in the line)
REQUEST_LINES = [
    ("order 42", {"text-1": (None, SEED_TEXT)}, 200, "order 42", None),
    ("log-ok-1", {"unknown": (None, "x")}, 400, None, "unknown_key"),
    ("tab\there", {"image-1": ("x.jpg", b"not an image", "image/jpeg")}, 400, "tab\\there", "unsupported_image"),
]


@pytest.mark.parametrize("sent, files, status, original, error_code", REQUEST_LINES)
def test_a_request_line_names_the_client_the_error_code_and_a_replaced_id(served, sent, files, status, original,
                                                                          error_code):
    """Through gunicorn: the client is the connection's address whatever X-Forwarded-For claims (no proxies are
    trusted by default); an id that cannot be echoed is replaced and the request served."""
    response = post(served, files, {"request_id": sent, "X-Forwarded-For": "6.6.6.6"})
    assert response.status_code == status
    request_id = response.headers["request_id"]
    assert (request_id == sent) == (original is None) == (REPLACED_HEADER not in response.headers)
    (line,) = wait_for(lambda: [r for r in served.log_records() if r.get("request_id") == request_id], 10, "its line")
    assert (line["client"], line["status"]) == ("127.0.0.1", status)
    assert (line.get("original_request_id"), line.get("error_code")) == (original, error_code)


def test_sigterm_stops_cleanly(model_dir, tmp_path):
    with gunicorn(model_dir, tmp_path / "log") as server:
        assert server.stop() == 0


def test_gunicorns_plain_gthread_worker_serves_too(model_dir, tmp_path):
    """docs/deployment.md's fallback for a gunicorn the gthread contract refuses: GUNICORN_CMD_ARGS overrides the
    config's worker class, post_fork has nothing to configure, and the service answers with its JSON logs."""
    with gunicorn(model_dir, tmp_path / "log", GUNICORN_CMD_ARGS="--worker-class gthread") as server:
        response = post(server, {"text-1": (None, SEED_TEXT)}, {"request_id": "plain"})
        assert response.status_code == 200 and response.headers["request_id"] == "plain"
        assert "text_1_vector" in response.json()
        assert server.stop() == 0
    records = [json.loads(line) for line in server.log_lines()]  # every line JSON
    assert "Using worker: gthread" in [r["message"] for r in records]
    assert not [r for r in records if r["level"] in ("error", "critical")]


@pytest.fixture(scope="module")
def small_limits(model_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("gunicorn-limits") / "server.log"
    with gunicorn(model_dir, log_path, CLIP_MAX_REQUEST_MB="1", CLIP_MAX_IMAGE_MB="0.5") as server:
        yield server


def multipart(size: int) -> tuple[bytes, str]:
    from urllib3 import encode_multipart_formdata

    return encode_multipart_formdata({"image-1": ("x.jpg", b"\0" * size)})


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body_is_413_json(small_limits, chunked):
    body, content_type = multipart(3 * 1024 * 1024)
    data = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    response = requests.post(small_limits.url + "/syte_test/clip", data=data,
                             headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_oversized_image_is_413_json(small_limits):
    body, content_type = multipart(700 * 1024)
    response = requests.post(small_limits.url + "/syte_test/clip", data=body,
                             headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 413 and response.json()["error"]["field"] == "image-1"


def test_metrics_are_summed_over_workers_by_default(served):
    """No PROMETHEUS_MULTIPROC_DIR given: the master makes its own, and both workers report into it."""
    scraped = scrape_until(served, lambda got: len(series(got, "clipsvc_model_load_seconds")) == 2)
    assert len(series(scraped, "clipsvc_model_load_seconds")) == 2, scraped
    assert ("clipsvc_worker_restarts_total", frozenset()) in scraped
    assert value(scraped, "clipsvc_worker_restarts_total") == 0
