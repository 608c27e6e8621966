"""The application factory: everything the app needs is passed in or read from one Settings."""

from __future__ import annotations

from typing import IO

from flask import Flask, Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from ..encoder.model import ClipEncoder
from ..parsing.form import FormParser, parts_limit
from ..server import metrics
from ..server.client_address import TrustedProxies
from ..server.logs import RequestLog
from ..settings import MAX_FORM_MEMORY_BYTES, Settings
from . import bentoml, clip, context, demo, docs, health, jina, openai, truss
from .auth import ApiKeys
from .cors import Cors
from .errors import register_error_handlers
from .serialize import VectorJSON


class BodyLimit(LimitedStream):
    """A body without Content-Length (chunked) held to MAX_CONTENT_LENGTH while it is read, whoever reads it.

    werkzeug's own limit stops quietly at its last byte and refuses only a read after it, so a reader that stops
    there (a JSON body read whole, /vectorize's image) got the body cut short: "not valid JSON", a truncated image.
    Here the stream looks one byte past the limit as soon as it is reached: a longer body is a 413 at that moment,
    before the rest is read; a body of exactly the limit ends there and is read whole.
    """

    def __init__(self, stream: IO[bytes], limit: int):
        super().__init__(stream, limit, is_max=True)
        self._body = stream

    def readinto(self, buffer: bytearray) -> int:
        size = super().readinto(buffer)
        if self.is_exhausted:
            self.on_exhausted()
        return size

    def on_exhausted(self) -> None:
        """At the limit: the body's end, or a 413 if one more byte comes."""
        if self._body.read(1):
            raise RequestEntityTooLarge()


class LimitedRequest(Request):
    """Flask's request, whose body every endpoint reads under the same limits: the request size (BodyLimit) and
    the form's (parsing.form.FormParser)."""

    @cached_property
    def stream(self) -> IO[bytes]:
        """werkzeug's stream (a declared length over the limit is a 413 unread); a chunked body in a BodyLimit."""
        stream = get_input_stream(self.environ, max_content_length=self.max_content_length)
        if isinstance(stream, LimitedStream) and self.content_length is None:
            return BodyLimit(self.input_stream, stream.limit)
        return stream

    def make_form_data_parser(self) -> FormParser:
        """werkzeug's arguments, and the item limit whose refusal a form with too many parts gets."""
        return FormParser(context.get_settings().max_items, stream_factory=self._get_file_stream,
                          max_form_memory_size=self.max_form_memory_size, max_content_length=self.max_content_length,
                          cls=self.parameter_storage_class)


def create_app(settings: Settings | None = None, encoder: ClipEncoder | None = None) -> Flask:
    """Build the app around `encoder` (wsgi.py passes the worker's); without one, the model endpoints and /readyz
    answer 503 model_not_ready."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)
    app.json = VectorJSON(app)
    app.request_class = LimitedRequest
    app.config.update(
        # werkzeug refuses larger bodies from Content-Length, before reading them (413).
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        # Bound the parser's work; both limits apply to multipart and urlencoded bodies alike (FormParser, which
        # counts the parts itself: this value is what request.max_form_parts reports).
        MAX_FORM_PARTS=parts_limit(settings.max_items),
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY_BYTES,
    )
    app.json.sort_keys = False  # keep vectors and scores grouped by id, in request order
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
