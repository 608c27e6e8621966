"""Repeated labels and text throughput against real gunicorn with every default.

    python bench/labels.py [--arch vit-l-14 | --model-dir DIR] [--labels 16] [--requests 8] [--clients 4]

1. /rank, one 640x480 JPEG against `--labels` captions, one client: requests whose labels the server has seen
   before (the same set every time, as zero-shot clients send) alternate with requests whose labels are all new
   (numbered per request), `--requests` of each; p50 of each and their ratio. The server's text cache
   (CLIP_TEXT_CACHE_SIZE) is what tells them apart.
2. Text-only multipart requests of 16 new texts each from `--clients` clients at once: texts per second.

A benchmark: it exits 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from perf import chosen_model, cpu_model, photo_jpeg, setting  # noqa: E402

from testkit.server import serve  # noqa: E402

THINGS = ["dog", "cat", "car", "tree", "house", "boat", "bird", "horse", "bicycle", "plane", "flower", "chair",
          "mountain", "beach", "city street", "bowl of soup", "guitar", "clock", "train", "bridge"]


def rank(url: str, blob: str, labels: list[str]) -> float:
    started = time.perf_counter()
    response = requests.post(f"{url}/rank", timeout=600, json={
        "queries": [{"img_blob": blob}], "candidates": [{"text": label} for label in labels]})
    response.raise_for_status()
    return time.perf_counter() - started


def text_throughput(url: str, clients: int, per_client: int, texts: int) -> float:
    """Texts per second from `clients` threads, each sending `per_client` requests of `texts` new texts."""
    def client(k: int) -> None:
        with requests.Session() as http:
            for r in range(per_client):
                fields = {f"text-{i}": f"a photo number {k}-{r}-{i} of a {THINGS[i % len(THINGS)]}"
                          for i in range(texts)}
                http.post(f"{url}/syte_test/clip", data=fields, timeout=600).raise_for_status()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients * per_client * texts / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-l-14")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--labels", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--env", type=setting, action="append", default=[], metavar="CLIP_X=VALUE",
                        help="a setting other than its default, e.g. CLIP_PRECISION=fp32 (repeatable)")
    args = parser.parse_args()
    model_dir = chosen_model(args)
    blob = base64.b64encode(photo_jpeg(640, 480, seed=1)).decode()
    seen = [f"a photo of a {thing}" for thing in THINGS[:args.labels]]
    with tempfile.TemporaryDirectory() as tmp, serve(model_dir, Path(tmp) / "server.log", dict(args.env),
                                                         timeout=600) as server:
        for _ in range(2):  # both workers warm, and both have seen the labels (one client may use either)
            rank(server.url, blob, seen)
        known, new = [], []
        for r in range(args.requests):
            known.append(rank(server.url, blob, seen))
            new.append(rank(server.url, blob, [f"{label}, number {r}" for label in seen]))
        texts_per_s = text_throughput(server.url, args.clients, 3, 16)
    p50_known, p50_new = statistics.median(known) * 1000, statistics.median(new) * 1000
    print(f"{model_dir.name}, {cpu_model()}, every default (2 workers) but {dict(args.env) or 'none'}")
    print(f"/rank, 1 image x {args.labels} labels, 1 client, {args.requests} each, interleaved: "
          f"labels seen p50 {p50_known:.0f} ms, new labels p50 {p50_new:.0f} ms, seen/new {p50_known / p50_new:.3f}")
    print(f"text-only: {args.clients} clients x 3 requests x 16 new texts: {texts_per_s:.1f} texts/s")


if __name__ == "__main__":
    main()
