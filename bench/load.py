"""Bounded load and soak test of the real gunicorn server on loopback: no lost or crossed responses, no leaks.

    python bench/load.py [--model-dir DIR] [--workers 2] [--clients 4] [--duration 20] [--json OUT]

Starts `gunicorn -c gunicorn.conf.py wsgi:app` on a free 127.0.0.1 port through testkit.server (a tiny
stand-in model when no --model-dir is given), waits for every worker, warms them up, then drives the server
from concurrent clients with a fixed mix of valid and invalid requests until the duration or the request cap
runs out. Each response is checked
against the request that caused it; worker RSS is compared between the end of the warm-up and the end.
Exits 1 on any 5xx, lost, crossed or non-JSON response, unexpected status, or RSS growth of 10% or more.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # clipsvc and the harness that runs the server (testkit), from the repo root
from clipsvc.settings import Settings  # noqa: E402
from testkit import jsonlog, procs  # noqa: E402
from testkit.server import serve  # noqa: E402

CLIP_PATH = "/syte_test/clip"
MAX_RSS_GROWTH_PCT = 10.0
# oneDNN's packed image tower builds state for each batch shape it meets, and each request thread its allocator
# arena: a worker's RSS settles ~50 MB up over its first ~100 requests, then stays flat. 30 left part of that
# inside the measurement (6-12 % growth with 30, 2-3 % with 100, on the tiny stand-in).
WARMUP_PER_WORKER = 100
SERVER_START_S = 120  # every worker loading the model (a CPU ViT-L/14 takes a while)
REQUEST_TIMEOUT_S = 120  # a CPU ViT-L/14 needs seconds for a three-pair request
# The same input gives the same unit vector whatever it was batched with: exactly in fp32; in bf16 (CLIP_PRECISION=auto
# on CPUs with it) to a cosine of ~0.99998, since the rows a pass is batched with change its rounding. Different
# inputs are far below this (the tiny stand-in's closest two captions: 0.963).
SAME_VECTOR_COSINE = 0.9995
CAPTIONS = (
    "Man staring at the moon, moon is made of mechanical parts",
    "a red square on a white background",
    "two dogs playing in the snow",
    "a bowl of fruit on a wooden table",
    "an old lighthouse at sunset",
)


def _picture(index: int, fmt: str) -> bytes:
    """A small, distinct test picture; a palette of these lets responses be compared across requests."""
    hue = [(200, 40, 40), (40, 160, 60), (30, 60, 200), (220, 200, 40)][index]
    image = Image.new("RGB", (320, 240), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20 + 40 * index, 30, 180 + 30 * index, 200 - 20 * index), fill=hue)
    draw.ellipse((200 - 30 * index, 60, 300, 160 + 15 * index), fill=hue[::-1])
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


PICTURES = {(fmt, i): _picture(i, fmt) for fmt in ("JPEG", "PNG") for i in range(4)}


# --- The request mix ---------------------------------------------------------------------------------


@dataclass
class Planned:
    """One request to send and everything its response must match."""

    seq: int
    kind: str
    request_id: str
    method: str = "POST"
    files: list[tuple[str, tuple]] | None = None
    data: bytes | None = None
    json_body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    error_code: str | None = None
    error_field: str | None = None
    keys: list[str] = field(default_factory=list)  # 200 only: the body's keys, in order
    contents: dict[str, str] = field(default_factory=dict)  # vector key -> which picture or caption it is of
    pairs: list[str] = field(default_factory=list)  # ids sent as both image and text


def _image_part(item_id: str, seq: int, fmt: str) -> tuple[tuple[str, tuple], str]:
    index = seq % 4
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return (f"image-{item_id}", (f"p{index}.{fmt.lower()}", PICTURES[fmt, index], mime)), f"{fmt}:{index}"


def _text_part(item_id: str, seq: int) -> tuple[tuple[str, tuple], str]:
    index = seq % len(CAPTIONS)
    return (f"text-{item_id}", (None, CAPTIONS[index])), f"caption:{index}"


def _valid(plan: Planned, items: list[tuple[str, str | None, bool]]) -> Planned:
    """Fill a 200 plan from (id, image format or None, with text) items, in the order they are sent."""
    plan.files = []
    for n, (item_id, fmt, with_text) in enumerate(items):
        if fmt is not None:
            part, content = _image_part(item_id, plan.seq + n, fmt)
            plan.files.append(part)
            plan.keys.append(f"image_{item_id}_vector")
            plan.contents[f"image_{item_id}_vector"] = content
        if with_text:
            part, content = _text_part(item_id, plan.seq + n)
            plan.files.append(part)
            plan.keys.append(f"text_{item_id}_vector")
            plan.contents[f"text_{item_id}_vector"] = content
        if fmt is not None and with_text:
            plan.keys += [f"image_vector_{item_id}_similarity_score", f"image_vector_{item_id}_cosine_similarity"]
            plan.pairs.append(item_id)
    return plan


def _invalid(plan: Planned, status: int, code: str, error_field: str | None, **request: object) -> Planned:
    plan.status, plan.error_code, plan.error_field = status, code, error_field
    for name, value in request.items():
        setattr(plan, name, value)
    return plan


def _garbage(p: Planned, i: str, words: int) -> Planned:
    junk = b"this is not an image " * 8 + p.request_id.encode()
    return _invalid(p, 400, "unsupported_image", f"image-{i}",
                    files=[(f"image-{i}", ("photo.jpg", junk, "image/jpeg")), _text_part(i, p.seq)[0]])


def _unknown_key(p: Planned, i: str, words: int) -> Planned:
    return _invalid(p, 400, "unknown_key", f"bogus_{i}", files=[_text_part(i, p.seq)[0], (f"bogus_{i}", (None, "x"))])


def _empty(p: Planned, i: str, words: int) -> Planned:
    boundary = f"empty{i}"
    return _invalid(p, 400, "empty_request", None, data=f"--{boundary}--\r\n".encode(),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def _long_text(p: Planned, i: str, words: int) -> Planned:
    return _invalid(p, 400, "text_too_long", f"text-{i}", files=[(f"text-{i}", (None, " ".join(["word"] * words)))])


def _json_body(p: Planned, i: str, words: int) -> Planned:
    return _invalid(p, 415, "unsupported_media_type", "Content-Type", json_body={f"text-{i}": CAPTIONS[0]})


def _wrong_method(p: Planned, i: str, words: int) -> Planned:
    return _invalid(p, 405, "method_not_allowed", None, method="GET")


# Each kind builds a plan from (plan, item id, words in a too-long text). Deterministic: request n is MIX[n % len].
KINDS: dict[str, Callable[[Planned, str, int], Planned]] = {
    "pair_jpeg": lambda p, i, w: _valid(p, [(i, "JPEG", True)]),
    "pair_png": lambda p, i, w: _valid(p, [(i, "PNG", True)]),
    "text_only": lambda p, i, w: _valid(p, [(i, None, True)]),
    "image_only": lambda p, i, w: _valid(p, [(i, "PNG" if p.seq % 2 else "JPEG", False)]),
    "three_pairs": lambda p, i, w: _valid(p, [(i + "a", "JPEG", True), (i + "b", "PNG", True),
                                              (i + "c", "JPEG", True)]),
    "garbage_image": _garbage,
    "unknown_key": _unknown_key,
    "empty_request": _empty,
    "long_text": _long_text,
    "json_body": _json_body,
    "wrong_method": _wrong_method,
}
MIX = ("pair_jpeg", "text_only", "garbage_image", "pair_png", "image_only", "unknown_key", "three_pairs",
       "pair_jpeg", "empty_request", "text_only", "long_text", "pair_png", "json_body", "image_only",
       "wrong_method")


def plan_request(seq: int, tag: str, max_words: int) -> Planned:
    """Request number `seq` of the mix, with a request_id and item ids that no other request shares."""
    kind = MIX[seq % len(MIX)]
    plan = Planned(seq=seq, kind=kind, request_id=f"load-{tag}-{seq}")
    plan = KINDS[kind](plan, f"r{seq}", max_words + 1)
    plan.headers["request_id"] = plan.request_id
    return plan


# --- Sending and checking ----------------------------------------------------------------------------


@dataclass
class Result:
    """What happened to one request: its response's status, latency and every problem found with it."""

    kind: str
    request_id: str
    expected: int
    status: int | None = None  # None: no response at all (lost)
    latency_ms: float = 0.0
    is_json: bool = False
    problems: dict[str, str] = field(default_factory=dict)  # category -> detail


