"""A forward pass that outlasts gunicorn's worker timeout: the request gets a JSON 503 and the worker is replaced."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from conftest import image_bytes

from clipsvc.encoder.standin import build_standin
from testkit.faults import report, wait_for
from testkit.jsonlog import epoch
from testkit.server import gunicorn


@pytest.fixture(scope="module")
def vit_b_32(tmp_path_factory) -> Path:
    """A model whose forward passes take real time on this CPU: ViT-B/32's architecture, random weights."""
    return build_standin(tmp_path_factory.mktemp("models") / "clip-vit-b-32", arch="vit-b-32")


def test_a_forward_pass_past_the_worker_timeout_gets_the_worker_replaced(vit_b_32, tmp_path, record_property):
    """gthread workers heartbeat from their main loop, so the inference thread could hang unseen; the worker
    withholds its heartbeat while a forward pass runs on, and gunicorn's timeout replaces it as before."""
    images = {f"image-{i}": (f"{i}.png", image_bytes("PNG", size=(224, 224), color=(i, 0, 0)), "image/png")
              for i in range(128)}  # ~5 s of forward pass with one torch thread, against a 1 s timeout
    # fp32: the pass must outlast the timeout, and bf16 (auto, where the CPU has it) is ~4x faster.
    with gunicorn(vit_b_32, tmp_path / "server.log", WEB_CONCURRENCY="1", CLIP_TORCH_THREADS="1",
                  CLIP_WORKER_TIMEOUT="1", CLIP_MAX_ITEMS="128", CLIP_PRECISION="fp32") as server:
        before = wait_for(lambda: server.loaded_pids(), 60, "the worker's model_loaded line")
        started, started_at = time.monotonic(), time.time()
        response = requests.post(server.url + "/syte_test/clip", files=images, headers={"request_id": "huge-1"},
                                 timeout=60)
        answered_after = time.monotonic() - started
        assert response.status_code == 503 and response.headers["request_id"] == "huge-1"
        assert response.json()["error"]["code"] == "worker_timeout" and response.headers["Retry-After"] == "5"
        wait_for(lambda: [r for r in server.log_records()
                          if "WORKER TIMEOUT" in r["message"] and epoch(r) >= started_at],
                 10, "gunicorn's WORKER TIMEOUT line")
        replacement = wait_for(lambda: server.loaded_pids() - before, 60, "the replacement's model_loaded line")
        text = requests.post(server.url + "/syte_test/clip", files={"text-1": (None, "after")}, timeout=30)
    report(record_property, "stuck forward pass", answered_after_s=round(answered_after, 2),
           replacement=sorted(replacement))
    assert text.status_code == 200
    assert answered_after < 10
