"""The service's cost against the model's own: transformers in-process versus real gunicorn, same inputs.

    python bench/perf.py --arch vit-b-32 --workers 1 --clients 1 --requests 20 [--images 1]
                         [--model-dir DIR] [--warmup 2] [--json OUT]

One run does, in this order:

1. model: `--model-dir`, or a stand-in of `--arch` built once under models/<arch> (git-ignored) and reused;
2. direct: transformers alone, none of clipsvc's code (`CLIPModel`/`CLIPProcessor.from_pretrained`, Pillow
   decode, processor + get_image_features + get_text_features under inference_mode), timed per request, with
   the server not running. Torch threads: cores ÷ workers, the service's default, with one client; with more
   clients the baseline is throughput of the same work done sequentially with all cores (threads = cores);
3. served: `gunicorn -c gunicorn.conf.py wsgi:app` on a free loopback port (WEB_CONCURRENCY=workers,
   CLIP_DEVICE=cpu, default torch threads), every worker warmed up, then `--clients` threads POSTing the same
   multipart bodies to /syte_test/clip, `--requests` in all; then each worker's RSS and PSS from
   /proc/<pid>/smaps_rollup.

It prints p50/p99 latency, throughput and the served/direct ratios (the goal: within 5%), and writes the
same as JSON with `--json OUT`. It is a benchmark: it exits 0 unless something fails, whatever the numbers.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import CLIPModel, CLIPProcessor
from urllib3 import encode_multipart_formdata

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from gunicorn_server import Server, free_port, gunicorn_env  # noqa: E402

from clipsvc.standin import ARCHS, build_standin  # noqa: E402

MODELS_ROOT = ROOT / "models"  # git-ignored; stand-ins are built here once and reused
CAPTION = "Man staring at the moon, moon is made of mechanical parts"  # the user's seed example
IMAGE_SIZE = (640, 480)
ENDPOINT = "/syte_test/clip"
GOAL = 0.05  # the issue: the service within 5% of the model's own cost
MIB = 1024 * 1024


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


def latency_stats(latencies_s: list[float], wall_s: float, images_per_request: int) -> dict[str, float]:
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
        "latencies_ms": [round(float(x), 1) for x in ms],  # in completion order: outliers show when they hit
    }


def smaps_rollup(pid: int | str) -> dict[str, float]:
    """RSS and PSS (with PSS's anonymous and file parts) in MiB: PSS splits shared pages fairly among workers."""
    fields = {"Rss": "rss_mib", "Pss": "pss_mib", "Pss_Anon": "pss_anon_mib", "Pss_File": "pss_file_mib"}
    memory = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            memory[fields[name]] = round(int(rest.split()[0]) * 1024 / MIB, 1)
    return memory


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (gunicorn's workers), from /proc, without psutil."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def unit(features: torch.Tensor | Any) -> torch.Tensor:
    """transformers 5's get_*_features return an output object whose pooler_output is the projection."""
    tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
    return torch.nn.functional.normalize(tensor, dim=-1)


# --- direct: transformers only ----------------------------------------------------------------------


def one_request(model: CLIPModel, processor: CLIPProcessor, jpegs: list[bytes], caption: str) -> np.ndarray:
    """What one service request costs the library alone: decode, preprocess, both towers, the cosines."""
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in jpegs]
    inputs = processor(text=[caption], images=images, return_tensors="pt", padding=True, truncation=True)
    with torch.inference_mode():
        image = unit(model.get_image_features(pixel_values=inputs["pixel_values"]))
        text = unit(model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]))
        (image @ text.T).tolist()  # the cosines, as the service computes them
    return image[0].numpy()


def run_direct(model_dir: Path, jpegs: list[bytes], caption: str, requests: int, warmup: int,
               threads: int) -> tuple[dict[str, Any], np.ndarray]:
    """The model's own cost per request: decode, processor, both towers; returns stats and one image vector."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(model_dir, local_files_only=True)
    load_s = time.perf_counter() - started
    for _ in range(warmup):
        vector = one_request(model, processor, jpegs, caption)
    latencies = []
    wall_start = time.perf_counter()
    for _ in range(requests):
        start = time.perf_counter()
        vector = one_request(model, processor, jpegs, caption)
        latencies.append(time.perf_counter() - start)
    wall = time.perf_counter() - wall_start
    stats = {"torch_threads": torch.get_num_threads(), "load_s": round(load_s, 2),
             **latency_stats(latencies, wall, len(jpegs)), "process_memory": smaps_rollup("self")}
    del model, processor
    gc.collect()  # give the weights back before the server's workers load theirs
    return stats, vector


# --- served: real gunicorn --------------------------------------------------------------------------


def multipart_body(jpegs: list[bytes], caption: str) -> tuple[bytes, str]:
    """Encoded once up front, so the client's own CPU time is not billed to the service."""
    fields: list[tuple[str, Any]] = [(f"image-{i}", (f"photo-{i}.jpg", data, "image/jpeg"))
                                     for i, data in enumerate(jpegs, 1)]
    fields.append(("text-1", caption))
    return encode_multipart_formdata(fields)


