"""Start-up cost of the real server: the master's memory, the workers' boot time, everyone's PSS.

    python bench/startup.py [--model-dir models/vit-b-32] [--runs 3] [--root DIR ...] [--env CLIP_X=VALUE ...]
                            [--json report.json]

Each run starts `gunicorn -c gunicorn.conf.py wsgi:app` from a `--root` (this checkout by default; give two,
e.g. a `git worktree` of an older commit, and their runs alternate so a busy moment hits both alike) on a free
loopback port with the defaults (2 workers, CLIP_DEVICE=auto), timestamps the log lines as they arrive, waits
for every worker's "model loaded", lets it settle, reads /proc/<pid>/smaps_rollup of the master and each
worker and their CPU time so far, then stops it with SIGTERM. Medians over the runs are printed per root, and
written with `--json`.
A worker's boot -> model loaded is its imports (torch, transformers: in the worker once the master no longer
imports them) plus `load_seconds`, the model load the worker itself reports.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rollup(pid: int) -> dict[str, float]:
    """Rss and Pss of a process, MB, from the kernel's own sums."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key.lower()] = int(rest.split()[0]) / 1024
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(root: Path, model_dir: Path, workers: int, settle: float, settings: dict[str, str]) -> dict:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIP_")}
    env.update(CLIP_MODEL_DIR=str(model_dir), PORT=str(port), WEB_CONCURRENCY=str(workers), PYTHONUNBUFFERED="1",
               **settings)
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "wsgi:app"]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, dict]] = []

    def read() -> None:
        for line in process.stdout:
            try:
                lines.append((time.monotonic() - started, json.loads(line)))
            except ValueError:
                lines.append((time.monotonic() - started, {"message": line.rstrip()}))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while sum(r.get("event") == "model_loaded" for _, r in list(lines)) < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not load the model:\n" + "\n".join(str(r) for _, r in lines))
            time.sleep(0.05)
        ready = max(t for t, r in lines if r.get("event") == "model_loaded")
        time.sleep(settle)
        children = [int(p) for p in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
        master = rollup(process.pid)
        workers_mem = [rollup(pid) for pid in children]
        cpu = {"master": cpu_seconds(process.pid), "workers": sum(cpu_seconds(pid) for pid in children)}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        reader.join(5)
    booted = {int(r["message"].rsplit(" ", 1)[-1]): t for t, r in lines
              if str(r.get("message", "")).startswith("Booting worker with pid")}
    loaded = {int(r.get("pid", 0)): t for t, r in lines if r.get("event") == "model_loaded"}
    boot_to_loaded = [loaded[pid] - booted[pid] for pid in loaded if pid in booted]
    load_seconds = [r["load_seconds"] for _, r in lines if r.get("event") == "model_loaded"]
    return {
        "first_fork_s": min(booted.values()),
        "worker_boot_to_loaded_s": statistics.median(boot_to_loaded),
        "worker_load_seconds": statistics.median(load_seconds),
        "all_loaded_s": ready,
        "master_rss_mb": master["rss"], "master_pss_mb": master["pss"],
        "worker_rss_mb": statistics.median(w["rss"] for w in workers_mem),
        "total_pss_mb": master["pss"] + sum(w["pss"] for w in workers_mem),
        # CPU time to get there, which a busy machine stretches less than wall time: the master's (imports
        # included) and all workers' together.
        "master_cpu_s": cpu["master"], "workers_cpu_s": cpu["workers"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "vit-b-32")
    parser.add_argument("--root", type=Path, action="append", help="a checkout whose gunicorn.conf.py runs "
                        "(repeatable; default: this one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the last model load")
    parser.add_argument("--env", action="append", default=[], metavar="CLIP_X=VALUE",
                        help="a setting for every run (the defaults otherwise)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    roots = [root.resolve() for root in args.root or [ROOT]]
    runs: dict[Path, list[dict]] = {root: [] for root in roots}
    for number in range(args.runs):
        for root in roots:
            runs[root].append(one_run(root, args.model_dir.resolve(), args.workers, args.settle,
                                      dict(pair.split("=", 1) for pair in args.env)))
            print(f"{root} run {number + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[root][-1].items()),
                  flush=True)
    medians = {str(root): {key: round(statistics.median(r[key] for r in rs), 2) for key in rs[0]}
               for root, rs in runs.items()}
    for root, values in medians.items():
        print(f"{root} median: " + ", ".join(f"{k} {v}" for k, v in values.items()))
    print(f"load average: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"runs": {str(k): v for k, v in runs.items()}, "median": medians}, indent=2))

if __name__ == "__main__":
    main()
