"""What a worker holds at steady state: every API under a seeded random mix for many minutes, memory over time.

    python bench/soak.py [--arch vit-b-32 | --model-dir DIR] [--workers 2] [--clients 3] [--minutes 25]
                         [--interval 30] [--pool 48] [--image-size WxH] [--seed 0] [--env KEY=VALUE ...]
                         [--json OUT]

Starts `gunicorn -c gunicorn.conf.py wsgi:app` through testkit.server with every default but the workers and
`--env`, and CLIP_MAX_REQUESTS=0: recycling (10 000 requests by default) is a safety net, and the plateau must
hold without it; a recycled worker would also restart the curve this measures (`--env CLIP_MAX_REQUESTS=N`
brings it back). `--env` also takes allocator candidates: MALLOC_ARENA_MAX=2, LD_PRELOAD=..., GLIBC_TUNABLES=...

The mix, seeded: each of `--clients` threads picks an API at random (/syte_test/clip multipart, /encode, /rank,
/vectorize with the raw image, /v1/embeddings, /post and the Truss predict) and 1-6 items (images or texts, as
each API takes them); texts are 1 to CLIP_MAX_TEXT_WORDS words (a third from a fixed set of labels, so the text
cache both hits and misses), images come from a pool of `--pool` JPEG, PNG and WebP pictures from 8x8 to
2400x1800 made once (`--image-size` makes them all one size, to tell decode buffers from the rest).

Every `--interval` seconds it reads each worker's RSS and PSS (/proc/PID/smaps_rollup) and where the RSS lies
(/proc/PID/smaps: glibc's main heap, its other arenas, other anonymous memory, files) and prints a row. The
summary per worker: loaded (before any request), fresh (after a short warm-up), the plateau (median of the
last third), growth over the last half and the peak (VmHWM); then requests/s, the workers' CPU time and minor
page faults per request (what an allocator setting costs, readable on a busy machine) and latency per API. Exit 1 on
any answer but 200 (every request is valid), a lost connection, or a worker replaced. Timings here are only as
quiet as the machine: run it alone for figures.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from perf import chosen_model, cpu_model, setting  # noqa: E402

from clipsvc.settings import Settings  # noqa: E402
from testkit import procs  # noqa: E402
from testkit.corpus import picture  # noqa: E402
from testkit.server import serve  # noqa: E402

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
SMALLEST, LARGEST = (8, 8), (2400, 1800)
MAX_ITEMS = 6
# Images per request are capped so that six large PNGs in base64 stay under CLIP_MAX_REQUEST_MB (64 by default).
REQUEST_IMAGE_BYTES = 36 * 1024 * 1024
HEAP_ALIGN = 64 * 1024 * 1024  # glibc's HEAP_MAX_SIZE on 64-bit: each extra arena is one or more such heaps
REQUEST_TIMEOUT_S = 300
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WORDS = ("the a of in on with and red blue green old small big dog cat horse bird car boat tree house river "
         "street city beach mountain snow sun night photo picture man woman child playing walking sitting under "
         "near two three bright dark wooden glass table chair window flower garden field road sky cloud").split()
LABELS = [f"a photo of a {thing}" for thing in WORDS[10:]] + [f"a {c} {t}" for c in WORDS[7:12] for t in WORDS[12:30]]


# --- inputs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Picture:
    name: str
    data: bytes
    b64: str  # made once: base64 is the client's cost, not the server's
    mime: str

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{self.b64}"


def make_pool(count: int, seed: int, size: tuple[int, int] | None) -> list[Picture]:
    """`count` pictures, each a gradient with noise (decodes like a photo) of a random size in a random format."""
    rng = random.Random(seed)
    pool = []
    for index in range(count):
        fmt = rng.choice(list(FORMATS))
        ranges = zip(SMALLEST, LARGEST, strict=True)
        width, height = size or [rng.randint(lo, hi) for lo, hi in ranges]
        pixels = np.asarray(picture("RGB", (width, height), seed=index), dtype=np.int16)
        noise = np.random.default_rng(seed * 1000 + index).integers(-6, 7, pixels.shape, dtype=np.int16)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(buffer, format=fmt)
        data = buffer.getvalue()
        pool.append(Picture(f"{index}-{width}x{height}.{fmt.lower()}", data, base64.b64encode(data).decode(),
                            FORMATS[fmt]))
    return pool


class Mix:
    """One client's seeded stream of requests: (API name, method kwargs for requests.post)."""

    def __init__(self, seed: int, pool: list[Picture], max_words: int):
        self.rng, self.pool, self.max_words = random.Random(seed), pool, max_words

    def text(self) -> str:
        if self.rng.random() < 1 / 3:
            return self.rng.choice(LABELS)
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(1, self.max_words)))

    def items(self, count: int) -> list[str | Picture]:
        """`count` items, each an image or a text at random, the images within the byte cap."""
        chosen, budget = [], REQUEST_IMAGE_BYTES
        for _ in range(count):
            pic = self.rng.choice(self.pool) if self.rng.random() < 0.5 else None
            if pic is not None and len(pic.data) <= budget:
                budget -= len(pic.data)
                chosen.append(pic)
            else:
                chosen.append(self.text())
        return chosen

    def labels(self, count: int) -> list[str]:
        labels: list[str] = []
        while len(labels) < count:
            label = self.text()
            if label not in labels:  # Truss answers by label: they must be unique
                labels.append(label)
        return labels

    def next(self) -> tuple[str, str, dict]:
        api = self.rng.choice(list(APIS))
        count = self.rng.randint(1, MAX_ITEMS)
        path, build = APIS[api]
        return api, path, build(self, count)