class Checker:
    """Checks responses against their requests, and vectors against the first ones seen for the same input."""

    def __init__(self, embedding_dim: int):
        self.dim = embedding_dim
        self._reference: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, plan: Planned, response: requests.Response, result: Result) -> None:
        """Record every way `response` differs from what `plan` must get back."""
        problems = result.problems
        if response.status_code >= 500:
            problems["5xx"] = f"status {response.status_code}"
        if response.status_code != plan.status:
            problems["unexpected_status"] = f"{response.status_code}, expected {plan.status}"
        echoed = response.headers.get("request_id")
        if echoed != plan.request_id:
            problems["crossed"] = f"request_id header {echoed!r}"
        try:
            body = response.json()
            result.is_json = response.headers.get("Content-Type", "").startswith("application/json")
        except ValueError:
            body = None
        if not result.is_json:
            problems["non_json"] = f"{response.headers.get('Content-Type')}: {response.text[:80]!r}"
            return
        if response.status_code == 200 and plan.status == 200:
            self._check_embeddings(plan, body, problems)
        elif response.status_code != 200:
            self._check_error(plan, response.status_code, body, problems)

    def _check_error(self, plan: Planned, status: int, body: object, problems: dict[str, str]) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or error.get("status") != status:
            problems["bad_body"] = f"not an error body: {str(body)[:80]}"
        elif plan.error_field and plan.error_field != "Content-Type" and error.get("field") != plan.error_field:
            problems["crossed"] = f"error about {error.get('field')!r}, expected {plan.error_field!r}"
        elif plan.error_code and (error.get("code"), error.get("field")) != (plan.error_code, plan.error_field):
            problems["bad_body"] = f"error {error.get('code')}/{error.get('field')}, expected {plan.error_code}"

    def _check_embeddings(self, plan: Planned, body: object, problems: dict[str, str]) -> None:
        if not isinstance(body, dict):
            problems["bad_body"] = "not an object"
            return
        foreign = [key for key in body if key not in plan.keys]
        if foreign:
            problems["crossed"] = f"keys of another request: {foreign[:3]}"
        if list(body) != plan.keys and not foreign:
            problems["bad_body"] = f"keys {list(body)[:6]}, expected {plan.keys[:6]}"
        for key, content in plan.contents.items():
            vector = body.get(key)
            if not (isinstance(vector, list) and len(vector) == self.dim and all(isinstance(x, float) for x in vector)):
                problems["bad_body"] = f"{key} is not {self.dim} floats"
                return
            if abs(math.sqrt(sum(x * x for x in vector)) - 1) > 1e-3:
                problems["bad_body"] = f"{key} is not unit length"
            with self._lock:
                reference = self._reference.setdefault(content, vector)
            if sum(a * b for a, b in zip(vector, reference, strict=True)) < SAME_VECTOR_COSINE:
                problems["crossed"] = f"{key} is not the vector of {content}"
        for item_id in plan.pairs:
            cosine = body.get(f"image_vector_{item_id}_cosine_similarity")
            score = body.get(f"image_vector_{item_id}_similarity_score")
            image, text = body[f"image_{item_id}_vector"], body[f"text_{item_id}_vector"]
            dot = sum(a * b for a, b in zip(image, text, strict=True))
            if not (isinstance(score, int) and 0 <= score <= 100 and isinstance(cosine, float)):
                problems["bad_body"] = f"pair {item_id}: score {score!r}, cosine {cosine!r}"
            elif abs(cosine - dot) > 1e-3:
                problems["crossed"] = f"pair {item_id}: cosine {cosine} is not its vectors' {dot:.6f}"


