"""Is clipsvc as fast as this CPU goes? Every engine's ms per image beside the roofline, the CPU's measured matmul
rate at the model's own shapes (issue 31).

    python bench/roofline.py [--arch vit-l-14|vit-b-32|tiny | --model-dir DIR] [--threads 2] [--batches 1,8]
                             [--rounds 5] [--settle 0.05] [--towers image,text] [--engines KEY,...]
                             [--json out.json]

Engines (keys for --engines; transformers fp32 always runs, as every cosine's reference): transformers fp32 and
bf16 (hf-fp32, hf-bf16); clipsvc's own encoder (ClipEncoder.build from testkit's cpu_settings, timed on
forward_images / forward_texts) in bf16 (packed weights, the service's default), int8 and fp32
(clipsvc-torch-bf16, ...; clipsvc-openvino-* where Settings has cpu_engine); ONNX Runtime fp32 and int8 dynamic
(ort-fp32, ort-int8); OpenVINO f32, bf16 and bf16 with nncf's INT8_SYM weights (ov-f32, ov-bf16, ov-bf16-int8w).
ONNX and OpenVINO models are exported once from the fp32 weights to a temporary directory. An engine whose runtime
is not installed is listed as skipped.

Each engine, and each roofline backend (torch, OpenVINO), lives in its own child process; the parent asks one at a
time, so no two thread pools run together. All get the same inputs: random-pixel pictures through the model's
CLIPImageProcessorPil (clipsvc gets the pictures and preprocesses them itself, untimed) and real-looking
captions through CLIPTokenizer, padded to the longest of the batch. --threads for all (torch.set_num_threads,
ORT intra_op_num_threads without spinning, OpenVINO INFERENCE_NUM_THREADS unpinned, latency hint). One warm-up
pass per engine, tower and batch; then --rounds rounds, engines interleaved (in a seeded random order each time),
each call after --settle seconds of quiet (the engine before it leaves threads spinning for a few ms); medians,
in ms per image. Worst cosine: the lowest over rows and batches against transformers fp32.

The roofline, per format and batch: the tower's matmul FLOPs (roofline_gemm: linears, attention's two batched
matmuls, patch embedding, projection) over the time plain matmuls take at exactly those shapes, with the best
kernel this machine has for the format at each shape (torch or OpenVINO; int8: torch._int_mm or OpenVINO's
dynamically quantized int8-weight MatMul, attention at the best of fp32 and bf16). floor ms/image is that time per
image: no engine can compute the tower's matmuls faster with these kernels, so efficiency = floor / measured
(100% = as fast as the matmuls alone; layer norms, softmax, GELU and memory traffic are the rest). Also printed:
the issue's reference rate, one 2056x1024 by 1024x4096 matmul on 2 threads (best of a run before and one after the
rounds). Each round's GEMM times are the fastest of a few calls per shape; their median across rounds is the floor.
A benchmark: exit 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import roofline_engines as eng  # noqa: E402
import roofline_gemm as gemm  # noqa: E402

CAPTIONS = ["Man staring at the moon, moon is made of mechanical parts", "a photo of a dog",
            "two people walking on a beach at sunset, their shadows long on the wet sand",
            "a red car parked on a street at night", "a bowl of soup", "a city skyline at night in the rain",
            "a close-up of a cat's face with green eyes", "an old map of Europe hanging on a wooden wall"]
PICTURE = (480, 640)  # height, width of the random-pixel pictures
FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
VERSIONS = ("torch", "transformers", "onnxruntime", "onnx", "openvino", "nncf")
GEMM_ENGINES = [eng.Engine(f"gemm-{b}", f"roofline {b}", "gemm", "", (b,) if b == "openvino" else (),
                           {"backend": b}) for b in ("torch", "openvino")]


def model_dir_for(args: argparse.Namespace) -> Path:
    """--model-dir, else /tmp/models/<arch> where it is, else the benches' stand-in (bench/perf.standin_model)."""
    if args.model_dir:
        return args.model_dir.resolve()
    shared = Path("/tmp/models") / args.arch
    if (shared / "config.json").exists():
        return shared
    from perf import standin_model

    return standin_model(args.arch)