def post(port: int, body: bytes, content_type: str, request_id: str) -> tuple[float, int, bytes]:
    """One request on a fresh connection (sync workers close it anyway): latency up to the last body byte."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", ENDPOINT, body=body, headers={"Content-Type": content_type,
                                                                   "request_id": request_id})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    return time.perf_counter() - start, response.status, payload


def load_clients(port: int, body: bytes, content_type: str, requests: int, clients: int,
                 prefix: str) -> tuple[list[float], list[tuple[int, bytes]], float]:
    """`clients` threads share `requests` requests; returns latencies, responses and the wall time."""
    pending = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    responses: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []

    def client() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            try:
                latency, status, payload = post(port, body, content_type, f"{prefix}-{index}")
            except BaseException as exc:  # reported after the join, not lost in a thread
                errors.append(exc)
                return
            with lock:
                latencies.append(latency)
                responses.append((status, payload))

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(clients)]
    wall_start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall_start
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed: {errors[0]!r}") from errors[0]
    return latencies, responses, wall


def check_responses(responses: list[tuple[int, bytes]], images: int) -> np.ndarray:
    """Every answer must be a 200 with every vector and the score; returns the first image vector."""
    first = None
    for status, payload in responses:
        if status != 200:
            raise RuntimeError(f"the service answered {status}: {payload[:300]!r}")
        body = json.loads(payload)
        missing = [f"image_{i}_vector" for i in range(1, images + 1) if f"image_{i}_vector" not in body]
        missing += [key for key in ("text_1_vector", "image_vector_1_similarity_score") if key not in body]
        if missing:
            raise RuntimeError(f"the service's answer lacks {missing}: {sorted(body)}")
        first = np.asarray(body["image_1_vector"], dtype=np.float32) if first is None else first
    return first


def request_records(server: Server) -> list[dict[str, Any]]:
    """The service's per-request log lines for the endpoint (worker pid, in-worker duration)."""
    records = []
    for line in server.log_lines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "request" and record.get("path") == ENDPOINT:
            records.append(record)
    return records


