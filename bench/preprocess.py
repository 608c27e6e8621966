"""Image decode + preprocessing cost on one core, fast path (JPEG draft / reduce) against full decode.

    python bench/preprocess.py [--model-dir DIR] [--repeat 5]

Prints milliseconds per image for each size and how close the fast path stays to the full-resolution
path: the largest pixel difference after preprocessing and, with a model, the embeddings' cosine.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from clipsvc.encoder.standin import build_standin  # noqa: E402
from clipsvc.parsing.images import decode_image  # noqa: E402
from testkit.encoding import cpu_encoder, preprocess_images  # noqa: E402

SIZES = [(640, 480), (1920, 1080), (4000, 3000)]


def photo_like(width: int, height: int, seed: int = 0) -> bytes:
    """Smooth gradients plus sensor-like noise, saved as a quality-90 JPEG (what cameras send)."""
    rng = np.random.default_rng(seed)
    x, y = np.linspace(0, 1, width), np.linspace(0, 1, height)
    channels = [np.outer(np.sin(y * 7), np.cos(x * 5)), np.outer(y, x) * 2 - 1, np.outer(np.cos(y * 3), x ** 2)]
    pixels = np.clip(np.stack(channels, -1) * 110 + 128 + rng.normal(0, 8, (height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="model to compare embeddings with (default: a tiny stand-in)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model_dir = args.model_dir or build_standin(Path(tempfile.mkdtemp()) / "tiny", arch="tiny")
    encoder = cpu_encoder(model_dir)
    side = encoder.facts.image_size
    print(f"model {model_dir.name}, input {side}px, 1 torch thread, median of {args.repeat}")
    print(f"{'image':>10} {'full ms':>8} {'fast ms':>8} {'speed-up':>8} {'max |dpx|':>9} {'cosine':>8}")
    for width, height in SIZES:
        data = photo_like(width, height)
        full_ms, full = timed(lambda d=data: preprocess_images(encoder, [decode_image(d, 10**9)]), args.repeat)
        fast_ms, fast = timed(lambda d=data: preprocess_images(encoder, [decode_image(d, 10**9, side)]), args.repeat)
        with torch.inference_mode():
            vectors = [encoder.model.get_image_features(pixel_values=p) for p in (full, fast)]
        a, b = (getattr(v, "pooler_output", v)[0] for v in vectors)
        cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        diff = float((full - fast).abs().max())
        print(f"{width}x{height:<5} {full_ms:8.1f} {fast_ms:8.1f} {full_ms / fast_ms:7.1f}x {diff:9.3f} {cosine:8.5f}")


if __name__ == "__main__":
    main()
