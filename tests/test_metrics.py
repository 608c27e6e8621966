"""GET /metrics: counts after known traffic, in one process and summed over real gunicorn workers."""

from __future__ import annotations

import base64
import os
import signal

import pytest
import requests
from conftest import image_bytes, post_clip

from testkit.metrics import samples, scrape, scrape_until, series, value
from testkit.server import gunicorn


def send_known_traffic(post, get) -> None:
    """2 good multipart requests (3 images, 2 texts), 1 bad one, 1 JSON rank (1 image, 2 texts), 1 unknown path."""
    jpeg = image_bytes()
    assert post("/syte_test/clip", files={"image-a": jpeg, "image-b": jpeg, "text-a": "a red square"}) == 200
    assert post("/syte_test/clip", files={"image-c": jpeg, "text-c": "a dog"}) == 200
    assert post("/syte_test/clip", files={"text-x": ""}) == 400
    rank = {"queries": [{"img_blob": base64.b64encode(jpeg).decode()}], "candidates": [{"text": "a"}, {"text": "b"}]}
    assert post("/rank", json=rank) == 200
    assert get("/nope") == 404


def check_counts(scraped: dict) -> None:
    assert value(scraped, "clipsvc_requests_total", endpoint="/syte_test/clip", method="POST", status="200") == 2
    assert value(scraped, "clipsvc_requests_total", endpoint="/syte_test/clip", method="POST", status="400") == 1
    assert value(scraped, "clipsvc_requests_total", endpoint="/rank", method="POST", status="200") == 1
    assert value(scraped, "clipsvc_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert value(scraped, "clipsvc_request_duration_seconds_count", endpoint="/syte_test/clip") == 3
    assert value(scraped, "clipsvc_items_encoded_total", kind="image") == 4
    assert value(scraped, "clipsvc_items_encoded_total", kind="text") == 4
    # One forward pass per kind per request without batching: 3 image passes (2+1+1 rows), 3 text passes.
    assert value(scraped, "clipsvc_batch_size_count", kind="image") == 3
    assert value(scraped, "clipsvc_batch_size_sum", kind="image") == 4
    assert value(scraped, "clipsvc_batch_size_bucket", kind="image", le="1.0") == 2


def test_counts_after_known_traffic_in_one_process(app, client):
    def post(path, files=None, json=None):
        return (post_clip(client, files) if json is None else client.post(path, json=json)).status_code

    send_known_traffic(post, lambda path: client.get(path).status_code)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    scraped = samples(response.get_data(as_text=True))
    check_counts(scraped)
    assert value(scraped, "clipsvc_model_load_seconds") > 0
    assert value(scraped, "clipsvc_requests_in_progress") == 1  # the scrape itself


def test_metrics_are_per_app_without_gunicorn(app, client, settings, encoder):
    from clipsvc.web.app import create_app

    post_clip(client, {"text-1": "counted here"})
    other = create_app(settings, encoder).test_client()
    scraped = samples(other.get("/metrics").get_data(as_text=True))
    assert value(scraped, "clipsvc_requests_total", endpoint="/syte_test/clip", method="POST", status="200") == 0


@pytest.fixture(scope="module")
def dir_server(model_dir, tmp_path_factory):
    """Two workers writing to an operator-chosen directory that holds a stale file from an earlier run."""
    metrics_dir = tmp_path_factory.mktemp("metrics")
    (metrics_dir / "counter_1.db").write_bytes(b"stale junk from a previous server")
    log = tmp_path_factory.mktemp("logs") / "gunicorn.log"
    with gunicorn(model_dir, log, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as server:
        yield server


def test_counts_are_summed_over_gunicorn_workers(dir_server):
    def post(path, files=None, json=None):
        if json is not None:
            return requests.post(dir_server.url + path, json=json, timeout=30).status_code
        return requests.post(dir_server.url + path, files={k: (k, v) for k, v in files.items()}, timeout=30).status_code

    send_known_traffic(post, lambda path: requests.get(dir_server.url + path, timeout=10).status_code)
    scraped = scrape_until(dir_server, lambda got: len(series(got, "clipsvc_model_load_seconds")) == 2)
    check_counts(scraped)
    loads = series(scraped, "clipsvc_model_load_seconds")
    assert len(loads) == 2 and all(v > 0 for v in loads.values()), loads  # one series per live worker
    assert value(scraped, "clipsvc_worker_restarts_total") == 0
    for _ in range(5):  # whichever worker answers the scrape, it reports the same sums
        again = scrape(dir_server)
        assert value(again, "clipsvc_items_encoded_total", kind="image") == 4


def test_a_killed_worker_is_counted_and_its_live_series_removed(dir_server):
    before = scrape(dir_server)
    pids = [int(dict(labels)["pid"]) for labels in series(before, "clipsvc_model_load_seconds")]
    images_before = value(before, "clipsvc_items_encoded_total", kind="image")
    os.kill(pids[0], signal.SIGKILL)
    def live(scraped: dict) -> set[int]:
        return {int(dict(labels)["pid"]) for labels in series(scraped, "clipsvc_model_load_seconds")}

    after = scrape_until(dir_server, lambda got: pids[0] not in live(got) and len(live(got)) == 2)
    assert pids[0] not in live(after) and len(live(after)) == 2, "the killed worker's series stayed, or no replacement"
    assert value(after, "clipsvc_worker_restarts_total") == 1
    # The dead worker's counts are history, not lost.
    assert value(after, "clipsvc_items_encoded_total", kind="image") == images_before


def test_the_master_makes_and_removes_its_own_metrics_directory(monkeypatch):
    from clipsvc.server import lifecycle

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(lifecycle, "_state", lifecycle.ServerState())
    directory = lifecycle.prepare_metrics_dir()
    try:
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory) and directory.is_dir()
    finally:
        lifecycle.remove_metrics_dir()
    assert not directory.exists()


def test_an_operators_metrics_directory_is_emptied_of_stale_files_and_kept(monkeypatch, tmp_path):
    from clipsvc.server import lifecycle

    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(lifecycle, "_state", lifecycle.ServerState())
    assert lifecycle.prepare_metrics_dir() == tmp_path
    lifecycle.remove_metrics_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