def send(session: requests.Session, url: str, plan: Planned, checker: Checker) -> Result:
    """Send one planned request and check what comes back; no response at all is `lost`."""
    result = Result(plan.kind, plan.request_id, plan.status)
    start = time.perf_counter()
    try:
        response = session.request(plan.method, url + CLIP_PATH, files=plan.files, data=plan.data, json=plan.json_body,
                                   headers=plan.headers, timeout=REQUEST_TIMEOUT_S)
    except requests.RequestException as exc:
        result.latency_ms = (time.perf_counter() - start) * 1000
        result.problems["lost"] = f"{type(exc).__name__}: {exc}"[:200]
        return result
    result.latency_ms = (time.perf_counter() - start) * 1000
    result.status = response.status_code
    checker.check(plan, response, result)
    return result


def drive(url: str, checker: Checker, clients: int, duration: float, max_requests: int, first_seq: int, tag: str,
          max_words: int) -> tuple[list[Result], float]:
    """Send requests first_seq, first_seq+1, ... from `clients` threads until time or the count runs out."""
    lock = threading.Lock()
    state = {"next": first_seq}
    limit = first_seq + max_requests
    results: list[Result] = []
    deadline = time.monotonic() + duration

    def client() -> None:
        with requests.Session() as session:
            session.trust_env = False  # no proxy from the environment: straight to loopback
            while time.monotonic() < deadline:
                with lock:
                    seq = state["next"]
                    if seq >= limit:
                        return
                    state["next"] += 1
                results.append(send(session, url, plan_request(seq, tag, max_words), checker))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients, thread_name_prefix="client") as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()  # a bug in the client code fails the run instead of vanishing
    return results, time.perf_counter() - start


