"""CLIP_PRECISION on this CPU: each format's speed, accuracy against fp32, memory and guard cost, per tower.

    python bench/precision.py [--arch vit-l-14 | --model-dir DIR] [--threads 2] [--images 8] [--texts 8]
                              [--photos FILE ...]

Each format is built in a fresh process, as a worker builds it (ClipEncoder.build, 2 threads). With
CLIP_CPU_ENGINE=torch: fp32 as transformers loads it, fp32 and bf16 each without and with the image tower's
oneDNN-packed linears (CLIP_CPU_PACKED_WEIGHTS), and int8; then OpenVINO (the default engine) in fp32, bf16 and int8
(the load times of openvino-fp32 and openvino-int8 include converting the model, unless CLIP_MODEL_CACHE_DIR holds
it already; openvino-bf16 reuses fp32's). Each runs the image tower at batch 1 over `--images` noise pictures (or
`--photos`) and the text tower at batch 1 over `--texts` captions, after one warm-up pass; then reports ms per item,
the worst cosine against fp32 per tower, the worst change of the 0-100 score over every image-text pair (before
rounding), the process's private memory (smaps_rollup) and the load time with and without the accuracy guard. A
benchmark: it exits 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
# name: (CLIP_CPU_ENGINE, CLIP_PRECISION, CLIP_CPU_PACKED_WEIGHTS)
FORMATS = {"fp32": ("torch", "fp32", False), "fp32-packed": ("torch", "fp32", True), "bf16": ("torch", "bf16", False),
           "bf16-packed": ("torch", "bf16", True), "int8": ("torch", "int8", False),
           "openvino-fp32": ("openvino", "fp32", False), "openvino-bf16": ("openvino", "bf16", False),
           "openvino-int8": ("openvino", "int8", False)}
CAPTIONS = ["Man staring at the moon, moon is made of mechanical parts", "a photo of a dog", "a red car",
            "two people walking on a beach at sunset", "a bowl of soup", "a city skyline at night in the rain",
            "a close-up of a cat's face", "an old map of Europe"]


def one(name: str, model_dir: Path, threads: int, images: int, texts: int, out: Path, photos: list[Path]) -> None:
    """In a fresh process: load one format, time both towers, save its vectors for the parent to compare."""
    from PIL import Image

    from clipsvc.encoder.model import ClipEncoder
    from testkit import procs
    from testkit.encoding import cpu_settings, encode_images, encode_texts

    engine, precision, packed = FORMATS[name]
    settings = cpu_settings(model_dir, torch_threads=threads, cpu_engine=engine, precision=precision,
                            cpu_packed_weights=packed)
    started = time.perf_counter()
    encoder = ClipEncoder.build(settings)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    pictures = ([Image.open(path).convert("RGB") for path in (photos * images)[:images]] if photos else
                [Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(images)])
    captions = (CAPTIONS * texts)[:texts]
    encode_images(encoder, pictures[:1]), encode_texts(encoder, captions[:1])  # warm-up: oneDNN's first-call setup
    started = time.perf_counter()
    image_rows = np.concatenate([encode_images(encoder, [p]) for p in pictures])
    image_ms = (time.perf_counter() - started) / images * 1000
    started = time.perf_counter()
    text_rows = np.concatenate([encode_texts(encoder, [c]) for c in captions])
    text_ms = (time.perf_counter() - started) / texts * 1000
    np.savez(out, images=image_rows, texts=text_rows)
    memory = procs.smaps_rollup("self")
    serving, unguarded_s = encoder.serving, None
    if precision != "fp32":  # the build again without the guard: the difference is what the guard costs
        started = time.perf_counter()
        ClipEncoder.build(replace(settings, precision_min_cosine=0))
        unguarded_s = time.perf_counter() - started
    print(json.dumps({"format": name, "image_ms": round(image_ms, 1), "text_ms": round(text_ms, 1),
                      "load_s": round(load_s, 2), "load_unguarded_s": unguarded_s and round(unguarded_s, 2),
                      "guard_cosine": serving.precision_cosine, "precision": serving.precision,
                      "rss_mib": memory["rss_mib"], "pss_anon_mib": memory["pss_anon_mib"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-l-14")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--photos", type=Path, nargs="*", default=[],
                        help="image files to encode instead of noise pictures (cycled to --images)")
    parser.add_argument("--texts", type=int, default=8)
    parser.add_argument("--one", choices=FORMATS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: the parent names the model
        return one(args.one, args.model_dir, args.threads, args.images, args.texts, args.out, args.photos)
    from perf import chosen_model, cpu_model, in_fresh_process

    from clipsvc.web.scoring import CLIPSCORE_WEIGHT

    model_dir = chosen_model(args)
    rows, vectors = [], {}
    for name in FORMATS:
        out = Path(f"/tmp/clipsvc-precision-{name}.npz")
        rows.append(in_fresh_process(__file__, name, "--model-dir", str(model_dir), "--threads", str(args.threads),
                                     "--images", str(args.images), "--texts", str(args.texts), "--out", str(out),
                                     *(["--photos", *map(str, args.photos)] if args.photos else [])))
        vectors[name] = np.load(out)
        out.unlink()
    exact = vectors["fp32"]
    print(f"{model_dir.name}, {cpu_model()}, {args.threads} threads, batch 1, {args.images} images / "
          f"{args.texts} texts")
    print("| format | image ms | × fp32 | text ms | × fp32 | worst cosine image / text | worst score change | "
          "private MiB | load s (unguarded) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = rows[0]
    for row in rows:
        ours = vectors[row["format"]]
        image_cos = float((ours["images"] * exact["images"]).sum(axis=1).min())
        text_cos = float((ours["texts"] * exact["texts"]).sum(axis=1).min())
        pairs = np.abs(ours["images"] @ ours["texts"].T - exact["images"] @ exact["texts"].T)
        score = 100 * CLIPSCORE_WEIGHT * float(pairs.max())
        unguarded = f" ({row['load_unguarded_s']})" if row["load_unguarded_s"] is not None else ""
        print(f"| {row['format']} | {row['image_ms']} | {base['image_ms'] / row['image_ms']:.2f} | {row['text_ms']} | "
              f"{base['text_ms'] / row['text_ms']:.2f} | {image_cos:.6f} / {text_cos:.6f} | {score:.3f} | "
              f"{row['pss_anon_mib']:.0f} | {row['load_s']}{unguarded} |")


if __name__ == "__main__":
    main()
