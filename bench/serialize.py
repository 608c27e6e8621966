"""The cost of writing vectors as JSON: Flask's default provider (json.dumps of tolist()) against VectorJSON (orjson
writing the float32 arrays itself), for one response of N texts' vectors.

    python bench/serialize.py [--rows 64] [--dim 768] [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from flask import Flask
from flask.json.provider import DefaultJSONProvider

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # clipsvc from the repo root
from clipsvc.web.serialize import VectorJSON  # noqa: E402


def body(rows: np.ndarray, as_lists: bool) -> dict:
    return {f"text_{i}_vector": row.tolist() if as_lists else row for i, row in enumerate(rows)}


def timed(write, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        write()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    rows = np.random.default_rng(0).standard_normal((args.rows, args.dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    app = Flask(__name__)
    before, after = DefaultJSONProvider(app), VectorJSON(app)
    before.sort_keys = after.sort_keys = False
    old = timed(lambda: before.dumps(body(rows, as_lists=True)), args.repeat)
    new = timed(lambda: after.dumps(body(rows, as_lists=False)), args.repeat)
    print(f"{args.rows} x {args.dim} float32 vectors, median of {args.repeat}: json.dumps(tolist()) {old:.2f} ms "
          f"({len(before.dumps(body(rows, True))) / 1e3:.0f} kB), orjson {new:.2f} ms "
          f"({len(after.dumps(body(rows, False))) / 1e3:.0f} kB): {old / new:.1f}x faster")


if __name__ == "__main__":
    main()