def _json_item(item: str | Picture) -> dict:
    return {"text": item} if isinstance(item, str) else {"img_blob": item.b64}


def _clip(mix: Mix, count: int) -> dict:
    files = [(f"text-{n}", (None, item)) if isinstance(item, str) else (f"image-{n}", (item.name, item.data, item.mime))
             for n, item in enumerate(mix.items(count))]
    return {"files": files}


def _rank(mix: Mix, count: int) -> dict:
    items = [_json_item(item) for item in mix.items(max(count, 2))]
    return {"json": {"queries": items[:1], "candidates": items[1:]}}


def _embeddings(mix: Mix, count: int) -> dict:
    items = [item if isinstance(item, str) else {"image": item.data_uri} for item in mix.items(count)]
    return {"json": {"input": items}}


def _post(mix: Mix, count: int) -> dict:
    docs = [{"text": item} if isinstance(item, str) else {"blob": item.b64} for item in mix.items(count)]
    return {"json": {"data": docs, "exec_endpoint": "/encode"}}


def _truss(mix: Mix, count: int) -> dict:
    image = mix.rng.choice(mix.pool)
    return {"json": {"labels": mix.labels(max(count - 1, 1)), "image_url": image.data_uri}}


APIS: dict[str, tuple[str, Callable[[Mix, int], dict]]] = {
    "clip": ("/syte_test/clip", _clip),
    "encode": ("/encode", lambda mix, count: {"json": [_json_item(item) for item in mix.items(count)]}),
    "rank": ("/rank", _rank),
    "vectorize": ("/vectorize", lambda mix, count: {"data": mix.rng.choice(mix.pool).data}),
    "embeddings": ("/v1/embeddings", _embeddings),
    "post": ("/post", _post),
    "truss": ("/v1/models/model:predict", _truss),
}


# --- memory ------------------------------------------------------------------------------------------

_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$")


def memory_map(pid: int) -> dict[str, float]:
    """Where the RSS lies, in MiB: glibc's main heap (brk), its other arenas (64 MiB-aligned heaps, counted),
    other anonymous memory (mmap'd blocks: torch's big tensors, stacks) and files (code, the weights' pages)."""
    maps: list[list] = []  # [start, end, perms, path, rss_kib]
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if (match := _MAPPING.match(line)) is not None:
            maps.append([int(match[1], 16), int(match[2], 16), match[3], match[4], 0])
        elif line.startswith("Rss:") and maps:
            maps[-1][4] = int(line.split()[1])
    kib = Counter()
    arenas = 0
    for n, (*_, path, rss) in enumerate(maps):
        if path == "[heap]":
            kib["heap"] += rss
        elif path and not path.startswith("[anon"):
            kib["file" if not path.startswith("[") else "anon"] += rss
        elif heaps := _arena_heaps(maps, n):
            kib["arenas"] += rss
            arenas += heaps
        else:
            kib["anon"] += rss
    memory = {name: round(kib[name] / 1024, 1) for name in ("heap", "arenas", "anon", "file")}
    return {**memory, "arena_heaps": arenas}


def _arena_heaps(maps: list[list], n: int) -> int:
    """How many of glibc's 64 MiB arena heaps mapping `n` holds: a read-write part from a 64 MiB boundary and
    the reserved rest after it up to the next; the kernel merges neighbours, so a full heap may lie inside one
    larger mapping or run on into another."""
    start, end, perms, path, _ = maps[n]
    if path or perms != "rw-p":
        return 0
    following = maps[n + 1] if n + 1 < len(maps) else None
    if (following is not None and following[0] == end and following[2] == "---p" and not following[3]
            and following[1] % HEAP_ALIGN == 0 and following[1] - HEAP_ALIGN >= start):
        return 1 + (following[1] - HEAP_ALIGN - start) // HEAP_ALIGN
    return (end - start) // HEAP_ALIGN if start % HEAP_ALIGN == 0 else 0