# --- The workers' memory ------------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB, or None once it is gone."""
    return procs.status_kib(pid, "VmRSS")


class RssSampler:
    """Peak RSS of the given workers, sampled in a background thread while the load runs."""

    def __init__(self, pids: list[int], every: float = 0.5):
        self.peak = {pid: rss_kib(pid) or 0 for pid in pids}
        self._every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            for pid in self.peak:
                self.peak[pid] = max(self.peak[pid], rss_kib(pid) or 0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def request_log_counts(log_path: Path) -> tuple[Counter, dict[str, int], int]:
    """How often each request_id has a per-request line in the server log, its logged status, non-JSON lines."""
    lines = jsonlog.read_lines(log_path)
    records = jsonlog.parse(lines)
    counts: Counter = Counter()
    statuses: dict[str, int] = {}
    for record in jsonlog.request_lines(records):
        counts[record.get("request_id")] += 1
        statuses[record.get("request_id")] = record.get("status")
    return counts, statuses, len(lines) - len(records)


# --- Summary -----------------------------------------------------------------------------------------

CHECKS = ("5xx", "lost", "crossed", "non_json", "unexpected_status", "bad_body", "log_mismatch")


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)], 2)


def check_log(results: list[Result], counts: Counter, statuses: dict[str, int]) -> None:
    """Every request the client got an answer to was handled exactly once by the server, with that status."""
    for result in results:
        n = counts.get(result.request_id, 0)
        if n != 1 and "lost" not in result.problems:
            result.problems["log_mismatch"] = f"{n} request log lines"
        elif n == 1 and result.status is not None and statuses[result.request_id] != result.status:
            result.problems["log_mismatch"] = f"logged status {statuses[result.request_id]}"


