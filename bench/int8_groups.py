"""Why int8 quantises activations in groups of up to 1024 (clipsvc.encoder.openvino_towers.INT8_GROUP): the service's
int8 towers compiled with each group size, timed interleaved in one process, per tower and batch.

    python bench/int8_groups.py [--arch vit-l-14 | --model-dir DIR] [--threads 2] [--groups 0,256,1024]
                                [--batches 1,8] [--rounds 7] [--settle 0.05]

Each group size is the most input channels a group may have; a tower takes the largest size up to it that divides
every layer's width (quantisation_group), and 0 keeps the weights int8 but computes in bf16 (or fp32). The towers
are the service's own OpenVINOTowers over its cached int8 conversion (ClipEncoder.build from testkit's
cpu_settings), all compiled first, then timed in rounds: every group, tower and batch once a round, on the same
random pixels and token ids (27 tokens alone, 32 in a batch), after --settle seconds of quiet. Prints medians in
ms per item and the worst cosine against transformers fp32. A benchmark: it exits 0 whatever the numbers.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from perf import chosen_model, in_process_options  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = in_process_options(__doc__)
    parser.add_argument("--groups", default="0,256,1024")
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args(argv)

    import openvino as ov
    import torch
    from transformers import CLIPModel

    from clipsvc.encoder.openvino_towers import INT8_GROUP, OpenVINOTowers, quantisation_group
    from clipsvc.encoder.precision import native_bf16
    from clipsvc.encoder.towers import TorchTowers
    from testkit.encoding import cpu_encoder

    model_dir = chosen_model(args)
    groups, batches = ([int(n) for n in option.split(",")] for option in (args.groups, args.batches))
    served = cpu_encoder(model_dir, torch_threads=args.threads, precision="int8", cpu_engine="openvino").towers
    if not isinstance(served, OpenVINOTowers):
        print("the int8 guard chose fp32 for this model: nothing to compare")
        return 0
    towers = {group: OpenVINOTowers(served.directory, "int8", args.threads, native_bf16(), served.pad_id,
                                    served.max_tokens, served.image_tokens, int8_group=group) for group in groups}
    model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    side, vocabulary = model.config.vision_config.image_size, model.config.text_config.vocab_size
    seeded = torch.Generator().manual_seed(0)
    pixels = torch.randn(max(batches), 3, side, side, generator=seeded)
    ids = torch.randint(1, vocabulary, (max(batches), 32), generator=seeded)
    calls = {}  # (tower, batch) -> what the call computes, given towers
    for batch in batches:
        length = 27 if batch == 1 else 32
        calls[("image", batch)] = lambda t, b=batch: t.images(pixels[:b])
        calls[("text", batch)] = lambda t, b=batch, n=length: t.texts(ids[:b, :n], torch.ones(b, n, dtype=torch.long))
    with torch.inference_mode():
        exact = {case: call(TorchTowers(model)) for case, call in calls.items()}
    del model
    cosines = {(case, group): torch.nn.functional.cosine_similarity(call(towers[group]), exact[case]).min().item()
               for case, call in calls.items() for group in groups}  # the warm-up
    times: dict[tuple, list[float]] = {key: [] for key in cosines}
    for _ in range(args.rounds):
        for case, call in calls.items():
            for group in groups:
                time.sleep(args.settle)
                started = time.perf_counter()
                call(towers[group])
                times[(case, group)].append((time.perf_counter() - started) * 1000 / case[1])

    core = ov.Core()
    graphs = {name: core.read_model(served.directory / f"{name}.xml") for name in ("image", "text")}
    print(f"{model_dir.name} int8, {args.threads} threads; median of {args.rounds} rounds, ms per item (worst cosine "
          f"against transformers fp32); the service's groups: up to {INT8_GROUP}\n")
    print("| tower | batch | " + " | ".join(f"groups up to {g}" if g else "weights only (0)" for g in groups) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in groups) + " |")
    for (tower, batch) in calls:
        cells = [f"{statistics.median(times[((tower, batch), g)]):.2f} ({cosines[((tower, batch), g)]:.6f})"
                 + (f" [{quantisation_group(graphs[tower], g)}]" if g else "") for g in groups]
        print(f"| {tower} | {batch} | " + " | ".join(cells) + " |")
    print("\n[n]: the group size the tower took, the largest up to the column's that divides its layers' widths")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
