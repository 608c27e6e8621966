"""The one handler that turns every error, ours, werkzeug's and the encoder's, into the same JSON body."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, json, request
from werkzeug.exceptions import HTTPException

from ..encoder.batching import BatchTimeout, WorkerAborted
from ..errors import WORKER_TIMEOUT_MESSAGE, ApiError, Code
from ..server.logs import note_error
from ..settings import env_var
from .context import error_shape, get_settings

log = logging.getLogger(__name__)


def _describe(exc: HTTPException) -> tuple[str, str]:
    """Code and a message that says what to do, for werkzeug's own errors (routing, size)."""
    code = (exc.name or "error").lower().replace(" ", "_")
    if exc.code == 404:
        return code, f"No endpoint at {request.path}. Try {_endpoints()}."
    if exc.code == 405:
        allowed = ", ".join(sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS")))
        return code, f"{request.method} is not allowed on {request.path}; use {allowed or 'another method'}."
    if exc.code == 413:
        limit = f"{get_settings().max_request_mb:g} MB ({env_var('max_request_mb')})"
        size = (f"is {request.content_length} bytes; the limit is {limit}" if request.content_length is not None
                else f"(chunked) passed the limit of {limit} while it was read")  # web.app.BodyLimit
        return Code.REQUEST_TOO_LARGE.id, f"The request body {size}. Send fewer or smaller files."
    return code, exc.description or exc.name


def _endpoints() -> str:
    """Every route this app serves, read from its URL map so the hint never goes stale."""
    routes = sorted(
        (method, rule.rule) for rule in current_app.url_map.iter_rules() if "<" not in rule.rule
        for method in rule.methods or () if method not in ("HEAD", "OPTIONS")
    )
    return ", ".join(f"{method} {path}" for method, path in routes)


def _json_response(exc: HTTPException) -> Response:
    if isinstance(exc, ApiError):
        code, message, field = exc.error.id, exc.description, exc.field
    else:
        (code, message), field = _describe(exc), None
    note_error(code)  # the request's log line names the code, so an operator sees why the client failed
    response = exc.get_response()  # keeps status and headers such as Allow
    if isinstance(exc, ApiError):
        response.headers.update(exc.error.headers)
    # As the API declared it (OpenAI's SDKs, Weaviate's module parse theirs); ours also says which item failed.
    shape = error_shape(request.path, request.blueprint, request)
    index = exc.index if isinstance(exc, ApiError) else None
    response.data = json.dumps(shape(exc.code, code, message, field, index))
    response.content_type = "application/json"
    return response


def _unexpected(exc: Exception) -> Response:
    """A bug, not bad input: the traceback goes to the log, never to the client."""
    log.exception("unhandled error")
    return _json_response(ApiError(Code.INTERNAL_SERVER_ERROR,
                                   "The service failed to process this request; the error has been logged."))


def _batch_timeout(exc: BatchTimeout) -> Response:
    return _json_response(ApiError(Code.INFERENCE_TIMEOUT,
                                   "The model is overloaded: this request waited too long for it; retry later"))


def _worker_aborted(exc: WorkerAborted) -> Response:
    return _json_response(ApiError(Code.WORKER_TIMEOUT, WORKER_TIMEOUT_MESSAGE))


def register_error_handlers(app: Flask) -> None:
    """Registered on the app, not a blueprint, so routing 404/405 are caught too."""
    app.register_error_handler(HTTPException, _json_response)
    app.register_error_handler(BatchTimeout, _batch_timeout)
    app.register_error_handler(WorkerAborted, _worker_aborted)
    app.register_error_handler(Exception, _unexpected)