def summarize(results: list[Result]) -> dict:
    """Counts per status, kind and problem, and latency percentiles for valid and invalid requests."""
    valid = [r.latency_ms for r in results if r.expected == 200 and r.status is not None]
    invalid = [r.latency_ms for r in results if r.expected != 200 and r.status is not None]
    kinds: dict[str, dict] = {}
    for r in results:
        entry = kinds.setdefault(r.kind, {"expected": r.expected, "count": 0, "statuses": {}})
        entry["count"] += 1
        entry["statuses"][str(r.status)] = entry["statuses"].get(str(r.status), 0) + 1
    return {
        "requests": len(results),
        "status_counts": dict(sorted(Counter(str(r.status) for r in results).items())),
        "kinds": kinds,
        **{name: sum(name in r.problems for r in results) for name in CHECKS},
        "latency_ms": {"valid": {"p50": percentile(valid, 50), "p99": percentile(valid, 99)},
                       "invalid": {"p50": percentile(invalid, 50), "p99": percentile(invalid, 99)}},
    }


def run_load(model_dir: Path, workers: int = 2, clients: int = 4, duration: float = 20.0, max_requests: int = 20_000,
             warmup_per_worker: int = WARMUP_PER_WORKER, log_path: Path | None = None) -> dict:
    """Serve `model_dir`, warm up, load it for `duration` s or `max_requests` requests; return the report."""
    tag = f"{os.getpid()}-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="clipsvc-load-") as tmp:
        log_path = log_path or Path(tmp) / "server.log"
        # CLIP_MAX_REQUESTS=0: a recycled worker would reset its memory and hide the growth measured here.
        settings = {"WEB_CONCURRENCY": str(workers), "CLIP_MAX_REQUESTS": "0", "CLIP_LOG_LEVEL": "info"}
        with serve(Path(model_dir), log_path, settings, timeout=SERVER_START_S) as server:
            url = server.url
            with requests.Session() as session:
                session.trust_env = False
                meta = session.get(url + "/meta", timeout=10).json()
            checker = Checker(meta["embedding_dim"])
            words = meta["limits"]["max_text_words"]
            # As many warm-up clients as the server has request threads: each thread's first requests grow its own
            # allocator arena, which is not a leak but would read as one if first seen during the measurement.
            warm_clients = max(clients, workers * Settings().request_threads)
            warm, _ = drive(url, checker, warm_clients, 600, warmup_per_worker * workers, 0, tag, words)
            pids = sorted(server.worker_pids())
            rss_start = {pid: rss_kib(pid) for pid in pids}
            with RssSampler(pids) as sampler:
                results, elapsed = drive(url, checker, clients, duration, max_requests, len(warm), tag, words)
            rss_end = {pid: rss_kib(pid) for pid in pids}
            pids_end = sorted(server.worker_pids())
        exit_code = server.process.returncode
        counts, statuses, log_non_json = request_log_counts(log_path)
    check_log(warm + results, counts, statuses)

    report = {"model": meta["model"], "embedding_dim": meta["embedding_dim"], "workers": workers, "clients": clients,
              "duration_s": duration, "max_requests": max_requests, "elapsed_s": round(elapsed, 2),
              **summarize(results)}
    report["throughput_rps"] = round(len(results) / elapsed, 1) if elapsed else None
    report["warmup"] = {k: v for k, v in summarize(warm).items() if k in ("requests", *CHECKS)}
    report["rss"] = {
        str(pid): {"start_mib": _mib(rss_start[pid]), "end_mib": _mib(rss_end[pid]),
                   "peak_mib": _mib(sampler.peak[pid]), "growth_pct": _growth(rss_start[pid], rss_end[pid])}
        for pid in pids
    }
    growths = [w["growth_pct"] for w in report["rss"].values()]
    report["max_rss_growth_pct"] = max(growths) if growths and None not in growths else None
    report["worker_pids_start"], report["worker_pids_end"] = pids, pids_end
    report["server_exit_code"], report["server_log_non_json_lines"] = exit_code, log_non_json
    report["failures"] = _failures(report, workers)
    report["examples"] = [f"{r.request_id} ({r.kind}): {cat}: {detail}"
                          for r in warm + results for cat, detail in r.problems.items()][:10]
    report["ok"] = not report["failures"]
    return report


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def _growth(start: int | None, end: int | None) -> float | None:
    return None if not start or end is None else round((end - start) / start * 100, 2)


