"""The service's cost against the model's own: transformers in-process versus real gunicorn, same inputs.

    python bench/perf.py --arch vit-b-32 [--workers 2] [--clients 1,4] [--requests 40] [--rounds 4]
                         [--images 1] [--texts 1] [--device cpu|cuda] [--threads T] [--max-batch 64]
                         [--encoding float|base64] [--model-dir DIR] [--warmup 2] [--json OUT]

One run does, in this order:

1. model: `--model-dir`, or a stand-in of `--arch` built once under models/<arch> (git-ignored) and reused;
2. direct, transformers alone, none of clipsvc's code (bench/perf_direct.py), loaded in this process. On CPU,
   one request at a time (Pillow decode, processor, get_image_features + get_text_features under
   inference_mode) with all cores, timed per request: compare its latency with one client's and its
   throughput with several clients'. On CUDA (fp16, as the service), batched as the service batches: a pool of
   one thread per core decodes and preprocesses requests while forward passes run over up to `--max-batch`
   rows of several requests; plus the GPU's ceiling, forward passes alone on rows already on the device;
3. served: `gunicorn -c gunicorn.conf.py wsgi:app` on a free loopback port with the service's defaults
   (WEB_CONCURRENCY=workers, CLIP_DEVICE=device; on CUDA CLIP_THREADS=threads and CLIP_MAX_BATCH=max-batch),
   every worker warmed up, then for each `--clients` count that many threads POSTing the same multipart bodies
   to /syte_test/clip, each on a new connection as curl does;
4. direct and served alternate in `--rounds` rounds, so a drift in the machine's speed hits both alike; then
   each worker's RSS and PSS from /proc/<pid>/smaps_rollup, read after this process has dropped its own copy
   of the weights (and GPU memory from nvidia-smi; batch sizes from the debug log on CUDA).

It prints p50/p99 latency, throughput and the served/direct ratios per client count, and writes the same as
JSON with `--json OUT`. It is a benchmark: it exits 0 unless something fails, whatever the numbers.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # clipsvc and testkit from the repo root; the other benches
import perf_direct as direct  # noqa: E402
import perf_served as served_side  # noqa: E402
from perf_served import Payload  # noqa: E402

from clipsvc.encoder.standin import ARCHS, build_standin  # noqa: E402
from clipsvc.settings import Settings  # noqa: E402
from testkit import jsonlog, procs  # noqa: E402
from testkit.server import serve  # noqa: E402

MODELS_ROOT = ROOT / "models"  # git-ignored; stand-ins are built here once and reused
CAPTION = "Man staring at the moon, moon is made of mechanical parts"  # the user's seed example
IMAGE_SIZE = (640, 480)
MIB = procs.MIB
SERVER_START_S = 600  # every worker loading a big model on CPU


# --- inputs and model -------------------------------------------------------------------------------


def photo_jpeg(width: int, height: int, seed: int) -> bytes:
    """Gradients plus sensor-like noise as a quality-90 JPEG: decodes like a photo, unlike a flat colour."""
    rng = np.random.default_rng(seed)
    x, y = np.linspace(0, 1, width), np.linspace(0, 1, height)
    channels = [np.outer(np.sin(y * 7 + seed), np.cos(x * 5)), np.outer(y, x) * 2 - 1, np.outer(np.cos(y * 3), x ** 2)]
    pixels = np.clip(np.stack(channels, -1) * 110 + 128 + rng.normal(0, 8, (height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def standin_model(arch: str) -> Path:
    """Reuse models/<arch> if it holds that arch, else build it there (atomically, so a killed build is not reused)."""
    target = MODELS_ROOT / arch
    if (target / "config.json").exists():
        vision = json.loads((target / "config.json").read_text())["vision_config"]
        spec = ARCHS[arch]["vision"]
        if (vision["hidden_size"], vision["num_hidden_layers"]) != (spec["hidden_size"], spec["num_hidden_layers"]):
            raise SystemExit(f"{target} holds another architecture than {arch}; pass --model-dir or move it")
        return target
    MODELS_ROOT.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{arch}-", dir=MODELS_ROOT))
    try:
        build_standin(building, arch=arch)
        umask = os.umask(0)
        os.umask(umask)
        building.chmod(0o777 & ~umask)  # mkdtemp makes it private; a built model is an ordinary directory
        building.rename(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)  # already renamed, or lost a race: either way gone
    return target


def in_process_options(doc: str) -> argparse.ArgumentParser:
    """The options of a bench that times the service's towers in its own process, interleaved in rounds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--arch", default="vit-l-14")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--settle", type=float, default=0.05, help="seconds of quiet before each timed call")
    return parser


