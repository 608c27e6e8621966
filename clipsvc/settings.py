"""Every environment variable the service reads, declared once.

Each setting is a field of `Settings`, declared with `_setting`: its default, its variable, the parser that
reads the variable, the check of allowed values and their hint in words (for start-up errors), and its meaning
(`doc`). Everything else comes from those declarations: `Settings.from_env` and its messages, `ENV_VARS` and
`env_var` (messages that name the variable to change), `Settings.limits` and `LIMIT_TYPES` (`/meta` and the
OpenAPI document), and the settings table of docs/configuration.md (`markdown_table`, at the end;
`python scripts/settings_table.py --write` puts it there, and tests/test_readme.py checks that it is there).

The module is torch-free: the gunicorn master imports it (gunicorn.conf.py).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A configuration value is malformed or out of range; raised at start-up, never per request.

    Its parts are the fields of the start-up refusal's JSON line (clipsvc.server.logs.refuse_configuration), so an
    operator's log query finds the variable without parsing a sentence: the `variable`, the `value` as given (None
    for a secret, which is never shown), the `problem` with it, and the values `accepted`, in words."""

    def __init__(self, variable: str, value: str | None, problem: str, accepted: str):
        shown = "" if value is None else f"={value!r}"
        super().__init__(f"{variable}{shown} is out of range ({accepted})" if problem == OUT_OF_RANGE else
                         f"{variable}{shown} is invalid: {problem} (accepted: {accepted})")
        self.variable, self.value, self.problem, self.accepted = variable, value, problem, accepted


OUT_OF_RANGE = "out of range"  # the problem when a setting's check refuses a value its parser read


def cpu_count() -> int:
    """Cores this process may use (respects affinity masks and container cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# Fixed limits, not settings: a text part or a whole urlencoded body (Flask's default); a text's characters as
# sent, on every API, before cleaning: 75 tokens of CLIP's longest ASCII token (24) and a space need 1875 at most.
MAX_FORM_MEMORY_BYTES = 500_000
MAX_TEXT_CHARS = 4096

# prometheus_client's own variable: where every worker writes its metrics (see lifecycle.prepare_metrics_dir).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")
BATCHING_CHOICES = ("auto", "on", "off")
# auto: bf16 on a CPU with native bf16 (AVX512-BF16 or AMX), else fp32; fp16 on CUDA (clipsvc.encoder.precision).
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
CPU_ENGINES = ("openvino", "torch")
# An allow-list entry: a host name or IPv4 address, `*.` for any subdomain, `:port` for a non-default port.
HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?")
# A CORS origin as a browser sends it: http(s), a host name, IPv4 or [IPv6] address, an optional port; or `*`.
ORIGIN_PATTERN = re.compile(r"\*|https?://([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])"
                            r"(:\d{1,5})?")
# An API key (SECURITY.md): 16-512 visible ASCII characters but the comma, CLIP_API_KEYS' separator.
API_KEY_PATTERN = re.compile(r"[!-+\--~]{16,512}")
LIST_SEPARATOR = re.compile(r"[\s,]+")  # between the entries of a list setting (hosts, origins, networks)
SWITCH_WORDS = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


# Parsers: the variable's text -> the value; a ValueError's message says what was expected.

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


def _switch(raw: str) -> bool:
    if raw.lower() not in SWITCH_WORDS:
        raise ValueError("expected on or off")
    return SWITCH_WORDS[raw.lower()]


def _host_list(raw: str) -> tuple[str, ...]:
    return tuple(host.lower().rstrip(".") for host in LIST_SEPARATOR.split(raw) if host)


def _origin_list(raw: str) -> tuple[str, ...]:
    """Origins as browsers send them (lower-case scheme and host, no trailing slash), or `*` alone."""
    return tuple(dict.fromkeys(origin.rstrip("/").lower() for origin in LIST_SEPARATOR.split(raw) if origin))


def _network_list(raw: str) -> tuple[str, ...]:
    """Addresses and CIDR networks, each as `ipaddress` writes it (a lone address becomes its /32 or /128); a network
    with host bits set (10.0.0.7/8) is refused as the typo it most likely is, not widened."""
    # ipaddress's ValueError names the entry: "'proxy' does not appear to be an IPv4 or IPv6 network".
    return tuple(dict.fromkeys(str(ipaddress.ip_network(entry)) for entry in LIST_SEPARATOR.split(raw) if entry))


def _key_list(raw: str, separator: str = ",") -> tuple[str, ...]:
    """Keys without duplicates; none at all (only commas, an empty file) is a mistake, not "keys off"."""
    keys = tuple(dict.fromkeys(key.strip() for key in raw.split(separator) if key.strip()))
    if not keys:
        raise ValueError("it holds no key")
    return keys


def _key_file(raw: str) -> tuple[str, ...]:
    """A file's keys (a Docker or Kubernetes secret), read once at start-up: one a line, `#` comments ignored."""
    try:
        lines = Path(raw).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"cannot read it: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    return _key_list("\n".join(line for line in lines if not line.strip().startswith("#")), "\n")


