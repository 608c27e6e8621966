"""The application factory: everything the app needs is passed in or read from one Settings."""

from __future__ import annotations

from flask import Flask, Request

from ..encoder.model import ClipEncoder
from ..parsing.form import FormParser
from ..server import lifecycle, metrics
from ..server.client_address import TrustedProxies
from ..server.logs import RequestLog
from ..settings import MAX_FORM_MEMORY_BYTES, Settings
from . import bentoml, clip, context, demo, docs, health, jina, openai, truss
from .auth import ApiKeys
from .cors import Cors
from .errors import register_error_handlers
from .serialize import VectorJSON


class FormRequest(Request):
    """Flask's request, with urlencoded bodies bounded like multipart ones (parsing.form.FormParser)."""

    form_data_parser_class = FormParser


def create_app(settings: Settings | None = None, encoder: ClipEncoder | None = None) -> Flask:
    """Build the app; with no encoder given it uses the one this gunicorn worker loaded (if any)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)
    app.json = VectorJSON(app)
    app.request_class = FormRequest
    app.config.update(
        # werkzeug refuses larger bodies from Content-Length, before reading them (413).
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        # Bound the parser's work: room for every allowed item plus some unknown keys to report. Both limits
        # apply to multipart and urlencoded bodies alike (FormParser).
        MAX_FORM_PARTS=2 * settings.max_items + 16,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY_BYTES,
    )
    app.json.sort_keys = False  # keep vectors and scores grouped by id, in request order
    encoder = encoder if encoder is not None else lifecycle.current_encoder()
    context.init_app(app, settings, encoder)
    RequestLog(app, TrustedProxies(settings.trusted_proxies))
    metrics.Metrics().init_app(app, encoder)
    Cors(settings).init_app(app)  # before the key check: a preflight carries no key
    ApiKeys(settings).init_app(app)
    register_error_handlers(app)
    # The whole surface: one blueprint per API the service speaks, then the probes, pages and metrics.
    app.register_blueprint(clip.bp)  # the user's contract: POST /syte_test/clip
    app.register_blueprint(bentoml.bp)  # BentoML: POST /encode, /rank, /vectorize
    app.register_blueprint(truss.bp)  # the CLIP Truss: POST /v1/models/model:predict and Baseten's /predict paths
    app.register_blueprint(jina.bp)  # clip-as-service: POST /post (its envelope on /encode, /rank: bentoml.py)
    app.register_blueprint(openai.bp)  # OpenAI: POST /v1/embeddings, GET /v1/models
    app.register_blueprint(health.bp)  # GET /livez, /readyz, /meta
    app.register_blueprint(docs.bp)  # GET /openapi.json, /docs
    app.register_blueprint(demo.bp)  # GET /, /demo/...
    app.register_blueprint(metrics.bp)  # GET /metrics (server.metrics; Metrics.init_app above only counts)
    return app
