"""Idle, trickling and slow-but-honest clients against real gunicorn with the default settings.

One timeline per server, so the defaults' 20 s body deadline is waited for once: 100 idle connections and 8
clients trickling a byte a second, a normal request among them, then more tricklers than the server has
threads, and an honest upload at 1 Mbit/s that takes longer than the body deadline. Figures are printed
(pytest -s) and kept with record_property; docs/reliability.md quotes them.
"""

from __future__ import annotations

import http.client
import io
import json
import runpy
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests
from PIL import Image
from urllib3 import encode_multipart_formdata

from clipsvc.settings import Settings
from testkit import ROOT, procs
from testkit.faults import report
from testkit.rawhttp import multipart_head, parse_reply, read_reply, read_to_close, server_closed
from testkit.server import TEST_WORKERS, gunicorn

DEFAULTS = Settings()
THREADS = TEST_WORKERS * DEFAULTS.request_threads
BODY_DEADLINE = DEFAULTS.client_timeout_s


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """Every setting at its default (the harness pins CLIP_TORCH_THREADS=1; here it is unset again)."""
    log_path = tmp_path_factory.mktemp("slow-clients") / "server.log"
    with gunicorn(model_dir, log_path, CLIP_TORCH_THREADS="") as server:
        yield server


def text_request(server, request_id: str, timeout: float = 60) -> tuple[int, float]:
    started = time.monotonic()
    response = requests.post(server.url + "/syte_test/clip", files={"text-1": (None, "a dog on a sofa")},
                             headers={"request_id": request_id}, timeout=timeout)
    assert response.headers["request_id"] == request_id
    return response.status_code, time.monotonic() - started


@dataclass
class Trickler:
    """Sends its headers at once, then its body a byte a second; keeps whatever the server answers."""

    server: object
    request_id: str
    reply: bytes = b""
    closed_after: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Trickler:
        body, content_type = encode_multipart_formdata({"text-1": "x" * 2000})
        self.sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        self.sock.sendall(multipart_head(self.server.port, body, content_type, self.request_id))
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(body,), daemon=True)
        self.thread.start()
        return self

    def _run(self, body: bytes) -> None:
        self.sock.settimeout(1)
        for byte in body:
            if self._stop.is_set():
                break
            try:
                self.sock.sendall(bytes([byte]))
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            self.reply += chunk
            if not chunk:
                break
        self.closed_after = time.monotonic() - self.started

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def steady_upload(server, payload: bytes, rate: int) -> tuple[int, float]:
    """An honest slow client: a multipart body sent at `rate` bytes a second, in 10 pieces a second."""
    body, content_type = encode_multipart_formdata({"image-1": ("photo.jpg", payload, "image/jpeg")})
    piece = rate // 10
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(multipart_head(server.port, body, content_type, "steady-1"))
        for offset in range(0, len(body), piece):
            sock.sendall(body[offset:offset + piece])
            time.sleep(max(0.0, started + (offset + piece) / rate - time.monotonic()))
        raw = read_reply(sock)
    return parse_reply(raw)[0], time.monotonic() - started