# Checks: the value and the whole Settings (some limits depend on others) -> whether it is allowed.
Check = Callable[[Any, "Settings"], bool]


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


def _all_networks(values: tuple[str, ...], settings: Settings) -> bool:
    try:
        for value in values:
            ipaddress.ip_network(value)
    except ValueError:
        return False
    return True


def _setting(default: Any, var: str, parse: Callable[[str], Any], check: Check, hint: str, *, doc: str,
             shown_default: str | None = None, limit: bool = False, secret: bool = False) -> Any:
    """One setting, a field of `Settings`.

    `hint` says in words which values `check` allows (start-up errors quote it); `doc` is its meaning, in the
    docs' Markdown; `shown_default` is the default in words where its value alone would not say it (None, an
    empty tuple, one computed at run time). A `limit` is one clients must respect, so /meta and the OpenAPI
    document publish it; a `secret` is never shown, in repr or messages.
    """
    metadata = {"var": var, "parse": parse, "check": check, "hint": hint, "doc": doc, "shown_default": shown_default,
                "limit": limit, "secret": secret}
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Service configuration; build it with `Settings.from_env()` or pass values in tests."""

    model_dir: Path = _setting(
        Path("/model"), "CLIP_MODEL_DIR", Path, _anything, "a path",
        doc="model directory, a directory holding one, or the `.zip`")
    model_cache_dir: Path | None = _setting(
        None, "CLIP_MODEL_CACHE_DIR", Path, _anything, "a writable directory",
        shown_default="system temp dir + `/clipsvc-models`",
        doc="where a zipped model is unzipped and CLIP_CPU_ENGINE=openvino keeps its conversion (made once per "
            "model and precision, by the first worker; reused on restart)")
    port: int = _setting(
        8081, "PORT", _whole_number, _between(1, 65535), "1-65535",
        doc="listening port (all interfaces)")
    workers: int = _setting(
        2, "WEB_CONCURRENCY", _whole_number, _at_least(1), "at least 1",
        doc="gunicorn worker processes, each with its own model")
    # None: per forward pass, cores ÷ the workers busy at that moment (clipsvc.encoder.cputhreads).
    torch_threads: int | None = _setting(
        None, "CLIP_TORCH_THREADS", _whole_number, lambda value, _: value is None or value >= 1, "at least 1",
        shown_default="follows the load",
        doc="threads per forward pass; with torch by default cores ÷ the workers computing at that moment (all "
            "cores for a worker alone, one each when all are busy), with OpenVINO every core (its thread pool is "
            "sized once, and its idle threads sleep); a number fixes it. Not the request threads (`CLIP_THREADS`); "
            "`/meta` shows it as `torch_threads`")
    device: str = _setting(
        "auto", "CLIP_DEVICE", str.lower,
        lambda value, _: value in DEVICE_CHOICES or re.fullmatch(r"cuda:\d+", value) is not None,
        "auto, cpu, cuda or cuda:N",
        doc="`auto` (CUDA if present, else CPU), `cpu`, `cuda`, `cuda:N`")
    cpu_engine: str = _setting(
        "openvino", "CLIP_CPU_ENGINE", str.lower, _one_of(CPU_ENGINES), ", ".join(CPU_ENGINES),
        doc="what computes both towers on a CPU: `openvino` (converted once from the model's weights into "
            "CLIP_MODEL_CACHE_DIR, then compiled by each worker for its precision; closest to the CPU's matrix "
            "rate, [docs/performance.md](docs/performance.md#cpu-engines)) or `torch` (transformers' model as "
            "loaded, with CLIP_CPU_PACKED_WEIGHTS). GPUs always use torch")
    cpu_packed_weights: bool = _setting(
        True, "CLIP_CPU_PACKED_WEIGHTS", _switch, lambda value, _: isinstance(value, bool), "on or off",
        doc="with CLIP_CPU_ENGINE=torch on CPUs, give linear layers oneDNN's packed copy of their weights at load, "
            "with quick-GELU fused into the MLP: the image tower's in fp32 and bf16, and in bf16 the text tower's "
            "too, its rows rounded up to a few sizes so that oneDNN's kernels per input shape stay bounded. Image "
            "passes 15-30% faster with 2 threads, the same vectors to rounding. In fp32 each worker then holds its "
            "own copy instead of sharing the weights file's pages (ViT-L/14: ~1.2 GB per worker; `off` to share). In "
            "bf16 leave it on: the weights are private anyway, and plain bf16 layers keep kernels for every text "
            "shape they meet (a ViT-L/14 worker grew by 0.8 GB)")
    precision: str = _setting(
        "auto", "CLIP_PRECISION", str.lower, _one_of(PRECISIONS), ", ".join(PRECISIONS),
        doc="what both towers compute in: `auto` (bf16 on a CPU with native bf16, AVX512-BF16 or AMX; fp32 on "
            "other CPUs; fp16 on CUDA), `fp32`, `bf16`, `fp16` (CUDA), `int8` (CPU: dynamic quantisation of the "
            "linear layers, opt-in). Responses are float32 unit vectors whatever it is; cosines against fp32 are in "
            "[docs/performance.md](docs/performance.md#precision)")
    # The default per format is clipsvc.encoder.precision.MIN_COSINE (tests/test_settings.py compares).
    precision_min_cosine: float | None = _setting(
        None, "CLIP_PRECISION_MIN_COSINE", _number, lambda value, _: value is None or 0 <= value <= 1, "0-1",
        shown_default="per precision: bf16 and fp16 `0.999`, int8 `0.99`",
        doc="the accuracy guard: at load each worker runs a fixed probe (3 images, 4 texts) in fp32 and in the "
            "chosen precision; below this worst cosine it logs a `precision_fallback` warning and computes in "
            "fp32. The cosine is in the `model_loaded` line and `/meta` (`precision_cosine`); `0` turns the guard "
            "off")
    text_cache_size: int = _setting(
        4096, "CLIP_TEXT_CACHE_SIZE", _whole_number, _at_least(0), "entries, 0 or more",
        doc="text vectors each worker keeps, by exact token ids, so repeated labels are not encoded again "
            "(identical vectors; about 3 KiB each at 768 dimensions plus the key: ~15 MB per worker when full); "
            "`0` turns it off. Hits and misses are in `/metrics`")
    max_request_mb: float = _setting(
        64, "CLIP_MAX_REQUEST_MB", _number, lambda value, _: 0 < value < math.inf, "greater than 0", limit=True,
        doc="largest request body (413 above it)")
    max_image_mb: float = _setting(
        20, "CLIP_MAX_IMAGE_MB", _number, lambda value, settings: 0 < value <= settings.max_request_mb,
        "greater than 0 and at most CLIP_MAX_REQUEST_MB", limit=True,
        doc="largest image file (413 above it)")
    max_image_pixels: int = _setting(
        40_000_000, "CLIP_MAX_IMAGE_PIXELS", _whole_number, _at_least(1), "at least 1", limit=True,
        doc="largest image in pixels, width × height (Pillow itself refuses above ~179 million)")
    max_text_words: int = _setting(
        50, "CLIP_MAX_TEXT_WORDS", _whole_number, _at_least(1), "at least 1", limit=True,
        doc="most words per text")
    max_items: int = _setting(
        64, "CLIP_MAX_ITEMS", _whole_number, _at_least(1), "at least 1", limit=True,
        doc="most images + texts per request")
    worker_timeout: int = _setting(
        300, "CLIP_WORKER_TIMEOUT", _whole_number, _at_least(1), "seconds, at least 1",
        doc="seconds one forward pass may run before gunicorn replaces the worker (and, plus a few seconds, the "
            "longest a request waits for the model); a CPU ViT-L/14 image takes ~1.5 s, so 64 images need minutes")
    graceful_timeout: int = _setting(
        60, "CLIP_GRACEFUL_TIMEOUT", _whole_number, _at_least(0), "seconds, 0 or more",
        doc="seconds in-flight requests get to finish after SIGTERM; give `docker stop -t 70` (its own default is "
            "10 s)")
    max_requests: int = _setting(
        10_000, "CLIP_MAX_REQUESTS", _whole_number, _at_least(0), "0 (never recycle) or more",
        doc="requests after which a worker is replaced (0: never); each replacement reloads the model")
    max_requests_jitter: int = _setting(
        1_000, "CLIP_MAX_REQUESTS_JITTER", _whole_number, _at_least(0), "0 or more",
        doc="random extra requests per worker, so workers do not restart together")
    # How clipsvc.encoder.batching.batch_plan reads these three, and clipsvc.encoder.model the image pass size.
    batching: str = _setting(
        "auto", "CLIP_BATCHING", str.lower, _one_of(BATCHING_CHOICES), ", ".join(BATCHING_CHOICES),
        doc="whether the inference thread merges concurrent requests' rows into one batch: `auto` merges the rows "
            "already waiting, on every device, and only on a GPU also waits `CLIP_BATCH_WAIT_MS` for more; `on` "
            "also waits on a CPU; `off` runs each request's rows alone")
    max_batch: int = _setting(
        64, "CLIP_MAX_BATCH", _whole_number, _at_least(1), "at least 1",
        doc="when batching, the most rows (images or texts) the inference thread gathers from concurrent requests "
            "into one batch (it takes whole requests, so a batch may end past it); on a GPU also the images per "
            "forward pass. On a CPU, and with `CLIP_BATCHING=off`, an image forward pass stays at 8 rows; "
            "`/meta`'s `max_batch` reports the images per forward pass")
    batch_wait_ms: float = _setting(
        5, "CLIP_BATCH_WAIT_MS", _number, _between(0, 1000), "0-1000 milliseconds",
        doc="how long the inference thread waits for more rows before running a batch, on a GPU or with "
            "`CLIP_BATCHING=on`; with `auto` a CPU never holds a request back")
    request_threads: int = _setting(
        8, "CLIP_THREADS", _whole_number, _between(1, 1024), "1-1024",
        doc="request threads per worker: connections served at once, reading, decoding and preprocessing while "
            "the worker's one inference thread runs the model (not torch's threads: that is `CLIP_TORCH_THREADS`); "
            "`/meta` and the `model_loaded` line show it as `request_threads`")
    # Enforced by clipsvc.server.worker and clipsvc.server.deadlines.
    header_timeout_s: float = _setting(
        5, "CLIP_HEADER_TIMEOUT_S", _number, _between(0, 300, above=True), "seconds, more than 0 and at most 300",
        doc="seconds a connection may stay silent, and then seconds for the request line and all headers; 408 "
            "past it")
    client_timeout_s: float = _setting(
        20, "CLIP_CLIENT_TIMEOUT_S", _number, _between(0, 3600, above=True), "seconds, more than 0 and at most 3600",
        doc="seconds for the body to start; each `CLIP_CLIENT_MIN_RATE` bytes received add one second; 408 past it")
    client_min_rate: int = _setting(
        500, "CLIP_CLIENT_MIN_RATE", _whole_number, _at_least(0), "bytes per second, 0 (no extension) or more",
        doc="bytes per second a body (and a response being read) must keep up, as Apache's `mod_reqtimeout` "
            "`body=20,MinRate=500`; 0: the body must arrive within `CLIP_CLIENT_TIMEOUT_S`")
    fetch_allow_hosts: tuple[str, ...] = _setting(
        (), "CLIP_FETCH_ALLOW_HOSTS", _host_list, _all_match(HOST_PATTERN),
        "host names separated by commas, e.g. images.example.com,*.cdn.example.com:8443",
        shown_default="empty (no fetching)",
        doc="hosts whose `http(s)` image URLs `img_uri` may name, comma-separated; `*.example.com` for "
            "subdomains, `host:port` for other ports (see [Image URLs](#image-urls-clip_fetch_allow_hosts))")
    fetch_timeout_s: float = _setting(
        5, "CLIP_FETCH_TIMEOUT_S", _number, _between(0, 60, above=True), "seconds, more than 0 and at most 60",
        doc="seconds for one URL's whole fetch (at most 60)")
    log_level: str = _setting(
        "info", "CLIP_LOG_LEVEL", str.lower, _one_of(LOG_LEVELS), ", ".join(LOG_LEVELS),
        doc=", ".join(f"`{level}`" for level in LOG_LEVELS))
    # Read by clipsvc.server.client_address, for the request log's `client`.
    trusted_proxies: tuple[str, ...] = _setting(
        (), "CLIP_TRUSTED_PROXIES", _network_list, _all_networks,
        "IP addresses or CIDR networks separated by commas, e.g. 10.0.0.0/8,192.168.1.7",
        shown_default="empty (trust none)",
        doc="reverse proxies whose `X-Forwarded-For` the request log believes, comma-separated addresses or CIDR "
            "networks: from a connection of one of them, the logged `client` is the header's last address that "
            "is not one of them; from any other connection, or with none set, it is the connection's own address "
            "(a client cannot choose what is logged)")
    # Read by clipsvc.web.cors.
    cors_origins: tuple[str, ...] = _setting(
        (), "CLIP_CORS_ORIGINS", _origin_list, _all_match(ORIGIN_PATTERN),
        "* or origins separated by commas, e.g. https://app.example.com,http://localhost:3000",
        shown_default="empty (no cross-origin access)",
        doc="web apps on other origins that may call the API from a browser: exact origins (`scheme://host[:port]`), "
            "comma-separated, or `*` for any; preflights are answered, `request_id`, `Authorization` and "
            "`Content-Type` may be sent, and `request_id` read")
    # Checked by clipsvc.web.auth.
    api_keys: tuple[str, ...] = _setting(
        (), "CLIP_API_KEYS", _key_list, _all_match(API_KEY_PATTERN),
        "keys separated by commas, each 16-512 visible ASCII characters", secret=True,
        shown_default="empty (no key needed)",
        doc="API keys separated by commas, each 16–512 visible ASCII characters (no comma); when set, every model "
            "endpoint needs `Authorization: Bearer <key>` with one of them (see [API keys](#api-keys))")
    api_keys_from_file: tuple[str, ...] = _setting(
        (), "CLIP_API_KEYS_FILE", _key_file, _all_match(API_KEY_PATTERN), "a readable file of such keys, one a line",
        secret=True, shown_default="empty (none)",
        doc="a file of API keys, one a line (blank lines and `#` comments ignored), read at start-up: for a "
            "Docker or Kubernetes secret; its keys count as well as `CLIP_API_KEYS`'")

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
        given: dict[str, str] = {}  # variable -> its text, for a refusal that quotes what the operator wrote
        for spec in fields(cls):
            var, parse = spec.metadata["var"], spec.metadata["parse"]
            raw = (env.get(var) or "").strip()
            if not raw:
                continue
            given[var] = raw
            try:
                values[spec.name] = parse(raw)
            except ValueError as exc:
                raise SettingsError(var, None if spec.metadata["secret"] else raw, str(exc),
                                    spec.metadata["hint"]) from None
        try:
            return cls(**values)
        except SettingsError as exc:
            if exc.value is None:  # a secret: nothing to quote
                raise
            if exc.variable not in given:  # a default that another setting's value now excludes
                raise SettingsError(exc.variable, exc.value, f"its default is {exc.problem}", exc.accepted) from None
            raise SettingsError(exc.variable, given[exc.variable], exc.problem, exc.accepted) from None

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not spec.metadata["check"](value, self):
                shown = None if spec.metadata["secret"] else str(value)  # never a key
                raise SettingsError(spec.metadata["var"], shown, OUT_OF_RANGE, spec.metadata["hint"])


# Field name -> (environment variable, parser): a view of the declarations above, for tests and docs checks.
ENV_VARS: dict[str, tuple[str, Callable[[str], Any]]] = {
    spec.name: (spec.metadata["var"], spec.metadata["parse"]) for spec in fields(Settings)
}
# The limits clients must respect (Settings.limits), name -> JSON type, for the OpenAPI document.
LIMIT_TYPES: dict[str, str] = {
    spec.name: "integer" if spec.type == "int" else "number" for spec in fields(Settings) if spec.metadata["limit"]
}


def env_var(name: str) -> str:
    """The variable setting `name` is read from, for messages that tell an operator what to change."""
    return ENV_VARS[name][0]


# -- the settings as the docs show them ------------------------------------------------------------------------


def shown_default(name: str) -> str:
    """Setting `name`'s default as docs/configuration.md shows it: the value as one would set it, or its words."""
    spec = next(spec for spec in fields(Settings) if spec.name == name)
    if spec.metadata["shown_default"] is not None:
        return spec.metadata["shown_default"]
    value = spec.default
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if value is None or value == ():
        raise ValueError(f"{spec.metadata['var']}'s default needs words: give it a shown_default")
    return f"`{value}`"


def markdown_table() -> str:
    """docs/configuration.md's settings table, one row a setting in declaration order: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for spec in fields(Settings):
        cells = (f"`{spec.metadata['var']}`", shown_default(spec.name), spec.metadata["doc"])
        if any("|" in cell or "\n" in cell for cell in cells):
            raise ValueError(f"{spec.metadata['var']}: a table cell cannot hold `|` or a line break")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
