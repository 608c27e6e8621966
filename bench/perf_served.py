"""bench/perf.py's served side: real gunicorn (testkit.server) driven over HTTP, and its batches and GPU memory."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from perf_direct import Work
from urllib3 import encode_multipart_formdata

from testkit import jsonlog
from testkit.server import Server

ENDPOINT = "/syte_test/clip"


# --- GPU memory -------------------------------------------------------------------------------------


def gpu_memory() -> dict[int, float]:
    """GPU memory (MiB) per process, from nvidia-smi; empty where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {int(pid): float(mib) for pid, mib in (line.split(",") for line in out.splitlines() if "," in line)}


# --- clients ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """One request's body, encoded once up front so the client's own CPU time is not billed to the service."""

    body: bytes
    content_type: str
    path: str
    images: int
    texts: int

    @classmethod
    def build(cls, work: Work, encoding: str) -> Payload:
        fields: list[tuple[str, Any]] = [(f"image-{i}", (f"photo-{i}.jpg", data, "image/jpeg"))
                                         for i, data in enumerate(work.jpegs, 1)]
        fields += [(f"text-{i}", caption) for i, caption in enumerate(work.captions, 1)]
        body, content_type = encode_multipart_formdata(fields)
        path = ENDPOINT if encoding == "float" else f"{ENDPOINT}?encoding={encoding}"
        return cls(body, content_type, path, len(work.jpegs), len(work.captions))


def post(port: int, payload: Payload, request_id: str) -> tuple[float, int, bytes]:
    """One request on a fresh connection (sync workers close it anyway): latency up to the last body byte."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", payload.path, body=payload.body,
                           headers={"Content-Type": payload.content_type, "request_id": request_id})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    return time.perf_counter() - start, response.status, body


def load_clients(port: int, payload: Payload, requests: int, clients: int,
                 prefix: str) -> tuple[list[float], list[tuple[int, bytes]], float]:
    """`clients` threads share `requests` requests; returns latencies, responses and the wall time."""
    pending = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    responses: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []

    def client() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            try:
                latency, status, body = post(port, payload, f"{prefix}-{index}")
            except BaseException as exc:  # reported after the join, not lost in a thread
                errors.append(exc)
                return
            with lock:
                latencies.append(latency)
                responses.append((status, body))

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(clients)]
    wall_start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall_start
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed: {errors[0]!r}") from errors[0]
    return latencies, responses, wall


def check_responses(responses: list[tuple[int, bytes]], payload: Payload) -> np.ndarray:
    """Every answer must be a 200 with every vector and score; returns the first image (or text) vector."""
    expected = [f"image_{i}_vector" for i in range(1, payload.images + 1)]
    expected += [f"text_{i}_vector" for i in range(1, payload.texts + 1)]
    expected += [f"image_vector_{i}_similarity_score" for i in range(1, min(payload.images, payload.texts) + 1)]
    first = None
    for status, raw in responses:
        if status != 200:
            raise RuntimeError(f"the service answered {status}: {raw[:300]!r}")
        body = json.loads(raw)
        missing = [key for key in expected if key not in body]
        if missing:
            raise RuntimeError(f"the service's answer lacks {missing}: {sorted(body)}")
        if first is None:
            value = body[expected[0]]
            first = (np.frombuffer(base64.b64decode(value), "<f4") if isinstance(value, str)
                     else np.asarray(value, dtype=np.float32))
    return first


# --- the server ------------------------------------------------------------------------------------


def warm_workers(server: Server, payload: Payload, workers: int, clients: int, warmup: int) -> None:
    """Rounds of concurrent requests until each worker has served `warmup` of them (first calls are slow)."""
    if warmup < 1:
        return
    for _ in range(10 * max(1, warmup)):
        served = Counter(record["worker_pid"] for record in jsonlog.request_lines(server.log_records(), ENDPOINT))
        if len(served) >= workers and min(served.values()) >= warmup:
            return
        concurrency = max(workers, clients)  # batching workers also warm up at the batch sizes they will run
        _, responses, _ = load_clients(server.port, payload, concurrency, concurrency, "warmup")
        check_responses(responses, payload)
    print(f"note: not every worker served {warmup} warm-up requests; the first measured ones may be slower")


def batch_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind (image, text): how many forward passes, their rows, queue wait and run time."""
    summary = {}
    for name in sorted({record["kind"] for record in records}):
        mine = [record for record in records if record["kind"] == name]
        rows, wait, run = (np.asarray([record[key] for record in mine]) for key in ("rows", "wait_ms", "run_ms"))
        summary[name] = {"batches": len(mine), "mean_rows": round(float(rows.mean()), 1), "max_rows": int(rows.max()),
                         "wait_p50_ms": round(float(np.percentile(wait, 50)), 2),
                         "run_p50_ms": round(float(np.percentile(run, 50)), 2),
                         "run_p99_ms": round(float(np.percentile(run, 99)), 2)}
    return summary