def machine(threads: int) -> dict:
    """What the numbers depend on: the CPU, its matmul flags, threads, the runtimes' versions."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    present = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    versions = {}
    for package in VERSIONS:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": name, "flags": {flag: flag in present for flag in FLAGS}, "threads": threads, "versions": versions}


def make_inputs(model_dir: Path, batches: list[int]) -> dict:
    """The same inputs for every engine: pictures, their pixel values, and each batch's captions as token ids
    (padded, with the mask; and unpadded lists, as clipsvc's forward_texts takes them)."""
    from transformers import CLIPImageProcessorPil, CLIPTokenizer

    processor = CLIPImageProcessorPil.from_pretrained(model_dir, local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(model_dir, local_files_only=True)
    most = max(*batches, 2)  # the export traces a batch of 2: no dimension of 1 to specialise on
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (most, *PICTURE, 3), dtype=np.uint8)
    pixels = processor(images=list(pictures), return_tensors="np")["pixel_values"].astype(np.float32)
    captions = (CAPTIONS * most)[:most]
    limit = tokenizer.model_max_length if tokenizer.model_max_length < 10_000 else 77
    text = {}
    for batch in batches:
        padded = tokenizer(captions[:batch], padding=True, truncation=True, max_length=limit, return_tensors="np")
        text[batch] = {"input_ids": padded["input_ids"].astype(np.int64),
                       "attention_mask": padded["attention_mask"].astype(np.int64),
                       "ids": tokenizer(captions[:batch], truncation=True, max_length=limit)["input_ids"]}
    sample = tokenizer(captions[:2], padding=True, truncation=True, max_length=limit, return_tensors="np")
    export = {"pixel_values": pixels[:2], "input_ids": sample["input_ids"].astype(np.int64),
              "attention_mask": sample["attention_mask"].astype(np.int64)}
    return {"pictures": pictures, "image": {b: pixels[:b] for b in batches}, "text": text, "export": export}


class Child:
    """One engine's process and the parent's end of its pipe."""

    def __init__(self, context, engine: eng.Engine, *args):
        self.engine = engine
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=eng.serve, args=(theirs, engine, *args), daemon=True)
        self.process.start()
        theirs.close()  # so that a dead child reads as EOF here
        self.error: str | None = None
        self.note = ""

    def ready(self) -> bool:
        status, payload = self._answer()
        if status == "ready":
            self.note = payload
        return status == "ready"

    def ask(self, tower: str, batch: int):
        """(seconds, output) of one call, or None once the engine has failed."""
        if self.error is None:
            self.conn.send((tower, batch))
            status, payload = self._answer()
            if status == "ok":
                return payload
        return None

    def _answer(self) -> tuple[str, object]:
        try:
            status, payload = self.conn.recv()
        except (EOFError, OSError):
            status, payload = "error", f"process died (exit {self.process.join(5) or self.process.exitcode})"
        if status == "error":
            self.error = payload
        return status, payload

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def one_off(context, job: str, *args):
    """Run one job (roofline_engines.one_off) in a fresh child: ("ok", result) or ("error", why)."""
    mine, theirs = context.Pipe()
    process = context.Process(target=eng.one_off, args=(theirs, job, *args), daemon=True)
    process.start()
    theirs.close()
    try:
        answer = mine.recv()
    except EOFError:
        answer = ("error", "process died")
    process.join()
    return answer


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def measure(args: argparse.Namespace) -> dict:
    """Convert, start every child, warm up, run the rounds; the report as plain data."""
    model_dir = model_dir_for(args)
    config = json.loads((model_dir / "config.json").read_text())
    inputs = make_inputs(model_dir, args.batches)
    tokens = {("image", b): gemm.image_tokens(config["vision_config"]) for b in args.batches}
    tokens |= {("text", b): inputs["text"][b]["input_ids"].shape[1] for b in args.batches}
    plan = {key: gemm.tower_gemms(config, key[0], key[1], count) for key, count in tokens.items()}
    every = eng.engines()
    wanted = set(args.engines or [e.key for e in every]) | {eng.REFERENCE}
    unknown = wanted - {e.key for e in every}
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; known: {', '.join(e.key for e in every)}")
    skipped = {e.key: f"{', '.join(missing)} not installed" for e in every + GEMM_ENGINES
               if e.key in wanted | {g.key for g in GEMM_ENGINES} and (missing := eng.missing(e))}
    chosen = [e for e in every if e.key in wanted and e.key not in skipped]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no thread pool inherited
    with tempfile.TemporaryDirectory(prefix="clipsvc-roofline-") as workdir:
        models = {e.options["model"] for e in chosen if "model" in e.options}
        if models:
            status, failed = one_off(context, "convert", model_dir, Path(workdir), models, inputs["export"])
            failed = failed if status == "ok" else dict.fromkeys(models, failed)
            skipped |= {e.key: f"conversion failed: {failed[e.options['model']]}" for e in chosen
                        if e.options.get("model") in failed}
            chosen = [e for e in chosen if e.key not in skipped]
        gemms = [g for g in GEMM_ENGINES if g.key not in skipped]
        reference = reference_runs(context, gemms, {})
        children = [Child(context, e, model_dir, Path(workdir), args.threads, inputs) for e in chosen]
        children += [Child(context, g, model_dir, Path(workdir), args.threads, {"plan": plan}) for g in gemms]
        try:
            for child in children:
                if not child.ready():
                    skipped[child.engine.key] = f"failed to load: {child.error}"
            samples = run_rounds([child for child in children if child.error is None], args)
        finally:
            for child in children:
                child.close()
        reference = reference_runs(context, gemms, reference)  # again, now that the engines are gone
    for child in children:
        if child.error and child.engine.key not in skipped:
            skipped[child.engine.key] = f"failed: {child.error}"
    return report(args, model_dir, config, tokens, plan, every, children, samples, reference, skipped)


