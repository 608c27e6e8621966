"""bench/perf.py's served side: real gunicorn on a loopback port, driven over HTTP, and what its processes hold."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gunicorn_server import Server, free_port, gunicorn_command, gunicorn_env
from perf_direct import Work
from urllib3 import encode_multipart_formdata

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = "/syte_test/clip"
MIB = 1024 * 1024


# --- memory -----------------------------------------------------------------------------------------


def smaps_rollup(pid: int | str) -> dict[str, float]:
    """RSS and PSS (with PSS's anonymous and file parts) in MiB: PSS splits shared pages fairly among workers."""
    fields = {"Rss": "rss_mib", "Pss": "pss_mib", "Pss_Anon": "pss_anon_mib", "Pss_File": "pss_file_mib"}
    memory = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            memory[fields[name]] = round(int(rest.split()[0]) * 1024 / MIB, 1)
    return memory


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (gunicorn's workers), from /proc, without psutil."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


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


# --- the server -------------------------------------------------------------------------------------


def log_records(lines: list[str]) -> list[dict[str, Any]]:
    """The server's JSON log lines as dicts (gunicorn may print the odd plain line)."""
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def request_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's per-request log lines for the endpoint (worker pid, in-worker duration)."""
    return [record for record in records if record.get("message") == "request" and record.get("path") == ENDPOINT]


def wait_all_loaded(server: Server, workers: int, timeout: float = 600) -> dict[int, int]:
    """Wait for every worker's model_loaded log line (/readyz: any one worker); returns {pid: torch threads}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.log_path.read_text()}")
        loaded = {record["pid"]: record.get("threads") for record in log_records(server.log_lines())
                  if record.get("event") == "model_loaded"}
        if len(loaded) >= workers:
            return loaded
        time.sleep(0.2)
    raise TimeoutError(f"only some of {workers} workers loaded the model in {timeout}s:\n{server.log_path.read_text()}")


def warm_workers(server: Server, payload: Payload, workers: int, clients: int, warmup: int) -> None:
    """Rounds of concurrent requests until each worker has served `warmup` of them (first calls are slow)."""
    if warmup < 1:
        return
    for _ in range(10 * max(1, warmup)):
        served = Counter(record["worker_pid"] for record in request_records(log_records(server.log_lines())))
        if len(served) >= workers and min(served.values()) >= warmup:
            return
        concurrency = max(workers, clients)  # batching workers also warm up at the batch sizes they will run
        _, responses, _ = load_clients(server.port, payload, concurrency, concurrency, "warmup")
        check_responses(responses, payload)
    print(f"note: not every worker served {warmup} warm-up requests; the first measured ones may be slower")


@contextmanager
def serve(model_dir: Path, log_path: Path, settings: dict[str, str]) -> Iterator[Server]:
    """`gunicorn -c gunicorn.conf.py wsgi:app` from the repo root on a free loopback port; SIGTERM (then kill)
    afterwards.

    Unlike tests/gunicorn_server.gunicorn() it does not poll /readyz with a 1 s timeout: a big model's
    workers take longer than that to load, so readiness is read from their model_loaded log lines.
    """
    port = free_port()
    env = gunicorn_env(model_dir, port, **settings)
    with open(log_path, "w") as log:
        process = subprocess.Popen(gunicorn_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, port, log_path)
    try:
        yield server
    finally:
        try:
            server.stop(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
