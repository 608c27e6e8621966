"""Our error types and the one handler that turns every error into the same JSON body."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, json, request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from werkzeug.exceptions import RequestTimeout as _RequestTimeout

from .encoder.batching import BatchTimeout, WorkerAborted

log = logging.getLogger(__name__)


class ApiError(HTTPException):
    """An error with a stable machine-readable code and the form field it concerns."""

    error_code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, error_code: str | None = None):
        super().__init__(description=message)
        self.field = field
        if error_code is not None:
            self.error_code = error_code


class InvalidInput(ApiError, BadRequest):
    error_code = "invalid_input"


class PayloadTooLarge(ApiError, RequestEntityTooLarge):
    error_code = "payload_too_large"


class UnsupportedContentType(ApiError, UnsupportedMediaType):
    error_code = "unsupported_media_type"


class ModelNotReady(ApiError, ServiceUnavailable):
    error_code = "model_not_ready"


class Overloaded(ApiError, ServiceUnavailable):
    error_code = "inference_timeout"


class RequestTimeout(ApiError, _RequestTimeout):
    """The client sent its request too slowly (clipsvc.server.deadlines); its connection is closed."""

    error_code = "request_timeout"


class WorkerTimeout(ApiError, ServiceUnavailable):
    """A forward pass ran past gunicorn's timeout: the requests this worker holds are answered, then it goes."""

    error_code = "worker_timeout"


WORKER_TIMEOUT_MESSAGE = ("A forward pass in this worker ran longer than CLIP_WORKER_TIMEOUT; the worker is being "
                          "replaced. Send the request again, with fewer items if it was large.")


def error_body(status: int, code: str, message: str, field: str | None = None) -> dict:
    """The one error shape every endpoint returns."""
    return {"error": {"status": status, "code": code, "message": message, "field": field}}


def _describe(exc: HTTPException) -> tuple[str, str]:
    """Code and a message that says what to do, for werkzeug's own errors (routing, size)."""
    code = (exc.name or "error").lower().replace(" ", "_")
    if exc.code == 404:
        return code, f"No endpoint at {request.path}. Try {_endpoints()}."
    if exc.code == 405:
        allowed = ", ".join(sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS")))
        return code, f"{request.method} is not allowed on {request.path}; use {allowed or 'another method'}."
    if exc.code == 413:
        size = f"{request.content_length} bytes" if request.content_length is not None else "over the limit"
        limit = current_app.config["MAX_CONTENT_LENGTH"] / (1024 * 1024)
        return "request_too_large", (
            f"The request body is {size}; the limit is {limit:g} MB (CLIP_MAX_REQUEST_MB). Send fewer or smaller files."
        )
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
        code, message, field = exc.error_code, exc.description, exc.field
    else:
        (code, message), field = _describe(exc), None
    response = exc.get_response()  # keeps status and headers such as Allow
    response.data = json.dumps(error_body(exc.code, code, message, field))
    response.content_type = "application/json"
    return response


def handle_unexpected(exc: Exception) -> Response:
    """A bug, not bad input: the traceback goes to the log, never to the client."""
    log.exception("unhandled error")
    return _json_response(
        InternalServerError(description="The service failed to process this request; the error has been logged.")
    )


def handle_batch_timeout(exc: BatchTimeout) -> Response:
    return _json_response(Overloaded("The model is overloaded: this request waited too long for it; retry later"))


def handle_worker_aborted(exc: WorkerAborted) -> Response:
    return _json_response(WorkerTimeout(WORKER_TIMEOUT_MESSAGE))


def register_error_handlers(app: Flask) -> None:
    """Registered on the app, not a blueprint, so routing 404/405 are caught too."""
    app.register_error_handler(HTTPException, _json_response)
    app.register_error_handler(BatchTimeout, handle_batch_timeout)
    app.register_error_handler(WorkerAborted, handle_worker_aborted)
    app.register_error_handler(Exception, handle_unexpected)
