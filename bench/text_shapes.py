"""A worker's memory under texts of every shape: oneDNN keeps kernels per input shape, per format and packing.

    python bench/text_shapes.py [--arch vit-l-14 | --model-dir DIR] [--passes 600] [--threads 2]

Each format is built in a fresh process as a worker builds it (ClipEncoder.build): bf16 with plain linears, bf16
packed (the default where the CPU has bf16: the text tower's rows rounded up to a few sizes), fp32 packed (the
default elsewhere: texts on MKL's plain linears) and int8. Each times 16 short labels in one text pass, then runs
`--passes` text passes of 1-16 texts of one length, 1-70 words (seeded) and prints the process's RSS before and
after every third of them. A benchmark: it exits 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
FORMATS = {"bf16": ("bf16", False), "bf16-packed": ("bf16", True), "fp32-packed": ("fp32", True),
           "int8": ("int8", False)}
LABELS = [f"a photo of a {thing}" for thing in ("dog", "cat", "car", "tree", "house", "boat", "bird", "horse",
                                                "bicycle", "plane", "flower", "chair", "mountain", "beach",
                                                "guitar", "clock")]
WORDS = "the a dog cat on of red big small house photo tree river walking under bright".split()


def one(name: str, model_dir: Path, threads: int, passes: int) -> None:
    """In a fresh process: load one format, time the labels, then feed it texts of every shape."""
    from testkit import procs
    from testkit.encoding import cpu_encoder

    precision, packed = FORMATS[name]
    encoder = cpu_encoder(model_dir, torch_threads=threads, precision=precision, cpu_packed_weights=packed)
    labels = encoder._tokens(LABELS)
    encoder.forward_texts(labels)
    started = time.perf_counter()
    for _ in range(10):
        encoder.forward_texts(labels)
    labels_ms = (time.perf_counter() - started) / 10 * 1000
    rng = random.Random(0)
    rss = [procs.smaps_rollup("self")["rss_mib"]]
    for done in range(1, passes + 1):
        length = rng.randint(1, 70)  # a pass's texts are as long as its longest: one length per pass
        texts = [" ".join(rng.choices(WORDS, k=length)) for _ in range(rng.randint(1, 16))]
        encoder.forward_texts(encoder._tokens(texts))
        if done % max(passes // 3, 1) == 0:
            rss.append(procs.smaps_rollup("self")["rss_mib"])
    print(json.dumps({"format": name, "labels_ms": round(labels_ms, 1), "rss_mib": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-l-14")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=600)
    parser.add_argument("--one", choices=FORMATS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: the parent names the model
        return one(args.one, args.model_dir, args.threads, args.passes)
    from perf import chosen_model, cpu_model, in_fresh_process

    model_dir = chosen_model(args)
    print(f"{model_dir.name}, {cpu_model()}, {args.threads} threads, {args.passes} passes of varied texts")
    print("| format | 16 labels, one pass | RSS MiB: before, then after each third | growth |")
    print("| --- | --- | --- | --- |")
    for name in FORMATS:
        row = in_fresh_process(__file__, name, "--model-dir", str(model_dir), "--threads", str(args.threads),
                               "--passes", str(args.passes))
        rss = row["rss_mib"]
        print(f"| {name} | {row['labels_ms']} ms | {' → '.join(f'{r:.0f}' for r in rss)} | "
              f"{rss[-1] - rss[0]:+.0f} MiB |")


if __name__ == "__main__":
    main()
