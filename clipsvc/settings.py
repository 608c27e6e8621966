"""Every environment variable the service reads, declared once as a field of `Settings` (its variable, parser,
allowed values and hint): loading, messages and the views others read (`ENV_VARS`) all come from there."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
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


# Fixed limits, not settings: a text part or a whole urlencoded body (Flask's default); a text file part (ample).
MAX_FORM_MEMORY_BYTES = 500_000
MAX_TEXT_FILE_BYTES = 64 * 1024

# prometheus_client's own variable: where every worker writes its metrics (see lifecycle.prepare_metrics_dir).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")
BATCHING_CHOICES = ("auto", "on", "off")
# auto: bf16 on a CPU with native bf16 (AVX512-BF16 or AMX), else fp32; fp16 on CUDA (clipsvc.encoder.precision).
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def _numeric(kind: type, expected: str) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"expected {expected}") from None
    return parse


_whole_number, _number = _numeric(int, "a whole number"), _numeric(float, "a number")


def _switch(raw: str) -> bool:
    words = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}
    if raw.lower() not in words:
        raise ValueError("expected on or off")
    return words[raw.lower()]


def _host_list(raw: str) -> tuple[str, ...]:
    return tuple(host.lower().rstrip(".") for host in re.split(r"[\s,]+", raw) if host)


def _key_list(raw: str, separator: str = ",") -> tuple[str, ...]:
    """Keys without duplicates; none at all (only commas, an empty file) is a mistake, not "keys off"."""
    if keys := tuple(dict.fromkeys(key.strip() for key in raw.split(separator) if key.strip())):
        return keys
    raise ValueError("it holds no key")


def _key_file(raw: str) -> tuple[str, ...]:
    """A file's keys (a Docker or Kubernetes secret), read once at start-up: one a line, `#` comments ignored."""
    try:
        lines = Path(raw).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"cannot read it: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    return _key_list("\n".join(line for line in lines if not line.strip().startswith("#")), "\n")


# An allow-list entry: a host name or IPv4 address, `*.` for any subdomain, `:port` for a non-default port.
HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?")
# An API key (SECURITY.md): 16-512 visible ASCII characters but the comma, CLIP_API_KEYS' separator.
API_KEY_PATTERN = re.compile(r"[!-+\--~]{16,512}")
# A check takes the value and the whole Settings (some limits depend on others).
Check = Callable[[Any, "Settings"], bool]


def _setting(default: Any, var: str, parse: Callable[[str], Any], check: Check, hint: str, limit: bool = False,
             secret: bool = False) -> Any:
    """One setting: its default, variable, parser, allowed values and their hint; a `limit` is one clients must
    respect, so /meta and the OpenAPI document publish it; a `secret` is never shown, in repr or messages."""
    return field(default=default, repr=not secret, metadata={"var": var, "parse": parse, "check": check,
                                                             "hint": hint, "limit": limit, "secret": secret})


def _at_least(low: float) -> Check:
    return lambda value, _: value >= low


def _between(low: float, high: float, above: bool = False) -> Check:
    return lambda value, _: low < value <= high if above else low <= value <= high


def _one_of(choices: tuple[str, ...]) -> Check:
    return lambda value, _: value in choices


def _anything(value: Any, settings: Settings) -> bool:
    return True


def _all_match(pattern: re.Pattern[str]) -> Check:
    return lambda values, _: all(pattern.fullmatch(value) for value in values)


