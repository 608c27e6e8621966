"""Start-up in gunicorn's two places: the master checks (and unzips) the model, each worker loads it, and the worker
that completes the set says the server is ready (gunicorn's own hooks show only the master's side)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..encoder import batching
from ..encoder.cputhreads import ThreadBudget
from ..encoder.modeldir import resolve_model_dir
from ..settings import METRICS_DIR_ENV, Settings, cpu_count
from .workertable import WorkerTable

if TYPE_CHECKING:  # the master imports this module and never loads torch: workers import the encoder
    from ..encoder.model import ClipEncoder

log = logging.getLogger(__name__)

BOOT_FAILURE_WAIT = 60  # seconds; the master normally stops the worker within one
# A worker stops telling gunicorn it is alive once one forward pass has run this long, so gunicorn's own
# timeout (CLIP_WORKER_TIMEOUT) replaces a worker whose forward pass runs past it, as it did with sync workers.
HEARTBEAT_GRACE = 1.0

# The master resolves the model directory once; forked workers inherit it.
_model_dir: Path | None = None
# The worker's own state: the encoder post_fork loads. (The other globals here are made by the master and
# inherited or shared by its workers.)
_encoder: ClipEncoder | None = None
# Shared between the master and its workers: has a worker already failed to load the model?
_boot_failed = None
# The metrics directory the master made for itself (and removes at exit); None when the operator chose one.
_own_metrics_dir: Path | None = None
# Shared between the master and its workers: each worker's requests in hand and forward pass, which torch's
# threads and the accepting of new connections follow, and whether it has loaded its model.
_workers: WorkerTable | None = None
# When the master started (on_starting), and, shared, whether the server's `ready` line has been logged.
_started: float | None = None
_ready = None


def server_starting() -> None:
    """In the master, first thing: the time the `ready` line counts from."""
    global _started
    _started = time.monotonic()


def prepare_model(settings: Settings) -> Path:
    """In the master, before forking: find the model, unzip it if needed, check its files."""
    global _model_dir, _boot_failed, _workers, _ready
    _model_dir = resolve_model_dir(settings.model_dir, settings.model_cache_dir)
    _boot_failed = multiprocessing.Value("b", 0)
    _ready = multiprocessing.Value("b", 0)
    _workers = WorkerTable(slots=2 * settings.workers + 8)  # room for replacements booting beside dying workers
    return _model_dir


def prepare_metrics_dir() -> Path:
    """In the master, before forking and before prometheus_client is imported: an empty directory for
    the workers' metric files (PROMETHEUS_MULTIPROC_DIR, a private temporary one unless set)."""
    global _own_metrics_dir
    path = os.environ.get(METRICS_DIR_ENV)
    if path:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # a previous run's counts are not this server's
            stale.unlink()
    else:
        directory = _own_metrics_dir = Path(tempfile.mkdtemp(prefix="clipsvc-metrics-"))
        os.environ[METRICS_DIR_ENV] = str(directory)
    from . import metrics  # only now: prometheus_client picks its multiprocess mode when imported

    metrics.worker_restarts()  # a zero from the start, not a series that appears at the first restart
    return directory


def worker_exited(pid: int) -> None:
    """In the master, after a worker is reaped: its live gauges go, the restart is counted, and its row in the
    worker table is freed (it may have died with requests in hand)."""
    from . import metrics

    metrics.worker_exited(pid)
    if _workers is not None:
        _workers.remove(pid)


def remove_metrics_dir() -> None:
    """In the master, at exit: the temporary directory it made; an operator's own is left alone."""
    if _own_metrics_dir is not None:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


def load_worker_encoder(settings: Settings) -> ClipEncoder:
    """In a worker, after forking: torch is imported and CUDA initialised here, never in the master.

    The device is resolved here too (CLIP_DEVICE=auto: torch.cuda.is_available() in the worker): nothing the
    master decides depends on it. Every forward pass runs in the encoder's one inference thread, batched as
    `batching.batch_plan` says.
    """
    global _encoder
    model_dir = _model_dir or resolve_model_dir(settings.model_dir, settings.model_cache_dir)
    encoder = _import_encoder().load(model_dir, device=settings.device, threads=settings.threads_per_worker,
                                     packed_weights=settings.cpu_packed_weights, precision=settings.precision,
                                     min_cosine=settings.precision_min_cosine)
    encoder.cache_texts(settings.text_cache_size)
    budget = ThreadBudget(cpu_count(), _workers, fixed=settings.torch_threads)
    # A backstop for requests queued behind a stuck forward pass: gunicorn replaces the worker first.
    wait = settings.worker_timeout + 2 * HEARTBEAT_GRACE + 5
    merge, wait_ms = batching.batch_plan(settings, encoder.device.type)
    encoder.start_inference_thread(settings.max_batch, wait_ms, merge=merge, timeout=wait, budget=budget)
    _encoder = encoder
    return encoder


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
    if _workers is None or _ready is None or _started is None:  # not started by the master's on_starting
        return
    loaded = _workers.loaded(os.getpid())
    with _ready.get_lock():
        if _ready.value or loaded < workers:
            return
        _ready.value = 1
    info = encoder.info
    log.info("ready: every worker has loaded the model", extra={
        "event": "ready", "workers": workers, "model": info.model_name, "device": info.device,
        "precision": info.precision, "seconds_since_start": round(time.monotonic() - _started, 2)})


def worker_table() -> WorkerTable | None:
    """The table the master made (None outside gunicorn): the worker class reports its requests in it."""
    return _workers


def worker_alive() -> bool:
    """Whether this worker may tell gunicorn it is alive: not while one forward pass has run past the grace."""
    batcher = _encoder.batcher if _encoder is not None else None
    return batcher is None or batcher.busy_for() < HEARTBEAT_GRACE


def worker_aborted() -> None:
    """gunicorn is killing this worker for its timeout: requests waiting for the model are answered now."""
    if _encoder is not None and _encoder.batcher is not None:
        _encoder.batcher.abort()


def boot_failure_exit_code(boot_error: int) -> int:
    """Only the first worker that fails to load reports gunicorn's boot error (which halts the master).

    A second boot error reaped while the master is already halting makes gunicorn 27 raise again
    inside halt() and die with a plain-text traceback. Later failures therefore wait for the halting
    master to stop them (SIGTERM, default action since post_fork): exiting on their own could let the
    master reap them first, as ordinary crashes, and boot replacements.
    """
    if _boot_failed is None:  # not started by the master's on_starting
        return boot_error
    with _boot_failed.get_lock():
        first = not _boot_failed.value
        _boot_failed.value = 1
    if first:
        return boot_error
    time.sleep(BOOT_FAILURE_WAIT)
    return 1


def current_encoder() -> ClipEncoder | None:
    """The encoder this worker loaded, or None outside gunicorn (tests pass their own)."""
    return _encoder