def wait_all_loaded(server: Server, workers: int, timeout: float = 600) -> dict[int, int]:
    """Wait for every worker's model_loaded log line (/readyz: any one worker); returns {pid: torch threads}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.log_path.read_text()}")
        loaded = {}
        for line in server.log_lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "model_loaded":
                loaded[record["pid"]] = record.get("threads")
        if len(loaded) >= workers:
            return loaded
        time.sleep(0.2)
    raise TimeoutError(f"only some of {workers} workers loaded the model in {timeout}s:\n{server.log_path.read_text()}")


def warm_workers(server: Server, body: bytes, content_type: str, images: int, workers: int, warmup: int) -> None:
    """Rounds of `workers` concurrent requests until each worker has served `warmup` of them (first calls are slow)."""
    if warmup < 1:
        return
    for _ in range(10 * max(1, warmup)):
        served = Counter(record["worker_pid"] for record in request_records(server))
        if len(served) >= workers and min(served.values()) >= warmup:
            return
        _, responses, _ = load_clients(server.port, body, content_type, workers, workers, "warmup")
        check_responses(responses, images)
    print(f"note: not every worker served {warmup} warm-up requests; the first measured ones may be slower")


@contextmanager
def serve(model_dir: Path, log_path: Path, workers: int) -> Iterator[Server]:
    """`gunicorn -c gunicorn.conf.py wsgi:app` from the repo root on a free port; SIGTERM (then kill) afterwards.

    Unlike tests/gunicorn_server.gunicorn() it does not poll /readyz with a 1 s timeout: a big model's
    workers take longer than that to load, so readiness is read from their model_loaded log lines.
    """
    port = free_port()
    # CLIP_TORCH_THREADS empty: the service picks its default (cores ÷ workers), as it would in production.
    env = gunicorn_env(model_dir, port, WEB_CONCURRENCY=str(workers), CLIP_TORCH_THREADS="", CLIP_DEVICE="cpu")
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, port, log_path)
    try:
        yield server
    finally:
        try:
            server.stop(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_served(model_dir: Path, jpegs: list[bytes], caption: str, requests: int, clients: int, workers: int,
               warmup: int, log_dir: Path) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
    """Real gunicorn with the service's defaults; returns load stats, memory after the run and one image vector."""
    body, content_type = multipart_body(jpegs, caption)
    with serve(model_dir, log_dir / "gunicorn.log", workers) as server:
        loaded = wait_all_loaded(server, workers)
        warm_workers(server, body, content_type, len(jpegs), workers, warmup)
        before = len(request_records(server))
        latencies, responses, wall = load_clients(server.port, body, content_type, requests, clients, "perf")
        vector = check_responses(responses, len(jpegs))
        measured = request_records(server)[before:]
        pids = children(server.process.pid)
        memory = {pid: smaps_rollup(pid) for pid in pids}
        master = smaps_rollup(server.process.pid)
    in_worker = [record["duration_ms"] for record in measured if "duration_ms" in record]
    stats = {
        "torch_threads_per_worker": sorted(set(loaded.values())),
        **latency_stats(latencies, wall, len(jpegs)),
        "in_worker_p50_ms": round(float(np.percentile(in_worker, 50)), 2) if in_worker else None,
        "requests_per_worker": {str(pid): n for pid, n in sorted(Counter(r["worker_pid"] for r in measured).items())},
    }
    memory_report = {
        "workers": [{"pid": pid, **memory[pid]} for pid in pids],
        "total_worker_pss_mib": round(sum(m["pss_mib"] for m in memory.values()), 1),
        "total_worker_rss_mib": round(sum(m["rss_mib"] for m in memory.values()), 1),
        "master": {"pid": server.process.pid, **master},
    }
    return stats, memory_report, vector