def cpu_and_faults(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) and minor page faults so far: CPU per request is what an allocator setting
    costs, and unlike requests/s it holds on a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {"cpu_s": (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, "minflt": int(fields[7])}


def sample(pids: list[int]) -> dict[str, dict]:
    """Each worker's memory and CPU now (a worker gone since is left out)."""
    taken = {}
    for pid in pids:
        try:
            taken[str(pid)] = {**procs.smaps_rollup(pid), **memory_map(pid), **cpu_and_faults(pid),
                               "hwm_mib": round((procs.status_kib(pid, "VmHWM") or 0) / 1024, 1)}
        except OSError:
            continue
    return taken


# --- the run -----------------------------------------------------------------------------------------


class Traffic:
    """The clients' threads and what they saw."""

    def __init__(self, url: str, mixes: list[Mix], warm_up: Mix):
        self.url, self.mixes, self.warm_up_mix = url, mixes, warm_up
        self.lock = threading.Lock()
        self.done = 0
        self.failures: Counter = Counter()  # (api, status or exception name)
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.first_failures: list[str] = []
        self.stopping = threading.Event()

    def send(self, mix: Mix) -> None:
        """On a new connection: a kept-alive one stays with the worker that accepted it, which may leave the
        other worker idle for the whole run."""
        api, path, kwargs = mix.next()
        started = time.perf_counter()
        try:
            response = requests.post(self.url + path, timeout=REQUEST_TIMEOUT_S, **kwargs)
            outcome, detail = response.status_code, response.text[:300]
            if outcome == 200:
                response.json()
        except (requests.RequestException, ValueError) as exc:
            outcome, detail = type(exc).__name__, str(exc)[:300]
        with self.lock:
            self.done += 1
            if outcome == 200:
                self.seconds[api].append(time.perf_counter() - started)
            else:
                self.failures[api, outcome] += 1
                if len(self.first_failures) < 5:
                    self.first_failures.append(f"{api} {path}: {outcome} {detail}")

    def client(self, mix: Mix) -> None:
        while not self.stopping.is_set():
            self.send(mix)

    def warm_up(self, rounds: int) -> None:
        """Each API `rounds` times, one at a time, before anything is measured."""
        for n in range(rounds * len(APIS)):
            api = list(APIS)[n % len(APIS)]
            path, build = APIS[api]
            response = requests.post(self.url + path, timeout=REQUEST_TIMEOUT_S, **build(self.warm_up_mix, 2))
            if response.status_code != 200:
                raise SystemExit(f"warm-up {api}: {response.status_code} {response.text[:300]}")

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, args=(mix,), daemon=True) for mix in self.mixes]
        for thread in threads:
            thread.start()
        return threads


def run(args: argparse.Namespace) -> dict:
    model_dir = chosen_model(args)
    settings = {"WEB_CONCURRENCY": str(args.workers), "CLIP_MAX_REQUESTS": "0", **dict(args.env)}
    pool = make_pool(args.pool, args.seed, args.image_size)
    max_words = Settings().max_text_words
    mixes = [Mix(args.seed * 100 + n, pool, max_words) for n in range(args.clients)]
    print(f"model {model_dir.name}, {cpu_model()}, {args.workers} workers, {args.clients} clients, "
          f"{args.minutes} min; settings {settings}; pool of {len(pool)} pictures, "
          f"{sum(len(p.data) for p in pool) / procs.MIB:.1f} MiB", flush=True)
    with tempfile.TemporaryDirectory() as tmp, serve(model_dir, Path(tmp) / "server.log", settings,
                                                     timeout=600) as server:
        pids = sorted(server.worker_pids())
        loaded = sample(pids)
        traffic = Traffic(server.url, mixes, Mix(-1, pool, max_words))
        traffic.warm_up(args.workers)
        samples = [{"t_s": 0.0, "requests": 0, "failures": 0, "workers": sample(pids)}]
        print_header(pids)
        print_row(samples[0], pids)
        started = time.monotonic()
        threads = traffic.start()
        duration = args.minutes * 60
        while (elapsed := time.monotonic() - started) < duration and server.process.poll() is None:
            time.sleep(min(args.interval, duration - elapsed))
            with traffic.lock:
                done, failed = traffic.done, sum(traffic.failures.values())
            samples.append({"t_s": round(time.monotonic() - started, 1), "requests": done, "failures": failed,
                            "workers": sample(pids)})
            print_row(samples[-1], pids)
        traffic.stopping.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT_S)
        wall = time.monotonic() - started
        replaced = sorted(server.worker_pids() ^ set(pids))
        exit_code = server.stop()
    first, last = samples[0]["workers"], samples[-1]["workers"]
    cpu_s = sum(last[pid]["cpu_s"] - first[pid]["cpu_s"] for pid in last if pid in first)
    faults = sum(last[pid]["minflt"] - first[pid]["minflt"] for pid in last if pid in first)
    return {"model": model_dir.name, "cpu": cpu_model(), "settings": settings, "workers": pids,
            "clients": args.clients, "minutes": args.minutes, "seed": args.seed, "pool": len(pool),
            "image_size": args.image_size, "loaded": loaded, "samples": samples,
            "summary": summarise(samples, loaded, pids), "requests": traffic.done, "wall_s": round(wall, 1),
            "requests_per_s": round(traffic.done / wall, 2),
            "worker_cpu_ms_per_request": round(cpu_s * 1000 / max(samples[-1]["requests"], 1), 1),
            "minor_faults_per_request": round(faults / max(samples[-1]["requests"], 1)),
            "latency_p50_s": {api: round(statistics.median(s), 3) for api, s in sorted(traffic.seconds.items())},
            "answered": {api: len(s) for api, s in sorted(traffic.seconds.items())},
            "failures": {f"{api} {outcome}": n for (api, outcome), n in traffic.failures.items()},
            "first_failures": traffic.first_failures, "replaced_workers": replaced, "gunicorn_exit": exit_code}