def noise_jpeg(size: tuple[int, int], seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_idle_and_trickling_clients_do_not_stall_normal_requests(server, record_property):
    """The issue's scenario in one timeline, with the default deadlines (5 s headers, 20 s + 500 B/s body)."""
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(100)]
    tricklers = [Trickler(server, f"trickle-{i}").start() for i in range(8)]
    with ThreadPoolExecutor(2) as pool:
        # An honest ~3 MB upload at 1 Mbit/s: about 24 s, longer than the 20 s deadline, but steady.
        upload = pool.submit(steady_upload, server, noise_jpeg((1900, 1425)), 125_000)
        time.sleep(0.5)
        status, first_answer = text_request(server, "normal-1")
        assert status == 200
        assert first_answer < 2, f"a normal request took {first_answer:.2f} s beside idle and trickling clients"

        # More tricklers than the server has request threads: a new request waits for the body deadline.
        flood = [Trickler(server, f"flood-{i}").start() for i in range(THREADS - len(tricklers) + 2)]
        flood_started = min(t.started for t in flood)
        normal = pool.submit(text_request, server, "normal-2")

        # Meanwhile the idle connections are closed by the server within a few seconds.
        time.sleep(DEFAULTS.header_timeout_s + 1)
        closed = sum(server_closed(sock) for sock in idle)
        assert closed == len(idle)

        status, _ = normal.result(timeout=BODY_DEADLINE + 10)
        answered_after = time.monotonic() - flood_started
        assert status == 200
        assert answered_after <= BODY_DEADLINE + 5
        upload_status, upload_seconds = upload.result(timeout=60)
    assert upload_status == 200 and upload_seconds > BODY_DEADLINE

    for trickler in tricklers + flood:
        trickler.thread.join(0.5 if trickler in flood else BODY_DEADLINE)
        trickler.stop()
    answered = [t for t in tricklers + flood if t.reply]
    assert len(answered) >= THREADS - 1  # every one that got a thread was cut off by now; the rest were queued
    for trickler in answered:
        status, headers, body = parse_reply(trickler.reply)
        assert status == 408 and headers["request_id"] == trickler.request_id, trickler.reply[:200]
        assert headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "request_timeout"
    cut_after = sorted(round(t.closed_after, 1) for t in answered)
    assert BODY_DEADLINE - 1 <= cut_after[0] and cut_after[len(tricklers) - 1] <= BODY_DEADLINE + 3

    request_lines = [r for r in server.log_records() if r.get("message") == "request"]
    assert request_lines and not [r for r in request_lines if r["status"] >= 500]
    assert not [r for r in server.log_records() if r.get("level") in ("error", "critical")]
    report(record_property, "slow clients", first_normal_answer_s=round(first_answer, 3),
           normal_answer_during_flood_s=round(answered_after, 2), tricklers_cut_after_s=cut_after,
           steady_upload_s=round(upload_seconds, 1), idle_closed=closed)


def peak_rss_mib(pid: int) -> float:
    return procs.status_kib(pid, "VmHWM") / 1024


RSS_BOUND_MIB = 400  # docs/reliability.md: 16 concurrent 20 MB uploads, peak RSS growth per worker


def test_concurrent_large_uploads_keep_worker_memory_bounded(server, record_property):
    """16 uploads of a 19 MB JPEG at once: each worker's peak RSS grows by less than the documented bound."""
    photo = noise_jpeg((4800, 3600))
    assert 18 * 2**20 < len(photo) <= DEFAULTS.max_image_bytes
    pids = server.worker_pids()
    for _ in range(4):  # warm both workers' allocators on one large image first
        requests.post(server.url + "/syte_test/clip", files={"image-1": ("p.jpg", photo)}, timeout=60)
    before = {pid: peak_rss_mib(pid) for pid in pids}
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda i: requests.post(server.url + "/syte_test/clip", timeout=120,
                                                         files={"image-1": ("p.jpg", photo)}).status_code, range(16)))
    assert statuses == [200] * 16
    growth = {pid: round(peak_rss_mib(pid) - before[pid], 1) for pid in pids}
    report(record_property, "16 concurrent 20 MB uploads", photo_mib=round(len(photo) / 2**20, 1),
           peak_rss_before_mib={p: round(v) for p, v in before.items()}, peak_rss_growth_mib=growth)
    assert max(growth.values()) < RSS_BOUND_MIB


def test_a_connection_that_sends_half_its_headers_gets_a_json_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /syte_test/clip HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        raw, closed = read_to_close(sock, timeout=DEFAULTS.header_timeout_s + 5)
    assert closed and DEFAULTS.header_timeout_s - 0.5 <= time.monotonic() - started <= DEFAULTS.header_timeout_s + 3
    status, headers, body = parse_reply(raw)
    assert status == 408 and headers["content-type"] == "application/json" and headers["request_id"]
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_kept_alive_connections_serve_several_requests_then_close_when_idle(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body, content_type = encode_multipart_formdata({"text-1": "a dog"})
    for i in range(3):
        connection.request("POST", "/syte_test/clip", body, {"Content-Type": content_type, "request_id": f"ka-{i}"})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("request_id") == f"ka-{i}"
        response.read()
    sock = connection.sock
    time.sleep(gunicorn_keepalive() + 1)
    assert server_closed(sock)


def gunicorn_keepalive() -> float:
    """gunicorn.conf.py's keepalive, read from the file the server runs."""
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"), run_name="gunicorn_conf")
    return config["keepalive"]
