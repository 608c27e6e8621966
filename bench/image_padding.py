"""Why a lone image is padded (clipsvc.encoder.openvino_towers.image_padding): the service's compiled image tower
timed with no padding and with more tokens per image, interleaved in one process, per format and batch.

    python bench/image_padding.py [--arch vit-l-14 | --model-dir DIR] [--threads 2] [--batches 1,2,8]
                                  [--paddings 0,7,15,31] [--formats bf16,int8] [--rounds 7] [--settle 0.05]

Each format is the service's own towers (ClipEncoder.build from testkit's cpu_settings: the conversion cached
in CLIP_MODEL_CACHE_DIR, compiled as a worker compiles it), all built first, then timed in rounds: every format,
batch and padding once a round, each call the image tower alone on the same random pixels, after --settle
seconds of quiet. Prints medians in ms per image, what image_padding chooses, and each padding's worst cosine
against none. A benchmark: it exits 0 whatever the numbers.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from perf import chosen_model, in_process_options  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = in_process_options(__doc__)
    parser.add_argument("--batches", default="1,2,8")
    parser.add_argument("--paddings", default="0,7,15,31")
    parser.add_argument("--formats", default="bf16,int8")
    args = parser.parse_args(argv)

    import torch

    from clipsvc.encoder.openvino_towers import image_padding
    from testkit.encoding import cpu_encoder

    model_dir = chosen_model(args)
    batches = [int(b) for b in args.batches.split(",")]
    paddings = [0] + [int(p) for p in args.paddings.split(",") if int(p) != 0]  # none first: the reference
    encoders = {name: cpu_encoder(model_dir, torch_threads=args.threads, precision=name, cpu_engine="openvino")
                for name in args.formats.split(",")}
    towers = {name: encoder.towers for name, encoder in encoders.items()}
    tokens = next(iter(towers.values())).image_tokens
    side = json.loads((model_dir / "config.json").read_text())["vision_config"]["image_size"]
    pixels = torch.randn(max(batches), 3, side, side, generator=torch.Generator().manual_seed(0))
    cases = [(name, batch, padding) for name in towers for batch in batches for padding in paddings]
    outputs = {case: towers[case[0]].images(pixels[:case[1]], padding=case[2]) for case in cases}  # the warm-up
    times: dict[tuple, list[float]] = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case in cases:
            time.sleep(args.settle)
            started = time.perf_counter()
            towers[case[0]].images(pixels[:case[1]], padding=case[2])
            times[case].append((time.perf_counter() - started) * 1000 / case[1])

    print(f"{model_dir.name}: {tokens} tokens an image; {args.threads} threads; median of {args.rounds} rounds, "
          f"ms per image (worst cosine against no padding)\n")
    print("| format | batch | " + " | ".join(f"+{p} ({tokens + p} rows)" for p in paddings) + " | chosen |")
    print("| --- | --- | " + " | ".join("---" for _ in paddings) + " | --- |")
    for name in towers:
        for batch in batches:
            cells = []
            for padding in paddings:
                plain, padded = outputs[(name, batch, paddings[0])], outputs[(name, batch, padding)]
                cosine = torch.nn.functional.cosine_similarity(plain, padded).min().item()
                cells.append(f"{statistics.median(times[(name, batch, padding)]):.1f} ({cosine:.6f})")
            label = name if encoders[name].serving.precision == name else f"{name} (the guard chose fp32)"
            print(f"| {label} | {batch} | " + " | ".join(cells) + f" | +{image_padding(batch, tokens)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