def summarise(samples: list[dict], loaded: dict, pids: list[int]) -> dict:
    """Per worker and measure: loaded, fresh, plateau (median of the last third), last-half growth, peak."""
    summary = {}
    end = samples[-1]["t_s"]
    for pid in map(str, pids):
        seen = [(s["t_s"], s["workers"][pid]) for s in samples if pid in s["workers"]]
        last_third = [m for t, m in seen if t >= end * 2 / 3] or [seen[-1][1]]
        half = next(m for t, m in seen if t >= end / 2)
        summary[pid] = {"peak_mib": seen[-1][1]["hwm_mib"]}
        for key in ("rss_mib", "pss_mib"):
            plateau = statistics.median(m[key] for m in last_third)
            summary[pid][key] = {"loaded": loaded.get(pid, {}).get(key), "fresh": seen[0][1][key],
                                 "plateau": round(plateau, 1),
                                 "last_half_pct": round((seen[-1][1][key] / half[key] - 1) * 100, 1)}
    return summary


# --- output ------------------------------------------------------------------------------------------


def print_header(pids: list[int]) -> None:
    columns = " | ".join(f"w{n + 1} RSS/PSS MiB (heap, arenas n:MiB, anon)" for n in range(len(pids)))
    print(f"| min | {columns} | requests | failed |\n|---:|{'---|' * len(pids)}---:|---:|", flush=True)


def print_row(taken: dict, pids: list[int]) -> None:
    cells = []
    for pid in map(str, pids):
        m = taken["workers"].get(pid)
        cells.append("gone" if m is None else f"{m['rss_mib']:.0f}/{m['pss_mib']:.0f} ({m['heap']:.0f}, "
                                               f"{m['arena_heaps']}:{m['arenas']:.0f}, {m['anon']:.0f})")
    print(f"| {taken['t_s'] / 60:.1f} | {' | '.join(cells)} | {taken['requests']} | {taken['failures']} |", flush=True)


def print_summary(report: dict) -> None:
    print("\n| worker | measure | loaded | fresh | plateau | last half | peak |\n|---|---|---:|---:|---:|---:|---:|")
    for n, (pid, figures) in enumerate(report["summary"].items()):
        for key in ("rss_mib", "pss_mib"):
            f = figures[key]
            print(f"| w{n + 1} ({pid}) | {key[:3].upper()} MiB | {f['loaded']} | {f['fresh']} | {f['plateau']} | "
                  f"{f['last_half_pct']:+.1f} % | {figures['peak_mib'] if key == 'rss_mib' else ''} |")
    print(f"\n{report['requests']} requests in {report['wall_s']} s: {report['requests_per_s']} requests/s, "
          f"{report['worker_cpu_ms_per_request']} ms of worker CPU and {report['minor_faults_per_request']} minor "
          f"page faults per request; "
          f"answered per API {report['answered']}; p50 s {report['latency_p50_s']}")
    if report["failures"] or report["replaced_workers"] or report["gunicorn_exit"]:
        print(f"FAILED: {report['failures']} {report['first_failures']}; workers replaced "
              f"{report['replaced_workers']}; gunicorn exit {report['gunicorn_exit']}")


def size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-b-32")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=25)
    parser.add_argument("--interval", type=float, default=30, help="seconds between memory samples")
    parser.add_argument("--pool", type=int, default=48, help="pictures in the pool")
    parser.add_argument("--image-size", type=size, help="WxH: every picture this size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", type=setting, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(args)
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    failed = report["failures"] or report["replaced_workers"] or report["gunicorn_exit"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