def _failures(report: dict, workers: int) -> list[str]:
    """Why the run fails, one line per reason; empty when it passes."""
    failures = [f"{report[name]} {name}" for name in CHECKS if report[name]]
    failures += [f"warm-up: {report['warmup'][name]} {name}" for name in CHECKS if report["warmup"][name]]
    if len(report["worker_pids_start"]) != workers:
        failures.append(f"{len(report['worker_pids_start'])} workers found, expected {workers}")
    if report["worker_pids_end"] != report["worker_pids_start"]:
        failures.append(f"workers changed: {report['worker_pids_start']} -> {report['worker_pids_end']}")
    for pid, rss in report["rss"].items():
        if rss["growth_pct"] is None or rss["growth_pct"] >= MAX_RSS_GROWTH_PCT:
            failures.append(f"worker {pid} RSS growth {rss['growth_pct']}% (limit {MAX_RSS_GROWTH_PCT:g}%)")
    if report["server_exit_code"] != 0:
        failures.append(f"gunicorn exited with {report['server_exit_code']} after SIGTERM")
    if not report["requests"]:
        failures.append("no requests were sent")
    return failures


def render(report: dict) -> str:
    """The report as a few lines for people."""
    lat = report["latency_ms"]
    lines = [
        f"clipsvc load: {report['workers']} workers, {report['clients']} clients, {report['duration_s']:g} s "
        f"(cap {report['max_requests']} requests), model {report['model']} (dim {report['embedding_dim']})",
        f"requests  {report['requests']} in {report['elapsed_s']} s = {report['throughput_rps']} req/s "
        f"(after {report['warmup']['requests']} warm-up requests)",
        "status    " + "  ".join(f"{s}: {n}" for s, n in report["status_counts"].items()),
        f"latency   valid p50 {lat['valid']['p50']} ms, p99 {lat['valid']['p99']} ms; "
        f"invalid p50 {lat['invalid']['p50']} ms, p99 {lat['invalid']['p99']} ms",
        "checks    " + "  ".join(f"{name} {report[name]}" for name in CHECKS),
    ]
    lines += [f"worker    {pid}: RSS {w['start_mib']} -> {w['end_mib']} MiB "
              f"({'?' if w['growth_pct'] is None else format(w['growth_pct'], '+')}%), peak {w['peak_mib']} MiB"
              for pid, w in report["rss"].items()]
    lines += [f"problem   {example}" for example in report["examples"]]
    lines.append("result    PASS" if report["ok"] else "result    FAIL: " + "; ".join(report["failures"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the load test from the command line; the exit status says whether it passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="model to serve (default: a tiny stand-in built in a temp dir)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--duration", type=float, default=20, help="seconds of load after the warm-up")
    parser.add_argument("--max-requests", type=int, default=20_000, help="stop after this many requests")
    parser.add_argument("--warmup", type=int, default=WARMUP_PER_WORKER,
                        help="warm-up requests per worker before RSS is measured")
    parser.add_argument("--log", type=Path, help="keep the server's log here")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clipsvc-standin-") as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from clipsvc.encoder.standin import build_standin

            model_dir = build_standin(Path(tmp) / "clip-tiny", arch="tiny")
        report = run_load(model_dir, args.workers, args.clients, args.duration, args.max_requests, args.warmup,
                          args.log)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
