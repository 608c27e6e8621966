"""gunicorn settings for clipsvc: plain names read from clipsvc.settings, plus small hooks."""

import logging
import signal
import sys

from clipsvc.encoder.modeldir import ModelDirError, ModelLoadError
from clipsvc.server import gunicorn_errors, lifecycle, native_stderr, start
from clipsvc.server.logs import logging_config

# A bad value, or two that cannot work together, stops start-up with one JSON line naming the variable (exit status
# 78) before any worker boots. WEB_CONCURRENCY that is not a whole number never gets here: gunicorn reads it as it is
# imported (clipsvc.server.start, docs/deployment.md).
settings = start.checked_settings()

# --- Server socket
bind = [f"0.0.0.0:{settings.port}"]

# --- Workers: one model per process. Each serves `threads` connections at once in request threads, which
# read, decode and preprocess, while one inference thread runs the model (clipsvc.encoder.batching); torch threads
# follow the load (clipsvc.encoder.cputhreads). The worker class is gunicorn's gthread with client deadlines
# (clipsvc.server.worker): idle and slow clients cannot take the threads. This file imports nothing of gthread's: the
# worker class checks what it relies on when gunicorn imports it (clipsvc.server.gthread_contract), and
# GUNICORN_CMD_ARGS="--worker-class gthread" runs gunicorn's plain gthread worker instead (docs/deployment.md).
workers = settings.workers
threads = settings.request_threads
worker_class = "clipsvc.server.worker.ClipWorker"
# PyTorch (and CUDA) must not be initialised in the master and inherited by forked workers. The master does not
# even import torch (about 290 MB less resident; tests/test_master.py): each worker imports it in post_fork and
# resolves CLIP_DEVICE=auto there, which nothing in the master needs.
preload_app = False
# A forward pass that runs longer than this gets the worker replaced (a CPU ViT-L/14 image is ~1.5 s, so
# 64 images need minutes: the default is generous). Slow clients are cut off by their own deadlines.
timeout = settings.worker_timeout
graceful_timeout = settings.graceful_timeout
# Recycling a worker reloads the model (about a second from the page cache), so it happens rarely,
# and the jitter keeps workers from restarting all at once. It bounds slow leaks in native libraries.
max_requests = settings.max_requests
max_requests_jitter = settings.max_requests_jitter
keepalive = 5

# --- Requests: the user's header is `request_id`. gunicorn drops headers with underscores by
# default ("drop"); "dangerous" maps it to HTTP_REQUEST_ID like Request-Id (the same name to us).
header_map = "dangerous"
limit_request_field_size = 8190

# --- Logging: JSON lines for gunicorn and the app alike; the app logs one line per request. What native code
# writes to fd 2 (libtiff on an odd TIFF, say) becomes JSON lines too: the hooks capture it (native_stderr), and
# libraries' error records are logged as warnings (logs.CapThirdPartyLevel): error level means the service failed.
loglevel = settings.log_level
logconfig_dict = logging_config(settings.log_level)
errorlog = "-"
accesslog = None
proc_name = "clipsvc"
logging.captureWarnings(True)  # library warnings become JSON lines too

# --- No control socket: nothing here uses it, and it would be a file in $HOME shared by servers.
control_socket_disable = True


def on_starting(server):
    """Master: warn of CLIP_* variables that are no setting, find and check the model (unzipping it once) before any
    worker forks."""
    lifecycle.server_starting()  # what the `ready` line's seconds count from
    start.warn_unknown_variables()  # here, once a start: gunicorn runs this file's body again on SIGHUP
    native_stderr.capture()  # from now on, what native code writes to fd 2 is logged as JSON lines
    lifecycle.prepare_metrics_dir()
    try:
        path = lifecycle.prepare_model(settings)
    except ModelDirError as exc:
        server.log.error("model unusable: %s", exc, extra={"event": "model_error"})
        sys.exit(1)
    server.log.info("model found", extra={"event": "model_found", "model_path": str(path)})


def post_fork(server, worker):
    """Worker: load CLIP; a broken model stops the whole server instead of a respawn loop."""
    native_stderr.capture()  # this worker's own pipe and reader: its lines carry its pid
    # The worker inherits the master's handlers, which only queue signals, until gunicorn installs
    # its own after this hook: without this a SIGTERM during the model load would be swallowed.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    gunicorn_errors.install()  # malformed-HTTP replies as JSON, like every other error
    try:
        encoder = lifecycle.load_worker_encoder(settings)
    except ModelLoadError as exc:
        worker.log.error("model failed to load: %s", exc, extra={"event": "model_error"})
        sys.exit(lifecycle.boot_failure_exit_code(server.WORKER_BOOT_ERROR))
    # Only now does the worker join the table the others balance on: entered before its model had loaded, an
    # idle newcomer would be left every new connection while it could not yet accept one. gunicorn's plain gthread
    # worker (--worker-class gthread) has no deadlines to configure.
    if hasattr(worker, "configure"):
        worker.configure(settings, lifecycle.worker_alive, lifecycle.worker_table())
    worker.log.info("model loaded", extra={"event": "model_loaded", "workers": settings.workers,
                                          "request_threads": settings.request_threads, **encoder.describe()})
    lifecycle.announce_ready(encoder, server.num_workers)  # the last worker to load logs the server's `ready` line


def when_ready(server):
    """Master: right after gunicorn's "Listening at" line, say that listening is not being ready yet."""
    server.log.info("listening, not ready yet: the workers are loading the model; ready at the `ready` line (GET "
                    "/readyz answers 200 once a worker can serve)", extra={"event": "listening"})


def worker_abort(worker):
    """Worker: a forward pass ran past gunicorn's timeout; waiting requests get 503 worker_timeout, not a reset."""
    worker.log.warning("a forward pass exceeded the worker timeout", extra={"event": "worker_timeout"})
    gunicorn_errors.on_abort()
    lifecycle.worker_aborted()


def child_exit(server, worker):
    """Master: a worker is gone; its live metrics go with it and the restart is counted."""
    lifecycle.worker_exited(worker.pid)


def on_exit(server):
    """Master: remove the metrics directory it made."""
    lifecycle.remove_metrics_dir()