@dataclass(frozen=True)
class Settings:
    """Service configuration; build it with `Settings.from_env()` or pass values in tests."""

    model_dir: Path = _setting(Path("/model"), "CLIP_MODEL_DIR", Path, _anything, "a path")
    model_cache_dir: Path | None = _setting(None, "CLIP_MODEL_CACHE_DIR", Path, _anything, "a writable directory")
    port: int = _setting(8081, "PORT", _whole_number, _between(1, 65535), "1-65535")
    workers: int = _setting(2, "WEB_CONCURRENCY", _whole_number, _at_least(1), "at least 1")
    # None: per forward pass, cores ÷ the workers busy at that moment (clipsvc.encoder.cputhreads).
    torch_threads: int | None = _setting(None, "CLIP_TORCH_THREADS", _whole_number,
                                         lambda value, _: value is None or value >= 1, "at least 1")
    device: str = _setting("auto", "CLIP_DEVICE", str.lower,
                           lambda value, _: value in DEVICE_CHOICES or re.fullmatch(r"cuda:\d+", value) is not None,
                           "auto, cpu, cuda or cuda:N")
    # oneDNN's packed linear weights for the image tower on CPUs: faster, but each worker's own copy.
    cpu_packed_weights: bool = _setting(True, "CLIP_CPU_PACKED_WEIGHTS", _switch,
                                        lambda value, _: isinstance(value, bool), "on or off")
    # The numeric format of both towers; responses are float32 unit vectors whatever it is.
    precision: str = _setting("auto", "CLIP_PRECISION", str.lower, _one_of(PRECISIONS), ", ".join(PRECISIONS))
    # The accuracy guard: below this worst cosine against fp32 on a fixed probe, a worker falls back to fp32.
    # None: the precision's own default (clipsvc.encoder.precision.MIN_COSINE); 0 turns the guard off.
    precision_min_cosine: float | None = _setting(None, "CLIP_PRECISION_MIN_COSINE", _number,
                                                  lambda value, _: value is None or 0 <= value <= 1, "0-1")
    # Text vectors kept per worker, by exact token ids (clipsvc.encoder.textcache); 0 turns the cache off.
    text_cache_size: int = _setting(4096, "CLIP_TEXT_CACHE_SIZE", _whole_number, _at_least(0), "entries, 0 or more")
    max_request_mb: float = _setting(64, "CLIP_MAX_REQUEST_MB", _number,
                                     lambda value, _: 0 < value < math.inf, "greater than 0", limit=True)
    max_image_mb: float = _setting(20, "CLIP_MAX_IMAGE_MB", _number,
                                   lambda value, settings: 0 < value <= settings.max_request_mb,
                                   "greater than 0 and at most CLIP_MAX_REQUEST_MB", limit=True)
    max_image_pixels: int = _setting(40_000_000, "CLIP_MAX_IMAGE_PIXELS", _whole_number, _at_least(1), "at least 1",
                                     limit=True)
    max_text_words: int = _setting(50, "CLIP_MAX_TEXT_WORDS", _whole_number, _at_least(1), "at least 1", limit=True)
    max_items: int = _setting(64, "CLIP_MAX_ITEMS", _whole_number, _at_least(1), "at least 1", limit=True)
    worker_timeout: int = _setting(300, "CLIP_WORKER_TIMEOUT", _whole_number, _at_least(1), "seconds, at least 1")
    graceful_timeout: int = _setting(60, "CLIP_GRACEFUL_TIMEOUT", _whole_number, _at_least(0), "seconds, 0 or more")
    max_requests: int = _setting(10_000, "CLIP_MAX_REQUESTS", _whole_number, _at_least(0), "0 (never recycle) or more")
    # auto: merge rows already waiting; on GPUs also wait batch_wait_ms for more (encoder.batching.batch_plan).
    batching: str = _setting("auto", "CLIP_BATCHING", str.lower, _one_of(BATCHING_CHOICES), ", ".join(BATCHING_CHOICES))
    max_batch: int = _setting(64, "CLIP_MAX_BATCH", _whole_number, _at_least(1), "at least 1")
    batch_wait_ms: float = _setting(5, "CLIP_BATCH_WAIT_MS", _number, _between(0, 1000), "0-1000 milliseconds")
    # gthread connections served at once per worker; one inference thread runs the model.
    request_threads: int = _setting(8, "CLIP_THREADS", _whole_number, _between(1, 1024), "1-1024")
    max_requests_jitter: int = _setting(1_000, "CLIP_MAX_REQUESTS_JITTER", _whole_number, _at_least(0), "0 or more")
    log_level: str = _setting("info", "CLIP_LOG_LEVEL", str.lower, _one_of(LOG_LEVELS), ", ".join(LOG_LEVELS))
    # Empty: img_uri http(s) URLs are refused.
    fetch_allow_hosts: tuple[str, ...] = _setting(
        (), "CLIP_FETCH_ALLOW_HOSTS", _host_list, _all_match(HOST_PATTERN),
        "host names separated by commas, e.g. images.example.com,*.cdn.example.com:8443")
    fetch_timeout_s: float = _setting(5, "CLIP_FETCH_TIMEOUT_S", _number, _between(0, 60, above=True),
                                      "seconds, more than 0 and at most 60")
    # A new connection's request line and headers, all of them (clipsvc.server.worker).
    header_timeout_s: float = _setting(5, "CLIP_HEADER_TIMEOUT_S", _number, _between(0, 300, above=True),
                                       "seconds, more than 0 and at most 300")
    # The body's first bytes; every client_min_rate bytes then add a second.
    client_timeout_s: float = _setting(20, "CLIP_CLIENT_TIMEOUT_S", _number, _between(0, 3600, above=True),
                                       "seconds, more than 0 and at most 3600")
    # Bytes per second, as Apache's mod_reqtimeout (body=20,MinRate=500).
    client_min_rate: int = _setting(500, "CLIP_CLIENT_MIN_RATE", _whole_number, _at_least(0),
                                    "bytes per second, 0 (no extension) or more")
    # Together, the keys clients may send as `Authorization: Bearer <key>` (web/auth.py); none: no key is needed.
    api_keys: tuple[str, ...] = _setting((), "CLIP_API_KEYS", _key_list, _all_match(API_KEY_PATTERN),
                                         "keys separated by commas, each 16-512 visible ASCII characters", secret=True)
    api_keys_from_file: tuple[str, ...] = _setting((), "CLIP_API_KEYS_FILE", _key_file, _all_match(API_KEY_PATTERN),
                                                   "a readable file of such keys, one a line", secret=True)

    @property
    def threads_per_worker(self) -> int:
        """Torch threads a worker starts with; without CLIP_TORCH_THREADS each forward pass re-decides."""
        return self.torch_threads or max(1, cpu_count() // self.workers)  # None, or at least 1

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)

    def limits(self) -> dict[str, Any]:
        """The limits clients must respect, by setting name: what /meta and the OpenAPI document publish."""
        return {spec.name: getattr(self, spec.name) for spec in fields(self) if spec.metadata["limit"]}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every `CLIP_*` variable (plus PORT and WEB_CONCURRENCY), failing loudly on bad values."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            var, parse = spec.metadata["var"], spec.metadata["parse"]
            raw = env.get(var) or ""
            if not raw.strip():
                continue
            try:
                values[spec.name] = parse(raw.strip())
            except ValueError as exc:
                shown = "" if spec.metadata["secret"] else f"={raw!r}"  # never a key
                raise SettingsError(f"{var}{shown} is invalid: {exc}") from None
        return cls(**values)

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not spec.metadata["check"](value, self):
                shown = "" if spec.metadata["secret"] else f"={value!r}"  # never a key
                raise SettingsError(f"{spec.metadata['var']}{shown} is out of range ({spec.metadata['hint']})")


# Field name -> (environment variable, parser): a view of the declarations above, for tests and docs checks.
ENV_VARS: dict[str, tuple[str, Callable[[str], Any]]] = {
    spec.name: (spec.metadata["var"], spec.metadata["parse"]) for spec in fields(Settings)
}
# The limits clients must respect (Settings.limits), name -> JSON type, for the OpenAPI document.
LIMIT_TYPES: dict[str, str] = {spec.name: "integer" if spec.type == "int" else "number"
                               for spec in fields(Settings) if spec.metadata["limit"]}
# Field name -> what the allowed values are, in words (the same view).
HINTS: dict[str, str] = {spec.name: spec.metadata["hint"] for spec in fields(Settings)}


def env_var(name: str) -> str:
    """The variable setting `name` is read from, for messages that tell an operator what to change."""
    return ENV_VARS[name][0]
