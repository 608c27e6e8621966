"""The application factory: everything the app needs is passed in or read from one Settings."""

from __future__ import annotations

from flask import Flask, Request

from ..encoder.model import ClipEncoder
from ..parsing.form import FormParser
from ..server import lifecycle
from ..server.logs import RequestLog
from ..server.metrics import Metrics
from ..settings import MAX_FORM_MEMORY_BYTES, Settings
from . import clip, compat, demo, docs, extensions, health, json_api, openai
from .auth import ApiKeys
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
    extensions.init_app(app, settings, encoder)
    RequestLog(app)
    Metrics().init_app(app, encoder)
    ApiKeys(settings).init_app(app)
    register_error_handlers(app)
    app.register_blueprint(clip.bp)
    app.register_blueprint(json_api.bp)
    app.register_blueprint(openai.bp)
    app.register_blueprint(compat.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(demo.bp)
    app.register_blueprint(docs.bp)
    return app
