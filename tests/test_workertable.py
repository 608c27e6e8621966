"""The worker table: shared across fork, counting busy workers and choosing the one to accept."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

from clipsvc.server.workertable import CLAIM_TIMEOUT_S, WorkerTable


def _serve_one(table: WorkerTable, entered, release) -> None:
    table.requests(os.getpid(), 1)
    entered.set()
    release.wait(10)
    table.requests(os.getpid(), 0)


def test_rows_are_shared_with_forked_children():
    """The gunicorn master makes the table before forking; each worker's row is seen by every other."""
    fork = multiprocessing.get_context("fork")
    table, entered, release = WorkerTable(slots=4), fork.Event(), fork.Event()
    child = fork.Process(target=_serve_one, args=(table, entered, release))
    child.start()
    try:
        assert entered.wait(10), "the child never reported its request"
        assert table.busy() == 1
        assert table.computing(os.getpid(), True) == 2  # the child's request and this forward pass
        table.computing(os.getpid(), False)
        assert table.busy() == 1
        assert table.should_accept(os.getpid()) and not table.should_accept(child.pid)
    finally:
        release.set()
        child.join(10)
    assert child.exitcode == 0 and table.busy() == 0


def test_busy_counts_workers_with_requests_in_hand_or_a_forward_pass():
    table = WorkerTable(slots=4)
    table.requests(1, 0)
    table.requests(2, 3)
    assert table.busy() == 1
    assert table.computing(1, True) == 2
    table.computing(1, False)
    table.requests(2, 0)
    assert table.busy() == 0


def test_the_least_loaded_worker_accepts_and_the_first_row_breaks_ties():
    """One client at a time keeps going to the same warm worker; a busy one leaves new connections to others."""
    table = WorkerTable(slots=4)
    for pid in (1, 2, 3):
        table.requests(pid, 0)
    assert [table.should_accept(pid) for pid in (1, 2, 3)] == [True, False, False]
    table.requests(1, 1)
    assert [table.should_accept(pid) for pid in (1, 2, 3)] == [False, True, False]
    table.requests(2, 1), table.requests(3, 1)
    assert [table.should_accept(pid) for pid in (1, 2, 3)] == [True, False, False]
    table.requests(1, 4)
    assert [table.should_accept(pid) for pid in (1, 2, 3)] == [False, True, False]


def test_a_dead_workers_row_is_freed_and_reused():
    """The master removes an exited worker (it may have died mid-request): it no longer counts, its row is reused."""
    table = WorkerTable(slots=2)
    table.requests(1, 5)
    table.requests(2, 1)
    assert not table.should_accept(1)
    table.remove(1)
    assert table.busy() == 1
    table.requests(3, 0)  # a replacement takes the free row
    assert table.should_accept(3) and not table.should_accept(2)


def test_a_full_table_ignores_newcomers_rather_than_failing():
    table = WorkerTable(slots=1)
    table.requests(1, 1)
    table.requests(2, 7)  # no row left: not recorded
    assert table.busy() == 1 and table.should_accept(2)


def test_requests_are_counted_on_and_off_from_any_thread():
    table = WorkerTable(slots=2)
    table.add_request(1, +1), table.add_request(1, +1), table.add_request(1, -1)
    table.requests(2, 0)
    assert table.busy() == 1 and table.should_accept(2)
    table.add_request(1, -1), table.add_request(1, -1)  # never below zero
    assert table.busy() == 0 and table.should_accept(1)


def test_a_worker_joins_the_table_only_once_its_model_has_loaded(model_dir, monkeypatch):
    """A booting worker in the table would be the least loaded one: the others would leave it every new
    connection for the seconds its model takes to load (gunicorn.conf.py's post_fork)."""
    import runpy
    from types import SimpleNamespace

    from clipsvc.server import lifecycle

    monkeypatch.setenv("CLIP_MODEL_DIR", str(model_dir))
    config = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
    order = []
    loaded = SimpleNamespace(describe=dict)
    monkeypatch.setattr(lifecycle, "load_worker_encoder", lambda settings: order.append("model loaded") or loaded)
    monkeypatch.setattr(config["gunicorn_errors"], "install", lambda: None)
    monkeypatch.setattr(config["native_stderr"], "capture", lambda: None)  # this process's stderr stays as it is
    worker = SimpleNamespace(configure=lambda *args: order.append("joined the table"),
                             log=SimpleNamespace(info=lambda *args, **kwargs: None))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)}
    try:
        config["post_fork"](SimpleNamespace(num_workers=1), worker)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert order == ["model loaded", "joined the table"]


