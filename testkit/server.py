"""The one runner of the real server: `gunicorn -c gunicorn.conf.py wsgi:app` from the repo root on a free
loopback port, its JSON log to a file, every worker waited for, and stopped cleanly afterwards."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from clipsvc.settings import Settings
from testkit import ROOT, jsonlog, procs

HOST = "127.0.0.1"  # loopback only: the config's bind (all interfaces) is for containers
# The tests' server: two workers, as the service's default, with one torch thread each on a 2-core machine.
TEST_WORKERS = 2
TEST_SETTINGS = {"WEB_CONCURRENCY": str(TEST_WORKERS), "CLIP_TORCH_THREADS": "1"}


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def command(port: int) -> list[str]:
    """The service's own command line, with --bind overriding the config's 0.0.0.0."""
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"{HOST}:{port}", "wsgi:app"]


def environment(model_dir: Path, port: int, settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any CLIP_* setting or GUNICORN_CMD_ARGS, then the model, the port,
    the CPU, and `settings` last (so a test may also override PORT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIP_") and k != "GUNICORN_CMD_ARGS"}
    env.update(CLIP_MODEL_DIR=str(model_dir), PORT=str(port), CLIP_DEVICE="cpu", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


class Server:
    """A running gunicorn master: its process, URL, log and workers."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path, workers: int):
        self.process, self.port, self.log_path, self.workers = process, port, log_path, workers
        self.url = f"http://{HOST}:{port}"

    def log_lines(self) -> list[str]:
        return jsonlog.read_lines(self.log_path)

    def log_records(self) -> list[dict]:
        return jsonlog.read_records(self.log_path)

    def worker_pids(self) -> set[int]:
        """The live workers."""
        return procs.worker_pids(self.process.pid)

    def loaded_pids(self) -> set[int]:
        """Every worker that has logged model_loaded so far, alive or not."""
        return set(jsonlog.loaded_pids(self.log_records()))

    def clip_requests(self) -> list[dict]:
        """The per-request log lines of POST /syte_test/clip."""
        return jsonlog.request_lines(self.log_records(), "/syte_test/clip")

    def _check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log_path.read_text()[-8000:]

    def wait_loaded(self, timeout: float = 60) -> dict[int, dict]:
        """Wait until all the workers are alive and each has logged model_loaded (/readyz needs only one);
        returns each live worker's model_loaded line by pid."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_running()
            live, loaded = self.worker_pids(), jsonlog.loaded_pids(self.log_records())
            if len(live) == self.workers and live <= loaded.keys():
                return {pid: loaded[pid] for pid in sorted(live)}
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(live)} live workers, {len(live & loaded.keys())} of {self.workers} "
                                   f"with the model loaded after {timeout}s:\n{self._log_tail()}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 30) -> None:
        """Poll GET /readyz until it answers 200 (straight to loopback, no proxy from the environment)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_running()
            connection = http.client.HTTPConnection(HOST, self.port, timeout=5)
            try:
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return
            except OSError:  # not listening yet, or every worker still busy
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline:
                raise TimeoutError(f"gunicorn not ready after {timeout}s:\n{self._log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (docker stop) and the master's exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self, kill: bool = False) -> None:
        """Stop it if still running: SIGTERM (or SIGKILL), then SIGKILL if it has not exited within 60 s."""
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def serve(model_dir: Path, log_path: Path, settings: Mapping[str, str] | None = None, wait: bool = True,
          timeout: float = 60) -> Iterator[Server]:
    """gunicorn with `settings` as environment variables, its output to `log_path`; with `wait`, yielded once
    every worker has loaded the model and /readyz answers, and stopped afterwards with SIGTERM (without: not
    waited for, and killed afterwards if still running)."""
    port = free_port()
    env = environment(model_dir, port, settings or {})
    workers = int(env["WEB_CONCURRENCY"]) if env.get("WEB_CONCURRENCY", "").isdigit() else Settings().workers
    with open(log_path, "w") as log:
        process = subprocess.Popen(command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, port, log_path, workers)
    try:
        if wait:
            server.wait_loaded(timeout)
            server.wait_ready(timeout)
        yield server
    finally:
        server.close(kill=not wait)


def gunicorn(model_dir: Path, log_path: Path, ready: bool = True, **settings: str):
    """The tests' server: TEST_SETTINGS, then `settings`; see serve()."""
    return serve(model_dir, log_path, {**TEST_SETTINGS, **settings}, wait=ready)