def chosen_model(args: argparse.Namespace) -> Path:
    """`--model-dir`, or the stand-in of `--arch` (standin_model): how every bench picks its model."""
    return args.model_dir.resolve() if args.model_dir else standin_model(args.arch)


def in_fresh_process(script: str, name: str, *args: str) -> dict:
    """`script --one name *args` in a new Python process (its memory, oneDNN's state and torch's threads its own,
    as a worker's), and the JSON object its last line prints."""
    done = subprocess.run([sys.executable, script, "--one", name, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cores() -> int:
    """Cores this process may use, counted as the service counts them (affinity, cpusets)."""
    return max(1, len(os.sched_getaffinity(0)))


def cpu_model() -> str:
    """The CPU's marketing name, so results from different machines are not compared by mistake."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- statistics and memory --------------------------------------------------------------------------


def latency_stats(latencies_s: list[float], wall_s: float, images_per_request: int,
                  texts_per_request: int = 1) -> dict[str, float]:
    """p50/p99/mean in ms and throughput over the whole wall time (not 1/mean: concurrency counts)."""
    ms = np.asarray(latencies_s) * 1000
    return {
        "requests": len(latencies_s),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "wall_s": round(wall_s, 3),
        "throughput_rps": round(len(latencies_s) / wall_s, 3),
        "images_per_s": round(len(latencies_s) * images_per_request / wall_s, 3),
        "texts_per_s": round(len(latencies_s) * texts_per_request / wall_s, 3),
        "latencies_ms": [round(float(x), 1) for x in ms],  # in completion order: outliers show when they hit
    }


# --- one run: direct and served, interleaved -----------------------------------------------------------


def server_settings(args: argparse.Namespace) -> dict[str, str]:
    """The service's environment beyond the model and port: empty values take the service's defaults."""
    env = {"WEB_CONCURRENCY": str(args.workers), "CLIP_DEVICE": args.device,
           # Empty: the service picks its default (threads follow the load), as it would in production.
           "CLIP_TORCH_THREADS": "",
           "CLIP_MAX_REQUESTS": "0"}  # a worker recycled mid-run would reload the model inside the measurement
    if args.device == "cuda":
        env.update(CLIP_THREADS=str(args.threads or ""), CLIP_MAX_BATCH=str(args.max_batch),
                   CLIP_LOG_LEVEL="debug")  # debug: the inference thread logs every batch's size and time
    env.update(args.env)
    return env


def direct_round(model: Any, processor: Any, work: direct.Work, args: argparse.Namespace, requests: int,
                 threads: int) -> direct.Timing:
    if args.device == "cuda":
        return direct.run_batched(model, processor, work, requests, 0, args.max_batch, threads)
    return direct.run_sequential(model, processor, work, requests, 0)


def joined(timings: list[tuple[list[float], float]], work: direct.Work) -> dict[str, Any]:
    """Rounds of (latencies, wall seconds) as one set of statistics."""
    return latency_stats([x for latencies, _ in timings for x in latencies], sum(wall for _, wall in timings),
                         len(work.jpegs), len(work.captions))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Direct and served in alternating rounds (a drift of the machine's speed hits both alike), then memory."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # building a stand-in would draw bars in the printout
    n_cores = cores()
    model_dir = chosen_model(args)
    work = direct.Work([photo_jpeg(*IMAGE_SIZE, seed=i) for i in range(args.images)], captions(args.texts))
    payload = Payload.build(work, args.encoding)
    direct_threads, baseline = describe_baseline(args, n_cores)
    load_before = os.getloadavg()
    torch.set_num_threads(direct_threads)
    started = time.perf_counter()
    model, processor = direct.load(model_dir, args.device)
    load_s = time.perf_counter() - started
    per_round = -(-args.requests // args.rounds)
    direct_timings: list[tuple[list[float], float]] = []
    served_timings: dict[int, list[tuple[list[float], float]]] = {c: [] for c in args.clients}
    with tempfile.TemporaryDirectory(prefix="clipsvc-perf-") as log_dir, \
            serve(model_dir, Path(log_dir) / "gunicorn.log", server_settings(args), timeout=SERVER_START_S) as server:
        loaded = {pid: line.get("threads") for pid, line in server.wait_loaded().items()}
        served_side.warm_workers(server, payload, args.workers, max(args.clients), args.warmup)
        direct_vector = direct_round(model, processor, work, args, max(1, args.warmup), direct_threads).vector
        before = len(server.log_lines())
        for round_number in range(args.rounds):
            timing = direct_round(model, processor, work, args, per_round, direct_threads)
            direct_timings.append((timing.latencies_s, timing.wall_s))
            for clients in args.clients:
                latencies, responses, wall = served_side.load_clients(server.port, payload, per_round, clients,
                                                                      f"perf-{clients}-{round_number}")
                served_vector = served_side.check_responses(responses, payload)
                served_timings[clients].append((latencies, wall))
        extra = {}
        if args.device == "cuda":
            extra = {"batch_rows": args.max_batch,
                     "forward_only": direct.forward_only(model, processor, work, args.max_batch),
                     "gpu_peak_allocated_mib": round(torch.cuda.max_memory_allocated() / MIB, 1)}
        direct_memory = procs.smaps_rollup("self")
        del model, processor
        gc.collect()  # the workers' PSS is read without this process sharing the weights' pages
        if args.device == "cuda":
            torch.cuda.empty_cache()
        records = jsonlog.parse(server.log_lines()[before:])
        memory = served_memory(server, args.device)
    direct_stats = {"torch_threads": direct_threads, "load_s": round(load_s, 2), **joined(direct_timings, work),
                    **extra, "process_memory": direct_memory}
    runs = [served_run(clients, joined(served_timings[clients], work), records) for clients in args.clients]
    batches = [record for record in records if record.get("event") == "batch"]
    for run in runs:
        run["ratios"] = {
            "p50_latency_served_over_direct": round(run["p50_ms"] / direct_stats["p50_ms"], 4),
            "throughput_served_over_direct": round(run["throughput_rps"] / direct_stats["throughput_rps"], 4),
            **{f"{key}_served_over_forward_only": round(run[key] / rate, 4)
               for key, rate in direct_stats.get("forward_only", {}).items()},
        }
    threads = sorted(set(loaded.values()))
    return {
        "arch": args.arch if args.model_dir is None else None,
        "model_dir": str(model_dir),
        "device": args.device,
        "inputs": {"images_per_request": args.images, "image": f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG q90",
                   "captions_per_request": args.texts, "caption": CAPTION, "encoding": args.encoding},
        "requests": args.requests,
        "rounds": args.rounds,
        "clients": args.clients,
        "warmup_per_worker": args.warmup,
        "workers": args.workers,
        "server_settings": server_settings(args),
        "torch_threads_per_worker": threads[0] if len(threads) == 1 else threads,
        "baseline": baseline,
        "direct": direct_stats,
        "served": runs,
        **({"batches": served_side.batch_summary(batches)} if batches else {}),
        # The same inputs must give the same vectors, or the two sides did not do the same work.
        "served_vs_direct_cosine": round(float(np.dot(direct_vector, served_vector)), 6),
        "memory": memory,
        "machine": {"cpu_model": cpu_model(), "cores": n_cores, "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                    "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__},
    }


def served_run(clients: int, stats: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """One client count's figures, with the in-worker time and the spread over workers from the request log."""
    measured = [r for r in jsonlog.request_lines(records, served_side.ENDPOINT)
                if r["request_id"].startswith(f"perf-{clients}-")]
    in_worker = [record["duration_ms"] for record in measured if "duration_ms" in record]
    return {
        "clients": clients, **stats,
        "in_worker_p50_ms": round(float(np.percentile(in_worker, 50)), 2) if in_worker else None,
        "requests_per_worker": {str(pid): n for pid, n in sorted(Counter(r["worker_pid"] for r in measured).items())},
    }


def served_memory(server: Any, device: str) -> dict[str, Any]:
    """Each worker's and the master's RSS/PSS after the run (and GPU memory per worker from nvidia-smi)."""
    pids = sorted(server.worker_pids())
    memory = {pid: procs.smaps_rollup(pid) for pid in pids}
    on_gpu = served_side.gpu_memory() if device == "cuda" else {}
    report = {
        "workers": [{"pid": pid, **memory[pid], **({"gpu_mib": on_gpu[pid]} if pid in on_gpu else {})}
                    for pid in pids],
        "total_worker_pss_mib": round(sum(m["pss_mib"] for m in memory.values()), 1),
        "total_worker_rss_mib": round(sum(m["rss_mib"] for m in memory.values()), 1),
        "master": {"pid": server.process.pid, **procs.smaps_rollup(server.process.pid)},
    }
    if on_gpu:
        report["total_worker_gpu_mib"] = round(sum(on_gpu.get(pid, 0) for pid in pids), 1)
    return report


# --- the report -------------------------------------------------------------------------------------


def captions(count: int) -> list[str]:
    """The seed caption, then numbered variants of it: distinct texts of the same length."""
    return [CAPTION] + [f"{CAPTION}, view {i}" for i in range(2, count + 1)]


def describe_baseline(args: argparse.Namespace, n_cores: int) -> tuple[int, str]:
    """Torch threads for the direct side, and what its figures mean."""
    if args.device == "cuda":
        return n_cores, (f"direct batches as the service does: {n_cores} threads decode and preprocess requests while "
                         f"fp16 forward passes run over up to {args.max_batch} rows of several requests; its "
                         "latency includes waiting for the batch, so compare throughput")
    return n_cores, (f"direct runs one request at a time in-process with all {n_cores} cores ({n_cores} torch "
                     "threads): compare its latency with one client's, its throughput with several clients'")


def render(report: dict[str, Any]) -> str:
    """The human-readable summary; the JSON (--json) holds the same and more."""
    direct_stats, memory, machine = (report[k] for k in ("direct", "memory", "machine"))
    name = report["arch"] + " stand-in" if report["arch"] else "model"
    inputs = report["inputs"]
    mode = f"batched up to {direct_stats['batch_rows']} rows" if "batch_rows" in direct_stats else "sequential"
    lines = [
        f"clipsvc perf: {name} at {report['model_dir']}, on {report['device']}"
        + (f" ({machine['gpu']})" if machine["gpu"] else ""),
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, load average before "
        + " ".join(f"{x:.2f}" for x in machine["load_avg_before"]) + ", after (this run included) "
        + " ".join(f"{x:.2f}" for x in machine["load_avg_after"]),
        f"each request: {inputs['images_per_request']} x {inputs['image']} + {inputs['captions_per_request']} "
        f"caption(s), vectors as {inputs['encoding']}; {report['requests']} measured requests per side and client "
        f"count, in {report['rounds']} alternating rounds",
        f"direct: transformers in-process, {direct_stats['torch_threads']} torch threads, {mode}",
        f"served: gunicorn, {report['workers']} worker(s), torch threads at load {report['torch_threads_per_worker']}"
        f" (they follow the load unless CLIP_TORCH_THREADS is set); settings {report['server_settings']}",
        f"baseline: {report['baseline']}",
        "",
        f"{'':16}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'images/s':>10}{'texts/s':>10}"
        f"{'p50/direct':>12}{'req/s/direct':>14}",
    ]
    rows = [("direct", direct_stats, None)] + [(f"served {run['clients']} cl.", run, run["ratios"])
                                               for run in report["served"]]
    for label, stats, ratios in rows:
        line = (f"{label:16}{stats['p50_ms']:10.1f}{stats['p99_ms']:10.1f}{stats['throughput_rps']:10.2f}"
                f"{stats['images_per_s']:10.1f}{stats['texts_per_s']:10.1f}")
        if ratios:
            line += (f"{ratios['p50_latency_served_over_direct']:12.3f}"
                     f"{ratios['throughput_served_over_direct']:14.3f}")
        lines.append(line)
    lines.append("")
    for run in report["served"]:
        for key, rate in direct_stats.get("forward_only", {}).items():
            lines.append(f"GPU ceiling, forward passes alone at {direct_stats['batch_rows']} rows: {rate:.1f} {key}; "
                         f"served with {run['clients']} clients reaches "
                         f"{run['ratios'][f'{key}_served_over_forward_only']:.3f} of it")
        if run["in_worker_p50_ms"] is not None:
            lines.append(f"{run['clients']} client(s): in-worker p50 (the service's request log) "
                         f"{run['in_worker_p50_ms']:.1f} ms; requests per worker: {run['requests_per_worker']}")
    for name, batch in report.get("batches", {}).items():
        lines.append(f"batches ({name}): {batch['batches']}, mean {batch['mean_rows']} rows (max {batch['max_rows']}), "
                     f"queue wait p50 {batch['wait_p50_ms']} ms, run p50/p99 {batch['run_p50_ms']}/"
                     f"{batch['run_p99_ms']} ms")
    cosine = report["served_vs_direct_cosine"]
    lines.append(f"served vs direct first vector cosine: {cosine:.6f}"
                 + ("" if cosine > 0.999 else "  WARNING: the two sides did not compute the same thing"))
    lines.append("memory after the run (/proc/<pid>/smaps_rollup; GPU from nvidia-smi):")
    for worker in memory["workers"]:
        lines.append(f"  worker {worker['pid']}: RSS {worker['rss_mib']:.1f} MiB, PSS {worker['pss_mib']:.1f} MiB "
                     f"(anon {worker.get('pss_anon_mib', 0):.1f}, file {worker.get('pss_file_mib', 0):.1f})"
                     + (f", GPU {worker['gpu_mib']:.0f} MiB" if "gpu_mib" in worker else ""))
    lines.append(f"  all {len(memory['workers'])} worker(s): PSS {memory['total_worker_pss_mib']:.1f} MiB, "
                 f"RSS {memory['total_worker_rss_mib']:.1f} MiB; master PSS {memory['master']['pss_mib']:.1f} MiB; "
                 f"direct process PSS {direct_stats['process_memory']['pss_mib']:.1f} MiB (with the weights loaded)"
                 + (f"; GPU {memory['total_worker_gpu_mib']:.0f} MiB" if "total_worker_gpu_mib" in memory else ""))
    return "\n".join(lines)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


def client_counts(text: str) -> list[int]:
    """`1,4`: each count is measured on the same server, in the same rounds."""
    return [positive(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the summary, write the JSON; returns the report for tests and notebooks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="vit-b-32",
                        help="stand-in built (once) under models/<arch>; ignored with --model-dir")
    parser.add_argument("--model-dir", type=Path, help="an existing model directory instead of a stand-in")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="both sides: fp32 on cpu; fp16 and dynamic batching on cuda")
    parser.add_argument("--workers", type=positive, default=Settings().workers,
                        help="gunicorn workers (WEB_CONCURRENCY; default: the service's)")
    parser.add_argument("--threads", type=positive,
                        help="request threads per worker on cuda (CLIP_THREADS; default: the service's)")
    parser.add_argument("--max-batch", type=positive, default=64,
                        help="rows per forward pass on cuda: the service's CLIP_MAX_BATCH and the direct batches")
    parser.add_argument("--clients", type=client_counts, default=[1, 4],
                        help="concurrent client threads, one count or several (1,4), each measured")
    parser.add_argument("--requests", type=positive, default=20,
                        help="measured requests per side and client count, in total")
    parser.add_argument("--rounds", type=positive, default=4,
                        help="direct and served alternate this many times, each round a share of --requests")
    parser.add_argument("--images", type=int, default=1, help="640x480 JPEGs per request (0 or more)")
    parser.add_argument("--texts", type=int, default=1, help="captions per request (0 or more)")
    parser.add_argument("--encoding", choices=("float", "base64"), default="float",
                        help="how the service returns vectors (?encoding=)")
    parser.add_argument("--warmup", type=int, choices=range(0, 101), metavar="0-100", default=2,
                        help="unmeasured requests: direct, and per worker")
    parser.add_argument("--env", type=setting, action="append", default=[], metavar="CLIP_X=VALUE",
                        help="a server setting other than its default (repeat for several); the report lists them")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    if min(args.images, args.texts) < 0 or args.images + args.texts < 1:
        parser.error("--images and --texts must be 0 or more, and at least one of them above 0")
    if args.images + args.texts > 64:
        parser.error("--images plus --texts must stay within the service's default CLIP_MAX_ITEMS (64)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    report = measure(args)
    print(render(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
