"""A broken model directory stops gunicorn's start-up fast, with one clear JSON line and no respawn loop, also
when the workers fail together while the master is descheduled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit import procs
from testkit.faults import report, wait_for
from testkit.server import TEST_WORKERS as WORKERS
from testkit.server import gunicorn


def copy(model_dir: Path, path: Path) -> Path:
    shutil.copytree(model_dir, path)
    return path


def truncate_weights(model_dir: Path, path: Path) -> None:
    weights = copy(model_dir, path) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def two_models(model_dir: Path, path: Path) -> None:
    copy(model_dir, path / "clip-a")
    copy(model_dir, path / "clip-b")


def misfit(path: Path) -> Path:
    """A config whose projection size the weights do not have: only loading the weights can tell."""
    config = json.loads((path / "config.json").read_text())
    config["projection_dim"] *= 2
    (path / "config.json").write_text(json.dumps(config))
    return path


WORKER_SIDE = "weights-that-do-not-fit-the-config"
MODEL_FAULTS = {  # case: (how to break a copy of the model at the path, what the error line says)
    "missing": (lambda m, p: None, "does not exist"),
    "empty-directory": (lambda m, p: p.mkdir(), "is not a CLIP model directory (it holds nothing)"),
    "corrupt-config.json": (lambda m, p: (copy(m, p) / "config.json").write_text("{oops"),
                            "config.json is not valid JSON"),
    "truncated-weights": (truncate_weights, "model.safetensors is truncated"),
    "two-candidate-directories": (two_models, "holds several model directories (clip-a, clip-b)"),
    "corrupt-preprocessor_config.json": (lambda m, p: (copy(m, p) / "preprocessor_config.json").write_text("{oops"),
                                         "preprocessor_config.json is not valid JSON"),
    # Passes the master's cheap checks, so every worker fails to load it: where a respawn loop would come from.
    WORKER_SIDE: (lambda m, p: misfit(copy(m, p)), "could not load the CLIP model"),
}


@dataclass
class BrokenRun:
    path: Path
    lines: list[str]
    exit_code: int | None
    seconds: float


@pytest.fixture(scope="module")
def broken_model_runs(model_dir, tmp_path_factory) -> dict[str, BrokenRun]:
    """gunicorn on every broken model, two at a time (one per core): each run is mostly importing torch."""
    pending, running, finished = list(MODEL_FAULTS), {}, {}
    with ExitStack() as stack:
        deadline = time.monotonic() + 90
        while (pending or running) and time.monotonic() < deadline:
            while pending and len(running) < 2:
                case = pending.pop(0)
                root = tmp_path_factory.mktemp(case)
                MODEL_FAULTS[case][0](model_dir, root / "model")
                running[case] = (time.monotonic(), stack.enter_context(gunicorn(root / "model", root / "server.log",
                                                                                ready=False)))
            for case, (started, server) in list(running.items()):
                if server.process.poll() is not None:
                    finished[case] = (started, server, time.monotonic())
                    del running[case]
            time.sleep(0.02)
        finished |= {case: (started, server, None) for case, (started, server) in running.items()}
    # Read after every process is gone: a run still going at the deadline was killed by gunicorn()'s cleanup.
    return {case: BrokenRun(server.log_path.parent / "model",
                            [line for line in server.log_path.read_text().splitlines() if line.strip()],
                            server.process.returncode if ended else None, (ended or deadline) - started)
            for case, (started, server, ended) in finished.items()}


@pytest.mark.parametrize("case", MODEL_FAULTS)
def test_a_broken_model_stops_startup_with_one_clear_line_and_no_respawn_loop(broken_model_runs, record_property,
                                                                             case):
    """An operator's mistake with the mount must end start-up fast and say where, not crash-loop or hang."""
    run, message = broken_model_runs[case], MODEL_FAULTS[case][1]
    log = [json.loads(line) for line in run.lines if line.startswith("{")]
    errors = [r for r in log if r["level"] == "error" and str(run.path) in r["message"]]
    booted = sum(r["message"].startswith("Booting worker") for r in log)
    plain = [line for line in run.lines if not line.startswith("{")]
    report(record_property, f"broken model: {case}", exit_code=run.exit_code, seconds=round(run.seconds, 2),
           booting_worker_lines=booted, error_lines_naming_the_path=len(errors), plain_text_lines=len(plain))
    assert run.exit_code not in (None, 0)
    # Alone, with a second run beside it on 2 cores, 4-6 s (mostly importing torch); the bound leaves room for a busy
    # machine while still telling an exit from a respawn loop or a hang.
    assert run.seconds < 30
    assert errors and all(message in r["message"] and r.get("event") == "model_error" for r in errors)
    assert len(errors) <= WORKERS  # one line, or one per worker that tried; never a stream of them
    assert booted <= WORKERS
    assert not any("exception" in r for r in log)
    assert not plain, "\n".join(plain[-3:])


def test_workers_failing_together_still_end_in_json_lines_and_exit_code_3(model_dir, tmp_path):
    """A master briefly descheduled on a busy host (here: SIGSTOP) must not turn a clean boot failure into a crash."""
    broken = misfit(copy(model_dir, tmp_path / "model"))
    with gunicorn(broken, tmp_path / "server.log", ready=False) as server:

        def children() -> dict[int, str]:
            return procs.child_states(server.process.pid)

        wait_for(lambda: len(children()) == WORKERS, 30, "both workers forked", interval=0.005)
        os.kill(server.process.pid, signal.SIGSTOP)  # each worker needs ~1 s after its failure to exit
        try:
            # Both fail while the master sleeps; the first exits with the boot error, the other waits to be stopped.
            wait_for(lambda: server.log_path.read_text().count("model failed to load") == WORKERS, 30,
                     "both workers to fail")
            wait_for(lambda: "Z" in children().values(), 30, "the first failed worker to exit")
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        code = server.process.wait(30)
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    assert sum("model failed to load" in line and str(broken) in line for line in lines) == WORKERS
    assert sum("Booting worker" in line for line in lines) == WORKERS  # no replacement was booted
    plain = [line for line in lines if not line.startswith("{")]
    assert not plain, "\n".join(plain[-3:])
    assert code == 3