def run_rounds(children: list[Child], args: argparse.Namespace) -> dict:
    """One warm-up call per child, tower and batch; then the rounds. (key, tower, batch) -> [(seconds, output)]."""
    keys = [(tower, batch) for tower in args.towers for batch in args.batches]
    for tower, batch in keys:
        for child in children:
            child.ask(tower, batch)
    samples: dict = {}
    order = random.Random(0)  # a new order each time, the same every run: no engine always follows the same one
    for _ in range(args.rounds):
        for tower, batch in keys:
            for child in order.sample(children, len(children)):
                time.sleep(args.settle)  # the previous engine's threads stop spinning: a lone text ran 3 ms slower
                answer = child.ask(tower, batch)
                if answer is not None:
                    samples.setdefault((child.engine.key, tower, batch), []).append(answer)
    return samples


def report(args, model_dir, config, tokens, plan, every, children, samples, reference, skipped) -> dict:
    """Medians, floors, efficiencies and cosines, per tower."""
    towers = {}
    for tower in args.towers:
        roof = {}
        for batch in args.batches:
            measured = {g.options["backend"]: samples[(g.key, tower, batch)] for g in GEMM_ENGINES
                        if (g.key, tower, batch) in samples}
            per_round = [gemm.floors(plan[(tower, batch)], {name: m[r][1] for name, m in measured.items()})
                         for r in range(min(map(len, measured.values()), default=0))]
            roof[batch] = {fmt: {"gflops": statistics.median(f[fmt]["gflops"] for f in per_round),
                                 "floor_ms": statistics.median(f[fmt]["seconds"] for f in per_round) / batch * 1000,
                                 "shares": {name: statistics.median(f[fmt]["shares"][name] for f in per_round)
                                            for name in measured}}
                           for fmt in gemm.FORMATS if per_round and all(fmt in f for f in per_round)}
        rows = []
        for child in children:
            engine = child.engine
            if engine.kind == "gemm" or engine.key in skipped:
                continue
            row = {"key": engine.key, "engine": engine.label, "format": engine.fmt, "note": child.note,
                   "batches": {}, "worst_cosine": 1.0}
            for batch in args.batches:
                got = samples[(engine.key, tower, batch)]
                rounds_ms = [seconds / batch * 1000 for seconds, _ in got]  # in the JSON: how noisy it was
                ms = statistics.median(rounds_ms)
                floor = roof[batch].get(engine.fmt, {}).get("floor_ms")
                row["batches"][batch] = {"ms": ms, "efficiency": floor / ms if floor else None, "rounds_ms": rounds_ms}
                if (eng.REFERENCE, tower, batch) in samples and row["worst_cosine"] is not None:
                    exact = unit(samples[(eng.REFERENCE, tower, batch)][-1][1])
                    row["worst_cosine"] = min(row["worst_cosine"], float((unit(got[-1][1]) * exact).sum(axis=1).min()))
                else:  # the reference failed: nothing to compare with
                    row["worst_cosine"] = None
            rows.append(row)
        flops = {b: sum(g.flops for g in plan[(tower, b)]) / b / 1e9 for b in args.batches}
        towers[tower] = {"tokens": {b: tokens[(tower, b)] for b in args.batches}, "gflop_per_item": flops,
                         "gemms": {b: [dataclasses.asdict(g) for g in plan[(tower, b)]] for b in args.batches},
                         "roofline": roof, "engines": rows}
    return {"model": str(model_dir), "model_name": model_dir.name, "machine": machine(args.threads),
            "rounds": args.rounds, "batches": args.batches, "reference_gemm": reference_rates(reference),
            "towers": towers, "skipped": {e.label: skipped[e.key] for e in every + GEMM_ENGINES if e.key in skipped}}


def reference_runs(context, gemms: list[eng.Engine], earlier: dict) -> dict:
    """The issue's reference matmul once more per backend, each in a fresh child: backend -> [measure's results]
    (a failed run is left out). Before and after the rounds: a rate is what the kernel can do, so the best counts."""
    runs = {name: list(results) for name, results in earlier.items()}
    for backend in gemms:
        status, result = one_off(context, "reference", backend.options["backend"])
        runs.setdefault(backend.options["backend"], []).extend([result] if status == "ok" else [])
    return runs


