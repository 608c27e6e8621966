"""Every environment variable the service reads, its default and its validation, in one place."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A configuration value is malformed; raised at start-up, never per request."""


def cpu_count() -> int:
    """Cores this process may use (respects affinity masks and container cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# prometheus_client's own variable: where every worker writes its metrics (see lifecycle.prepare_metrics_dir).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

DEVICE_CHOICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")
BATCHING_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class Settings:
    """Service configuration; build it with `Settings.from_env()` or pass values in tests."""

    model_dir: Path = Path("/model")
    model_cache_dir: Path | None = None
    port: int = 8081
    workers: int = 2
    torch_threads: int | None = None  # None: per forward pass, cores ÷ workers computing at that moment
    device: str = "auto"
    cpu_packed_weights: bool = True  # oneDNN's packed linear weights on CPUs: faster, but not shared by workers
    max_request_mb: float = 64
    max_image_mb: float = 20
    max_image_pixels: int = 40_000_000
    max_text_words: int = 50
    max_items: int = 64
    worker_timeout: int = 300
    graceful_timeout: int = 60
    max_requests: int = 10_000
    batching: str = "auto"  # auto: on when the model runs on a GPU
    max_batch: int = 64
    batch_wait_ms: float = 5
    request_threads: int = 8  # gthread connections served at once per worker; one inference thread runs the model
    max_requests_jitter: int = 1_000
    log_level: str = "info"
    fetch_allow_hosts: tuple[str, ...] = ()  # empty: img_uri http(s) URLs are refused
    fetch_timeout_s: float = 5
    header_timeout_s: float = 5  # a new connection's request line and headers, all of them
    client_timeout_s: float = 20  # the body's first bytes; every CLIP_CLIENT_MIN_RATE bytes then add a second
    client_min_rate: int = 500  # bytes per second, as Apache's mod_reqtimeout (body=20,MinRate=500)

    @property
    def threads_per_worker(self) -> int:
        """Torch threads a worker starts with; without CLIP_TORCH_THREADS each forward pass re-decides."""
        if self.torch_threads is not None:
            return self.torch_threads
        return max(1, cpu_count() // self.workers)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every `CLIP_*` variable (plus PORT and WEB_CONCURRENCY), failing loudly on bad values."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (var, parse) in ENV_VARS.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = parse(raw.strip())
            except ValueError as exc:
                raise SettingsError(f"{var}={raw!r} is invalid: {exc}") from None
        return cls(**values)

    def __post_init__(self) -> None:
        checks = {
            "port": 1 <= self.port <= 65535,
            "workers": self.workers >= 1,
            "torch_threads": self.torch_threads is None or self.torch_threads >= 1,
            "device": self.device in DEVICE_CHOICES or re.fullmatch(r"cuda:\d+", self.device) is not None,
            "cpu_packed_weights": isinstance(self.cpu_packed_weights, bool),
            "max_request_mb": 0 < self.max_request_mb < math.inf,
            "max_image_mb": 0 < self.max_image_mb <= self.max_request_mb,
            "max_image_pixels": self.max_image_pixels > 0,
            "max_text_words": self.max_text_words >= 1,
            "max_items": self.max_items >= 1,
            "worker_timeout": self.worker_timeout >= 1,
            "graceful_timeout": self.graceful_timeout >= 0,
            "max_requests": self.max_requests >= 0,
            "batching": self.batching in BATCHING_CHOICES,
            "max_batch": self.max_batch >= 1,
            "batch_wait_ms": 0 <= self.batch_wait_ms <= 1000,
            "request_threads": 1 <= self.request_threads <= 1024,
            "max_requests_jitter": self.max_requests_jitter >= 0,
            "log_level": self.log_level in LOG_LEVELS,
            "fetch_allow_hosts": all(HOST_PATTERN.fullmatch(host) for host in self.fetch_allow_hosts),
            "fetch_timeout_s": 0 < self.fetch_timeout_s <= 60,
            "header_timeout_s": 0 < self.header_timeout_s <= 300,
            "client_timeout_s": 0 < self.client_timeout_s <= 3600,
            "client_min_rate": self.client_min_rate >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                var = ENV_VARS[name][0]
                raise SettingsError(f"{var}={getattr(self, name)!r} is out of range ({HINTS[name]})")


def _whole_number(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("expected a number") from None


def _lower(raw: str) -> str:
    return raw.lower()


def _switch(raw: str) -> bool:
    value = raw.lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError("expected on or off")


def _host_list(raw: str) -> tuple[str, ...]:
    return tuple(host.lower().rstrip(".") for host in re.split(r"[\s,]+", raw) if host)


# An allow-list entry: a host name or IPv4 address, `*.` for any subdomain, `:port` for a non-default port.
HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?")


# Field name -> (environment variable, parser). Defaults live on the dataclass above.
ENV_VARS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "model_dir": ("CLIP_MODEL_DIR", Path),
    "model_cache_dir": ("CLIP_MODEL_CACHE_DIR", Path),
    "port": ("PORT", _whole_number),
    "workers": ("WEB_CONCURRENCY", _whole_number),
    "torch_threads": ("CLIP_TORCH_THREADS", _whole_number),
    "device": ("CLIP_DEVICE", _lower),
    "cpu_packed_weights": ("CLIP_CPU_PACKED_WEIGHTS", _switch),
    "max_request_mb": ("CLIP_MAX_REQUEST_MB", _number),
    "max_image_mb": ("CLIP_MAX_IMAGE_MB", _number),
    "max_image_pixels": ("CLIP_MAX_IMAGE_PIXELS", _whole_number),
    "max_text_words": ("CLIP_MAX_TEXT_WORDS", _whole_number),
    "max_items": ("CLIP_MAX_ITEMS", _whole_number),
    "worker_timeout": ("CLIP_WORKER_TIMEOUT", _whole_number),
    "graceful_timeout": ("CLIP_GRACEFUL_TIMEOUT", _whole_number),
    "max_requests": ("CLIP_MAX_REQUESTS", _whole_number),
    "batching": ("CLIP_BATCHING", _lower),
    "max_batch": ("CLIP_MAX_BATCH", _whole_number),
    "batch_wait_ms": ("CLIP_BATCH_WAIT_MS", _number),
    "request_threads": ("CLIP_THREADS", _whole_number),
    "max_requests_jitter": ("CLIP_MAX_REQUESTS_JITTER", _whole_number),
    "log_level": ("CLIP_LOG_LEVEL", _lower),
    "fetch_allow_hosts": ("CLIP_FETCH_ALLOW_HOSTS", _host_list),
    "fetch_timeout_s": ("CLIP_FETCH_TIMEOUT_S", _number),
    "header_timeout_s": ("CLIP_HEADER_TIMEOUT_S", _number),
    "client_timeout_s": ("CLIP_CLIENT_TIMEOUT_S", _number),
    "client_min_rate": ("CLIP_CLIENT_MIN_RATE", _whole_number),
}

HINTS = {
    "model_dir": "a path",
    "model_cache_dir": "a writable directory",
    "port": "1-65535",
    "workers": "at least 1",
    "torch_threads": "at least 1",
    "device": "auto, cpu, cuda or cuda:N",
    "cpu_packed_weights": "on or off",
    "max_request_mb": "greater than 0",
    "max_image_mb": "greater than 0 and at most CLIP_MAX_REQUEST_MB",
    "max_image_pixels": "at least 1",
    "max_text_words": "at least 1",
    "max_items": "at least 1",
    "worker_timeout": "seconds, at least 1",
    "graceful_timeout": "seconds, 0 or more",
    "max_requests": "0 (never recycle) or more",
    "batching": ", ".join(BATCHING_CHOICES),
    "max_batch": "at least 1",
    "batch_wait_ms": "0-1000 milliseconds",
    "request_threads": "1-1024",
    "max_requests_jitter": "0 or more",
    "log_level": ", ".join(LOG_LEVELS),
    "fetch_allow_hosts": "host names separated by commas, e.g. images.example.com,*.cdn.example.com:8443",
    "fetch_timeout_s": "seconds, more than 0 and at most 60",
    "header_timeout_s": "seconds, more than 0 and at most 300",
    "client_timeout_s": "seconds, more than 0 and at most 3600",
    "client_min_rate": "bytes per second, 0 (no extension) or more",
}