def test_loaded_counts_the_live_workers_that_have_loaded():
    table = WorkerTable(slots=4)
    table.requests(1, 0)  # in the table (ClipWorker.configure), its model_loaded line not yet written
    assert table.loaded(2) == 1
    assert table.loaded(1) == 2
    table.remove(2)  # exited: the master freed its row
    assert table.loaded(3) == 2


def test_the_ready_line_comes_once_when_every_worker_has_loaded(monkeypatch, caplog):
    """Not before the last worker has loaded, and not again when a replacement loads (lifecycle.announce_ready)."""
    import logging
    from types import SimpleNamespace

    from clipsvc.server import lifecycle

    table, other = WorkerTable(slots=8), os.getpid() + 1
    monkeypatch.setattr(lifecycle, "_state", lifecycle.ServerState(
        started=time.monotonic() - 3, ready=multiprocessing.Value("b", 0), workers=table))
    encoder = SimpleNamespace(facts=SimpleNamespace(model_name="clip-tiny"),
                              serving=SimpleNamespace(device="cpu", precision="fp32"))
    caplog.set_level(logging.INFO, logger=lifecycle.__name__)

    def ready_lines() -> list[logging.LogRecord]:
        return [record for record in caplog.records if getattr(record, "event", None) == "ready"]

    lifecycle.announce_ready(encoder, workers=2)  # this worker alone
    assert ready_lines() == []
    table.loaded(other)
    lifecycle.announce_ready(encoder, workers=2)
    (ready,) = ready_lines()
    assert (ready.workers, ready.model, ready.device, ready.precision) == (2, "clip-tiny", "cpu", "fp32")
    assert 3 <= ready.seconds_since_start < 60
    table.remove(other)  # killed, and its replacement loads
    table.loaded(other + 1)
    lifecycle.announce_ready(encoder, workers=2)
    assert len(ready_lines()) == 1


def _die_holding_the_claim(table: WorkerTable, holding) -> None:
    table._claim.acquire()
    holding.set()
    os.kill(os.getpid(), signal.SIGKILL)


def _serve_after_a_killed_worker(table: WorkerTable, done) -> None:
    table.requests(os.getpid(), 0)  # claims a row: waits out the dead holder's claim, then goes on
    table.add_request(os.getpid(), +1)
    table.should_accept(os.getpid())
    done.set()


def test_a_worker_killed_at_any_moment_wedges_no_one():
    """SIGKILL (the OOM killer) gives a worker no chance to release what it holds: a shared lock held at that moment
    once stopped the master (freeing the dead worker's row) and every other worker (choosing who accepts) for good.
    Rows are read and written without one; only a claim is serialised, and a dead claimer is waited out."""
    fork = multiprocessing.get_context("fork")
    table, holding, done = WorkerTable(slots=4), fork.Event(), fork.Event()
    table.requests(os.getpid(), 2)
    killed = fork.Process(target=_die_holding_the_claim, args=(table, holding))
    killed.start()
    assert holding.wait(10)
    killed.join(10)
    assert killed.exitcode == -signal.SIGKILL
    started = time.monotonic()
    survivor = fork.Process(target=_serve_after_a_killed_worker, args=(table, done))
    survivor.start()
    assert done.wait(10), "a worker waited for good on what the killed one held"
    survivor.join(10)
    table.remove(survivor.pid)  # as the master does, with no wait
    assert time.monotonic() - started < CLAIM_TIMEOUT_S + 5
    assert table.should_accept(os.getpid()) and table.busy() == 1
