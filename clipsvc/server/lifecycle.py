"""Start-up in gunicorn's two places: the master checks (and unzips) the model, each worker builds its encoder, and
the worker that completes the set says the server is ready (gunicorn's own hooks show only the master's side). What
they keep is one ServerState."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..encoder.cputhreads import ThreadBudget
from ..encoder.modeldir import resolve_model_dir
from ..settings import METRICS_DIR_ENV, Settings, cpu_count
from .arenas import limit_arenas, return_large_blocks
from .workertable import WorkerTable

if TYPE_CHECKING:  # the master imports this module and never loads torch: workers import the encoder
    from multiprocessing.sharedctypes import Synchronized

    from ..encoder.model import ClipEncoder

log = logging.getLogger(__name__)

BOOT_FAILURE_WAIT = 60  # seconds; the master normally stops the worker within one
# A worker stops telling gunicorn it is alive once one forward pass has run this long, so gunicorn's own
# timeout (CLIP_WORKER_TIMEOUT) replaces a worker whose forward pass runs past it, as it did with sync workers.
HEARTBEAT_GRACE = 1.0


@dataclass
class ServerState:
    """What start-up keeps in a process: the master's parts, made before forking and inherited (or, through shared
    memory, shared) by its workers, and in a worker the encoder it built."""

    started: float | None = None  # when the master started (on_starting): what the `ready` line counts from
    model_dir: Path | None = None  # the model directory, resolved (and unzipped) once by the master
    boot_failed: Synchronized | None = None  # shared: has a worker already failed to load the model?
    ready: Synchronized | None = None  # shared: has the server's `ready` line been logged?
    # Shared: each worker's requests in hand and forward pass, which torch's threads and the accepting of new
    # connections follow, and whether it has loaded its model.
    workers: WorkerTable | None = None
    own_metrics_dir: Path | None = None  # the metrics directory the master made (removed at exit); None: the operator's
    encoder: ClipEncoder | None = None  # this worker's, built in post_fork; None in the master and outside gunicorn


# The module's one global: the master fills it in, its workers inherit it and each adds its own encoder.
_state = ServerState()


def server_starting() -> None:
    """In the master, first thing: the time the `ready` line counts from."""
    _state.started = time.monotonic()


def prepare_model(settings: Settings) -> Path:
    """In the master, before forking: find the model, unzip it if needed, check its files."""
    _state.model_dir = resolve_model_dir(settings.model_dir, settings.model_cache_dir)
    _state.boot_failed = multiprocessing.Value("b", 0)
    _state.ready = multiprocessing.Value("b", 0)
    _state.workers = WorkerTable(slots=2 * settings.workers + 8)  # room for replacements booting beside dying workers
    return _state.model_dir


def prepare_metrics_dir() -> Path:
    """In the master, before forking and before prometheus_client is imported: an empty directory for
    the workers' metric files (PROMETHEUS_MULTIPROC_DIR, a private temporary one unless set)."""
    path = os.environ.get(METRICS_DIR_ENV)
    if path:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # a previous run's counts are not this server's
            stale.unlink()
    else:
        directory = _state.own_metrics_dir = Path(tempfile.mkdtemp(prefix="clipsvc-metrics-"))
        os.environ[METRICS_DIR_ENV] = str(directory)
    from . import metrics  # only now: prometheus_client picks its multiprocess mode when imported

    metrics.worker_restarts()  # a zero from the start, not a series that appears at the first restart
    return directory


def worker_exited(pid: int) -> None:
    """In the master, after a worker is reaped: its live gauges go, the restart is counted, and its row in the
    worker table is freed (it may have died with requests in hand)."""
    from . import metrics

    metrics.worker_exited(pid)
    if _state.workers is not None:
        _state.workers.remove(pid)


def remove_metrics_dir() -> None:
    """In the master, at exit: the temporary directory it made; an operator's own is left alone."""
    if _state.own_metrics_dir is not None:
        shutil.rmtree(_state.own_metrics_dir, ignore_errors=True)


