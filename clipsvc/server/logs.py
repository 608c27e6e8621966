"""JSON-lines logging shared by gunicorn and the app, the one log line per request, and start-up refusals."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import NoReturn

from flask import Flask, Response, g, has_request_context, request

from ..settings import SettingsError
from . import native_stderr
from .client_address import FORWARDED_FOR, TrustedProxies
from .request_id import HEADER_NAMES, REPLACED_HEADER, choose_request_id, escaped, new_request_id

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
request_log = logging.getLogger("clipsvc.request")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, request_id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RequestIdFilter(logging.Filter):
    """Stamps the current request's id on every record logged while handling it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g and not hasattr(record, "request_id"):
            record.request_id = g.request_id
        return True


# Loggers whose error level means the service failed. Libraries log errors about their input too (Pillow, at
# error level, for a TIFF a client sent): those are capped at warning, since operators page on error lines.
OWN_LOGGERS = ("clipsvc", "gunicorn")


def is_own(name: str) -> bool:
    return any(name == own or name.startswith(own + ".") for own in OWN_LOGGERS)


class CapThirdPartyLevel(logging.Filter):
    """A record above warning from a logger not in OWN_LOGGERS becomes a warning; `original_level` keeps its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING and not is_own(record.name):
            record.original_level = record.levelname.lower()
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


class JsonHandler(logging.Handler):
    """Writes each record as one line straight to the real stderr (native_stderr.real_stderr_fd()): fd 2 until
    fd 2 is captured, then the copy kept of it. One write() a line and no buffer: no buffered stream's lock can be
    inherited held by a forked worker, and the processes' lines do not mix (on a pipe, lines up to 4 KiB)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", errors="replace")
            while data:
                data = data[os.write(native_stderr.real_stderr_fd(), data):]
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        # logging reports a failed emit on sys.stderr, fd 2: for a captured line that would come back as another.
        if record.name != native_stderr.LOGGER:
            super().handleError(record)


def write_now(logger: str, message: str, **fields: object) -> None:
    """An error record of `logger` with `fields`, as one JSON line on the real stderr, whatever logging is configured:
    for refusals that stop start-up before gunicorn has set up logging (its config file, the worker class's import)."""
    record = logging.LogRecord(logger, logging.ERROR, __file__, 0, message, None, None)
    record.__dict__.update(fields)
    handler = JsonHandler()
    handler.setFormatter(JsonFormatter())
    handler.handle(record)


def refuse_configuration(exc: SettingsError) -> NoReturn:
    """Stop start-up on a bad setting: one JSON line naming the variable, the value (never a secret's), the problem
    and what is accepted, then exit status 78 (sysexits' EX_CONFIG: systemd shows it as "CONFIG")."""
    fields = {"variable": exc.variable, "value": exc.value, "problem": exc.problem, "accepted": exc.accepted}
    write_now("clipsvc.settings", f"bad configuration: {exc}", event="bad_configuration",
              **{key: value for key, value in fields.items() if value is not None})
    sys.exit(os.EX_CONFIG)


def logging_config(level: str = "info") -> dict:
    """A dictConfig for gunicorn's `logconfig_dict`: every logger writes JSON lines to the real stderr, and
    libraries' records are capped at warning (CapThirdPartyLevel)."""
    handler = {"()": JsonHandler, "formatter": "json", "filters": ["request_id", "cap_third_party"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"request_id": {"()": RequestIdFilter}, "cap_third_party": {"()": CapThirdPartyLevel}},
        "handlers": {"json": handler},
        "root": {"level": level.upper(), "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["json"], "propagate": False},
            # transformers installs its own plain-text handler; route it through ours instead.
            "transformers": {"level": "WARNING", "handlers": ["json"], "propagate": False},
            # The app logs one richer line per request (see RequestLog), so gunicorn's is off.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }


def note_items(images: int, texts: int) -> None:
    """Record this request's images and texts for its log line and the worker's counters."""
    g.images = g.get("images", 0) + images
    g.texts = g.get("texts", 0) + texts


def note_error(code: str) -> None:
    """Record the `error.code` this request is answered with (clipsvc.web.errors), for its log line."""
    g.error_code = code


@dataclass
class Counters:
    """Running totals of this worker, logged with each request (the user's 'counters in the logs')."""

    requests: int = 0
    images: int = 0
    texts: int = 0
    errors: int = 0


class RequestLog:
    """Assigns the request id, echoes it in the response, and logs one line per request: who asked (`client`), what
    (method, path, items), the answer (status; `error_code` on an error) and the worker's running totals."""

    def __init__(self, app: Flask | None = None, proxies: TrustedProxies | None = None):
        self.counters = Counters()
        self.proxies = proxies or TrustedProxies()
        self._lock = threading.Lock()  # gthread workers serve several requests at once
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.before_request(self._start)
        app.after_request(self._finish)

    def _start(self) -> None:
        g.started = time.perf_counter()
        g.images = g.texts = 0
        g.request_id, g.original_request_id = choose_request_id(request.headers)

    def _finish(self, response: Response) -> Response:
        request_id = g.get("request_id") or new_request_id()
        for name in HEADER_NAMES:
            response.headers[name] = request_id
        original = g.get("original_request_id")
        if original is not None:
            response.headers[REPLACED_HEADER] = "true"
        with self._lock:
            counters = self.counters
            counters.requests += 1
            counters.images += g.get("images", 0)
            counters.texts += g.get("texts", 0)
            counters.errors += response.status_code >= 400
            snapshot = asdict(counters)
        replaced = {} if original is None else {"original_request_id": escaped(original)}
        failed = {"error_code": g.get("error_code")} if response.status_code >= 400 else {}
        request_log.info(
            "request",
            extra={
                "request_id": request_id,
                **replaced,
                "client": self.proxies.client(request.remote_addr, request.headers.get(FORWARDED_FOR)),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                **failed,
                "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
                "images": g.get("images", 0),
                "texts": g.get("texts", 0),
                "worker_pid": os.getpid(),
                "counters": snapshot,
            },
        )
        return response
