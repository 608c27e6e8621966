"""Prometheus metrics at GET /metrics, summed over every gunicorn worker.

Under gunicorn each process writes its values to files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode; `lifecycle.prepare_metrics_dir` sets it up before the workers fork) and a scrape reads
them all, so any worker answers for the whole server. Without that variable (tests, `flask run`) the
metrics are this process's own, kept per app. prometheus_client picks its mode when first imported, so
this module must not be imported in the gunicorn master before `prepare_metrics_dir` has run.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from ..settings import METRICS_DIR_ENV, env_var

if TYPE_CHECKING:  # the gunicorn master imports this module and never loads torch
    from ..encoder.model import ClipEncoder

EXTENSION_KEY = "clipsvc.server.metrics"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

bp = Blueprint("metrics", __name__)
# The `_created` timestamps are noise here, and multiprocess mode has none: one format either way.
disable_created_metrics()


def multiprocess() -> bool:
    return bool(os.environ.get(METRICS_DIR_ENV))


class Metrics:
    """The service's metrics; their values go to the multiprocess files when that mode is on."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("clipsvc_requests", "HTTP requests served, by route, method and status.",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("clipsvc_request_duration_seconds", "Time to answer a request, by route.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_progress = Gauge("clipsvc_requests_in_progress", "Requests being answered now.",
                                 registry=r, multiprocess_mode="livesum")
        self.items = Counter("clipsvc_items_encoded", "Images and texts that went through the model.", ["kind"],
                             registry=r)
        self.batch_size = Histogram("clipsvc_batch_size", "Rows per forward pass of the model (with dynamic "
                                    "batching, rows from several requests).", ["kind"], buckets=BATCH_BUCKETS,
                                    registry=r)
        self.text_cache_hits = Counter("clipsvc_text_cache_hits", "Texts whose vector came from the worker's text "
                                       f"cache ({env_var('text_cache_size')}).", registry=r)
        self.text_cache_misses = Counter("clipsvc_text_cache_misses", "Texts the model computed (not in the "
                                         "worker's text cache).", registry=r)
        self.model_load = Gauge("clipsvc_model_load_seconds", "Seconds each live worker took to load the model.",
                                registry=r, multiprocess_mode="liveall")

    def init_app(self, app: Flask, encoder: ClipEncoder | None) -> None:
        app.extensions[EXTENSION_KEY] = self
        app.before_request(self._start)
        app.after_request(self._count)  # error handlers' responses pass here too
        app.teardown_request(self._done)
        if encoder is not None:
            encoder.on_forward = self.observe_forward
            encoder.text_cache.on_lookup = self.observe_text_cache
            self.model_load.set(encoder.serving.load_seconds)

    def observe_forward(self, kind: str, rows: int) -> None:
        """Called by the encoder, from the request or inference thread, once per forward pass."""
        self.items.labels(kind).inc(rows)
        self.batch_size.labels(kind).observe(rows)

    def observe_text_cache(self, hits: int, misses: int) -> None:
        """Called by the encoder once per request that has texts."""
        self.text_cache_hits.inc(hits)
        self.text_cache_misses.inc(misses)

    def _start(self) -> None:
        g.metrics_started = time.perf_counter()
        self.in_progress.inc()

    def _count(self, response: Response) -> Response:
        # The route's pattern, not the path: unknown paths must not become new label values.
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        self.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        self.latency.labels(endpoint).observe(time.perf_counter() - g.get("metrics_started", time.perf_counter()))
        return response

    def _done(self, exc: BaseException | None) -> None:
        if g.pop("metrics_started", None) is not None:
            self.in_progress.dec()

    def exposition(self) -> bytes:
        if not multiprocess():
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; in multiprocess mode the sum over every worker, live or gone."""
    # 0.0.4: what every Prometheus release (and most other scrapers) reads; the body is the same.
    return Response(current_app.extensions[EXTENSION_KEY].exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def worker_exited(pid: int) -> None:
    """In the master: drop a dead worker's live gauges and count the restart gunicorn will make."""
    mark_process_dead(pid)
    worker_restarts().inc()


def worker_restarts() -> Counter:
    """Made in the master only (a worker making it would write a zero of its own). Its value lives in the
    master's file, so each new object adds to the same count."""
    return Counter("clipsvc_worker_restarts", "Workers that exited (crash, timeout, recycling after "
                   f"{env_var('max_requests')}) and were replaced.", registry=None)