# --- the report -------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Direct first with no server running, then served; one dict with everything the printout shows."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # building a stand-in would draw bars in the printout
    n_cores = cores()
    model_dir = args.model_dir.resolve() if args.model_dir else standin_model(args.arch)
    jpegs = [photo_jpeg(*IMAGE_SIZE, seed=i) for i in range(args.images)]
    sequential = args.clients > 1
    direct_threads = n_cores if sequential else max(1, n_cores // args.workers)
    if sequential:
        baseline = (f"with {args.clients} concurrent clients the direct baseline is the throughput of the same work "
                    f"done sequentially in-process with all {n_cores} cores ({direct_threads} torch threads); "
                    "its latency is one request alone, so compare throughput")
    else:
        baseline = (f"direct runs one request at a time with {direct_threads} torch threads "
                    f"(cores ÷ workers = {n_cores} ÷ {args.workers}, the service's default per worker)")
    load_before = os.getloadavg()
    direct, direct_vector = run_direct(model_dir, jpegs, CAPTION, args.requests, args.warmup, direct_threads)
    with tempfile.TemporaryDirectory(prefix="clipsvc-perf-") as log_dir:
        served, memory, served_vector = run_served(model_dir, jpegs, CAPTION, args.requests, args.clients,
                                                   args.workers, args.warmup, Path(log_dir))
    threads = served.pop("torch_threads_per_worker")
    return {
        "arch": args.arch if args.model_dir is None else None,
        "model_dir": str(model_dir),
        "inputs": {"images_per_request": args.images, "image": f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG q90",
                   "captions_per_request": 1, "caption": CAPTION},
        "requests": args.requests,
        "clients": args.clients,
        "warmup_per_worker": args.warmup,
        "workers": args.workers,
        "torch_threads_per_worker": threads[0] if len(threads) == 1 else threads,
        "baseline": baseline,
        "direct": direct,
        "served": served,
        "ratios": {
            "p50_latency_served_over_direct": round(served["p50_ms"] / direct["p50_ms"], 4),
            "throughput_served_over_direct": round(served["throughput_rps"] / direct["throughput_rps"], 4),
        },
        # The same inputs must give the same vectors, or the two sides did not do the same work.
        "served_vs_direct_cosine": round(float(np.dot(direct_vector, served_vector)), 6),
        "memory": memory,
        "machine": {"cpu_model": cpu_model(), "cores": n_cores, "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__},
    }


def render(report: dict[str, Any]) -> str:
    """The human-readable summary; the JSON (--json) holds the same and more."""
    direct, served, ratios, memory, machine = (report[k] for k in ("direct", "served", "ratios", "memory", "machine"))
    name = report["arch"] + " stand-in" if report["arch"] else "model"
    latency_over = ratios["p50_latency_served_over_direct"] - 1
    throughput_under = 1 - ratios["throughput_served_over_direct"]
    lines = [
        f"clipsvc perf: {name} at {report['model_dir']}",
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, load average before "
        + " ".join(f"{x:.2f}" for x in machine["load_avg_before"]) + ", after (this run included) "
        + " ".join(f"{x:.2f}" for x in machine["load_avg_after"]),
        f"each request: {report['inputs']['images_per_request']} x {report['inputs']['image']} + 1 caption; "
        f"{report['requests']} measured requests per side after warm-up",
        f"direct: transformers in-process, server not running, {direct['torch_threads']} torch threads, sequential",
        f"served: gunicorn, {report['workers']} worker(s) x {report['torch_threads_per_worker']} torch threads, "
        f"{report['clients']} concurrent client(s)",
        f"baseline: {report['baseline']}",
        "",
        f"{'':16}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'images/s':>10}",
        f"{'direct':16}{direct['p50_ms']:10.1f}{direct['p99_ms']:10.1f}{direct['throughput_rps']:10.2f}"
        f"{direct['images_per_s']:10.2f}",
        f"{'served':16}{served['p50_ms']:10.1f}{served['p99_ms']:10.1f}{served['throughput_rps']:10.2f}"
        f"{served['images_per_s']:10.2f}",
        f"{'served/direct':16}{ratios['p50_latency_served_over_direct']:10.3f}{'':10}"
        f"{ratios['throughput_served_over_direct']:10.3f}",
        "",
        f"served p50 latency {latency_over:+.1%} vs direct, throughput {-throughput_under:+.1%} "
        f"(goal: within {GOAL:.0%})",
    ]
    if served["in_worker_p50_ms"] is not None:
        lines.append(f"in-worker p50 (the service's request log): {served['in_worker_p50_ms']:.1f} ms; "
                     f"requests per worker: {served['requests_per_worker']}")
    cosine = report["served_vs_direct_cosine"]
    lines.append(f"served vs direct image vector cosine: {cosine:.6f}"
                 + ("" if cosine > 0.999 else "  WARNING: the two sides did not compute the same thing"))
    lines.append("memory after the run (/proc/<pid>/smaps_rollup):")
    for worker in memory["workers"]:
        lines.append(f"  worker {worker['pid']}: RSS {worker['rss_mib']:.1f} MiB, PSS {worker['pss_mib']:.1f} MiB "
                     f"(anon {worker.get('pss_anon_mib', 0):.1f}, file {worker.get('pss_file_mib', 0):.1f})")
    lines.append(f"  all {len(memory['workers'])} worker(s): PSS {memory['total_worker_pss_mib']:.1f} MiB, "
                 f"RSS {memory['total_worker_rss_mib']:.1f} MiB; master PSS {memory['master']['pss_mib']:.1f} MiB; "
                 f"direct process PSS {direct['process_memory']['pss_mib']:.1f} MiB")
    return "\n".join(lines)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the summary, write the JSON; returns the report for tests and notebooks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="vit-b-32",
                        help="stand-in built (once) under models/<arch>; ignored with --model-dir")
    parser.add_argument("--model-dir", type=Path, help="an existing model directory instead of a stand-in")
    parser.add_argument("--workers", type=positive, default=1, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--clients", type=positive, default=1, help="concurrent client threads")
    parser.add_argument("--requests", type=positive, default=20, help="measured requests per side, in total")
    parser.add_argument("--images", type=positive, default=1, help="640x480 JPEGs per request (plus one caption)")
    parser.add_argument("--warmup", type=int, choices=range(0, 101), metavar="0-100", default=2,
                        help="unmeasured requests: direct, and per worker")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    if args.images >= 64:
        parser.error("--images must stay under the service's default CLIP_MAX_ITEMS (64), caption included")
    report = measure(args)
    print(render(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
