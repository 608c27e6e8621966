"""Run the real `gunicorn -c gunicorn.conf.py wsgi:app` on a free loopback port for a test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log_path: Path):
        self.process, self.port, self.log_path = process, port, log_path
        self.url = f"http://127.0.0.1:{port}"

    def log_lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]

    def log_records(self) -> list[dict]:
        return [json.loads(line) for line in self.log_lines()]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a worker still loading
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gunicorn not ready after {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def gunicorn_env(model_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIP_")}
    env.update(CLIP_MODEL_DIR=str(model_dir), PORT=str(port), WEB_CONCURRENCY="2", CLIP_DEVICE="cpu",
               CLIP_TORCH_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def gunicorn_command(port: int) -> list[str]:
    """The service's own command line, bound to loopback: the config's bind (all interfaces) is for containers."""
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "wsgi:app"]


@contextmanager
def gunicorn(model_dir: Path, log_path: Path, ready: bool = True, **extra: str):
    """Start gunicorn from the repo root with JSON logs to `log_path`; always stopped afterwards."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(gunicorn_command(port), cwd=ROOT, env=gunicorn_env(model_dir, port, **extra),
                                   stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, port, log_path)
    try:
        if ready:
            server.wait_ready()
        yield server
    finally:
        if process.poll() is None:
            process.kill() if ready is False else process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