def reference_rates(reference: dict) -> dict:
    """format -> {GFLOP/s, backend} at the issue's shape, the best backend's best run, beside the issue's figure."""
    flops = gemm.reference_gemm().flops
    rates = {}
    for fmt in gemm.FORMATS:
        found = {backend: flops / min(r[fmt][0] for r in runs) / 1e9 for backend, runs in reference.items()
                 if runs and all(r[fmt][0] is not None for r in runs)}
        if found:
            backend = max(found, key=found.get)
            rates[fmt] = {"gflops": found[backend], "backend": backend, "issue": gemm.REFERENCE_ISSUE[fmt]}
    return rates


def render(report: dict) -> str:
    """The report as Markdown tables, one per tower."""
    m, batches = report["machine"], report["batches"]
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in m["flags"].items())
    versions = ", ".join(f"{name} {version or 'not installed'}" for name, version in m["versions"].items())
    ref = ", ".join(f"{fmt} {r['gflops']:.0f} ({r['backend']}; issue's EPYC {r['issue']})"
                    for fmt, r in report["reference_gemm"].items())
    m_, k_, n_ = gemm.REFERENCE
    lines = [f"{report['model_name']} on {m['cpu']}, {m['threads']} threads, median of {report['rounds']} rounds",
             f"CPU flags: {flags}", f"versions: {versions}",
             f"reference matmul {m_}x{k_} by {k_}x{n_}, {gemm.REFERENCE_THREADS} threads, GFLOP/s: {ref}"]
    for tower, data in report["towers"].items():
        tokens = ", ".join(f"batch {b}: {data['tokens'][b]}" for b in batches)
        gflop = ", ".join(f"batch {b}: {data['gflop_per_item'][b]:.3g}" for b in batches)
        lines += ["", f"## {tower} tower: tokens per item ({tokens}); matmul GFLOP per item ({gflop})", "",
                  "| roofline | " + " | ".join(f"batch {b} GFLOP/s | batch {b} floor ms/item" for b in batches)
                  + " | kernels (share of the floor's time) |", "| --- |" + " --- | --- |" * len(batches) + " --- |"]
        for fmt in gemm.FORMATS:
            cells = [f"{data['roofline'][b][fmt]['gflops']:.1f} | {data['roofline'][b][fmt]['floor_ms']:.3f}"
                     if fmt in data["roofline"][b] else "- | -" for b in batches]
            kernels = "; ".join(f"batch {b}: " + ", ".join(f"{name} {share:.0%}" for name, share in
                                                            data["roofline"][b][fmt]["shares"].items())
                                for b in batches if fmt in data["roofline"][b])
            lines.append(f"| {fmt} | " + " | ".join(cells) + f" | {kernels} |")
        lines += ["", "| engine | format | " + " | ".join(f"batch {b} ms/item | efficiency" for b in batches)
                  + " | worst cosine |", "| --- | --- |" + " --- | --- |" * len(batches) + " --- |"]
        for row in data["engines"]:
            cells = [f"{row['batches'][b]['ms']:.3f} | {percent(row['batches'][b]['efficiency'])}" for b in batches]
            note = f" ({row['note']})" if row["note"] else ""
            lines.append(f"| {row['engine']}{note} | {row['format']} | " + " | ".join(cells)
                         + (f" | {row['worst_cosine']:.6f} |" if row["worst_cosine"] is not None else " | - |"))
    lines += [""] + [f"skipped: {label}: {why}" for label, why in report["skipped"].items()]
    return "\n".join(lines)


def percent(share: float | None) -> str:
    """An efficiency: whole percent, one decimal below 10% (a tiny model's overheads), - without a floor."""
    if share is None:
        return "-"
    return f"{share * 100:.0f}%" if share >= 0.1 else f"{share * 100:.1f}%"


def csv_of(kind):
    return lambda text: [kind(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-l-14", choices=("tiny", "vit-b-32", "vit-l-14"))
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=csv_of(int), default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--settle", type=float, default=0.05,
                        help="seconds of quiet before each timed call (default 0.05), as a server between requests")
    parser.add_argument("--towers", type=csv_of(str), default=["image", "text"])
    parser.add_argument("--engines", type=csv_of(str), help="comma-separated keys (default: every available)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not set(args.towers) <= {"image", "text"} or args.rounds < 1 or min(args.batches) < 1:
        parser.error("--towers takes image,text; --rounds and --batches at least 1")
    result = measure(args)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
