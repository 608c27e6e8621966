"""What hostile but valid requests cost a worker: wall time and peak-RSS growth, case by case.

    python bench/cost.py [--model-dir models/vit-b-32] [--only SUBSTRING ...] [--fresh] [--json cost.json]

Starts `gunicorn -c gunicorn.conf.py wsgi:app` with every default but one worker (so the worker measured is
the one that answers), warms it up, then sends each case of testkit/hostile.py in turn: the body is made
before the clock starts, the worker's VmHWM is reset to its RSS (/proc/PID/clear_refs), and the answer's
status, error code, seconds and peak growth are printed beside the case's budget (testkit.hostile.budget, as
docs/reliability.md states it). With --fresh each case gets a new, warmed-up worker: a worker's RSS stays
near its last peak, which hides what a cheaper case after it costs. Nothing else should run meanwhile.
tests/test_cost.py runs the same table, less the heavy cases, against the tiny stand-in.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit import hostile  # noqa: E402
from testkit.faults import wait_for  # noqa: E402
from testkit.server import serve  # noqa: E402


def new_worker(server, pid: int) -> int:
    """Stop the worker; the master starts another: its pid once it has loaded and warmed up."""
    os.kill(pid, signal.SIGTERM)
    new = wait_for(lambda: next(iter(server.worker_pids() - {pid}), None), 120, "the worker's replacement")
    server.wait_loaded(120)
    hostile.warm_up(server.url)
    return new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "vit-b-32")
    parser.add_argument("--only", nargs="*", default=(), help="run the cases whose name holds one of these")
    parser.add_argument("--fresh", action="store_true", help="a new worker for each case")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    selected = [c for c in hostile.cases() if not args.only or any(s in c.name for s in args.only)]
    with tempfile.TemporaryDirectory() as tmp, requests.Session() as session, \
            serve(args.model_dir, Path(tmp) / "server.log", {"WEB_CONCURRENCY": "1"}) as server:
        (pid,) = server.worker_pids()
        per_item = hostile.warm_up(server.url)
        print(f"model: {args.model_dir.name}, {per_item * 1000:.0f} ms an item once warm")
        outcomes = []
        print(f"{'case':48} {'status':>6} {'code':24} {'seconds':>8} {'peak MiB':>9}  budget (s, MiB)")
        for case in selected:
            if args.fresh and outcomes:
                pid = new_worker(server, pid)
            outcome = hostile.run(case, server.url, pid, session)
            seconds, mib = hostile.budget(outcome, per_item)
            verdict = "ok" if hostile.within_budget(outcome, per_item) else "OVER"
            print(f"{outcome.name:48} {outcome.status:>6} {outcome.code or '':24} {outcome.seconds:>8.2f} "
                  f"{outcome.peak_growth_mib:>9.1f}  {verdict} ({seconds:.1f}, {mib:.0f})", flush=True)
            outcomes.append(outcome)
        requests.get(server.url + "/livez", timeout=5).raise_for_status()
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0 if all(hostile.within_budget(o, per_item) for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