def load_worker_encoder(settings: Settings) -> ClipEncoder:
    """In a worker, after forking: torch is imported and CUDA initialised here, never in the master.

    The device is resolved in the worker too (CLIP_DEVICE=auto: torch.cuda.is_available()): nothing the master
    decides depends on it. Torch's threads follow the busy workers in the master's table (clipsvc.encoder.cputhreads).
    """
    limit_arenas()  # before torch's threads and the request threads allocate
    if settings.cpu_engine == "openvino":
        return_large_blocks()
    budget = ThreadBudget(cpu_count(), _state.workers, fixed=settings.torch_threads)
    # A backstop for requests queued behind a stuck forward pass: gunicorn replaces the worker first.
    wait = settings.worker_timeout + 2 * HEARTBEAT_GRACE + 5
    model_dir = _state.model_dir or resolve_model_dir(settings.model_dir, settings.model_cache_dir)
    _state.encoder = _import_encoder().build(settings, model_dir, budget=budget, wait=wait)
    return _state.encoder


def _import_encoder() -> type[ClipEncoder]:
    """The encoder's class, imported in the worker (torch and transformers: ~3 s), keeping the JSON logging.

    gunicorn applied our logging config before this import, and importing transformers gives its logger its own
    plain-text handler (and, where CI is set, propagation to the root's JSON handler: every line twice). When the
    master imported it first, the config replaced both; now the logger's state is put back after the import.
    """
    library = logging.getLogger("transformers")
    handlers, level, propagate = list(library.handlers), library.level, library.propagate
    from ..encoder.model import ClipEncoder

    library.handlers[:] = handlers
    library.setLevel(level)
    library.propagate = propagate
    return ClipEncoder


def announce_ready(encoder: ClipEncoder, workers: int) -> None:
    """In a worker, once its `model_loaded` line is written: it counts as loaded, and the worker that finds all
    `workers` loaded logs the server's one `ready` line. Once per server start: not again when a recycled, killed or
    timed-out worker is replaced (its own `model_loaded` line says it is back), nor after a reload (SIGHUP).

    gunicorn's "Listening at" line comes before any worker has forked, and its hooks never tell the master that a
    worker has loaded; the table the workers share with the master does."""
    state = _state
    if state.workers is None or state.ready is None or state.started is None:  # not started by on_starting
        return
    loaded = state.workers.loaded(os.getpid())
    with state.ready.get_lock():
        if state.ready.value or loaded < workers:
            return
        state.ready.value = 1
    log.info("ready: every worker has loaded the model", extra={
        "event": "ready", "workers": workers, "model": encoder.facts.model_name, "device": encoder.serving.device,
        "precision": encoder.serving.precision, "seconds_since_start": round(time.monotonic() - state.started, 2)})


def worker_table() -> WorkerTable | None:
    """The table the master made (None outside gunicorn): the worker class reports its requests in it."""
    return _state.workers


def worker_alive() -> bool:
    """Whether this worker may tell gunicorn it is alive: not while one forward pass has run past the grace."""
    return _state.encoder is None or _state.encoder.batcher.busy_for() < HEARTBEAT_GRACE


def worker_aborted() -> None:
    """gunicorn is killing this worker for its timeout: requests waiting for the model are answered now."""
    if _state.encoder is not None:
        _state.encoder.batcher.abort()


def boot_failure_exit_code(boot_error: int) -> int:
    """Only the first worker that fails to load reports gunicorn's boot error (which halts the master).

    A second boot error reaped while the master is already halting makes gunicorn 27 raise again
    inside halt() and die with a plain-text traceback. Later failures therefore wait for the halting
    master to stop them (SIGTERM, default action since post_fork): exiting on their own could let the
    master reap them first, as ordinary crashes, and boot replacements.
    """
    if _state.boot_failed is None:  # not started by the master's on_starting
        return boot_error
    with _state.boot_failed.get_lock():
        first = not _state.boot_failed.value
        _state.boot_failed.value = 1
    if first:
        return boot_error
    time.sleep(BOOT_FAILURE_WAIT)
    return 1


def worker_encoder() -> ClipEncoder | None:
    """The encoder this worker built (wsgi.py hands it to create_app), or None outside a gunicorn worker."""
    return _state.encoder
