"""JSON-lines logging shared by gunicorn and the app, and the one log line per request."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass

from flask import Flask, Response, g, has_request_context, request

from .request_id import HEADER_NAMES, choose_request_id, new_request_id

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


def logging_config(level: str = "info") -> dict:
    """A dictConfig for gunicorn's `logconfig_dict`: every logger writes JSON lines to stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"request_id": {"()": RequestIdFilter}},
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


@dataclass
class Counters:
    """Running totals of this worker, logged with each request (the user's 'counters in the logs')."""

    requests: int = 0
    images: int = 0
    texts: int = 0
    errors: int = 0


class RequestLog:
    """Assigns the request id, echoes it in the response, and logs one line per request."""

    def __init__(self, app: Flask | None = None):
        self.counters = Counters()
        self._lock = threading.Lock()  # gthread workers serve several requests at once
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions["clipsvc.request_log"] = self
        app.before_request(self._start)
        app.after_request(self._finish)

    def _start(self) -> None:
        g.started = time.perf_counter()
        g.images = g.texts = 0
        g.request_id, problem = choose_request_id(request.headers)
        if problem is not None:
            raise problem

    def _finish(self, response: Response) -> Response:
        request_id = g.get("request_id") or new_request_id()
        for name in HEADER_NAMES:
            response.headers[name] = request_id
        with self._lock:
            counters = self.counters
            counters.requests += 1
            counters.images += g.get("images", 0)
            counters.texts += g.get("texts", 0)
            counters.errors += response.status_code >= 400
            snapshot = asdict(counters)
        request_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
                "images": g.get("images", 0),
                "texts": g.get("texts", 0),
                "worker_pid": os.getpid(),
                "counters": snapshot,
            },
        )
        return response
