"""What every view shares: the app's settings and encoder, the item rules, the JSON body, and `@answers(...)`,
which declares beside a view the error codes it can answer (the OpenAPI document reads them there)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Request, current_app, request

from ..encoder.model import ClipEncoder
from ..errors import ApiError, Code, error_body
from ..parsing.items import ItemRules
from ..settings import Settings

SETTINGS_KEY = "clipsvc.settings"
ENCODER_KEY = "clipsvc.encoder"
CODES_ATTRIBUTE = "clipsvc_error_codes"
View = TypeVar("View", bound=Callable)

# What every endpoint that embeds the items of a request body can answer: the body's size and type, the item
# limit, the model's state and its deadlines (the encoder's errors, turned into codes by web.errors).
EMBEDDING_CODES = (Code.TOO_MANY_ITEMS, Code.REQUEST_TOO_LARGE, Code.UNSUPPORTED_MEDIA_TYPE, Code.MODEL_NOT_READY,
                   Code.WORKER_TIMEOUT, Code.INFERENCE_TIMEOUT)


# An error body's shape: (status, code, message, field) -> JSON. errors.error_body is ours (it also takes the failing
# item's `index`); an API whose clients parse errors their own way declares its shape (declare_error_shape), and
# web.errors reads the declarations.
ErrorShape = Callable[[int, str, str, "str | None", "int | None"], dict]  # status, code, message, field, index
# (path prefix, blueprint, a test of the request, shape): a test serves APIs that share a path (/vectorize).
_ERROR_SHAPES: list[tuple[str | None, str | None, Callable[[Request], bool] | None, ErrorShape]] = []


def declare_error_shape(shape: ErrorShape, *, prefix: str | None = None, blueprint: str | None = None,
                        when: Callable[[Request], bool] | None = None) -> None:
    """Errors on the paths under `prefix` (routing errors there included), on `blueprint`'s routes, or of the
    requests `when` accepts, take `shape`: declared beside the API's views, so the one handler knows no API."""
    _ERROR_SHAPES.append((prefix, blueprint, when, shape))


def error_shape(path: str, blueprint: str | None, asked: Request | None = None) -> ErrorShape:
    """The shape of an error on `path`: that of the request `asked` (when given) by a test, else its blueprint's
    declaration, else that of the longest prefix it is under, else ours."""
    for _, _, when, shape in _ERROR_SHAPES:
        if asked is not None and when is not None and when(asked):
            return shape
    for _, owner, _, shape in _ERROR_SHAPES:
        if owner is not None and owner == blueprint:
            return shape
    under = [(len(prefix), shape) for prefix, _, _, shape in _ERROR_SHAPES
             if prefix and (path == prefix or path.startswith(prefix + "/"))]
    return max(under, key=lambda found: found[0])[1] if under else error_body


def init_app(app: Flask, settings: Settings, encoder: ClipEncoder | None) -> None:
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[ENCODER_KEY] = encoder


def settings_of(app: Flask) -> Settings:
    return app.extensions[SETTINGS_KEY]


def get_settings() -> Settings:
    return settings_of(current_app)


def loaded_encoder() -> ClipEncoder | None:
    return current_app.extensions.get(ENCODER_KEY)


def get_encoder() -> ClipEncoder:
    """The worker's encoder, or a 503 that says the model is not loaded (yet)."""
    encoder = loaded_encoder()
    if encoder is None:
        raise ApiError(Code.MODEL_NOT_READY, "The model is not loaded in this worker; retry shortly or check the "
                                             "start-up log")
    return encoder


def item_rules(encoder: ClipEncoder) -> ItemRules:
    """What this app's items are checked against: its limits, and the loaded model's input size (large images
    are decoded no larger than they need to be)."""
    return ItemRules(get_settings(), encoder.facts.image_size)


# Parsed JSON takes up to 30 times its bytes (`[],` is 3 bytes and a 64-byte list): 60 MB of them was 1.9 GB and
# 11 s. A million values is ~64 MB parsed at worst, and far more than 64 items or a Truss image of 500 x 500 need.
MAX_JSON_VALUES = 1_000_000


def json_body(any_type: bool = False) -> object:
    """The body as JSON; with `any_type`, whatever its Content-Type says (clients of APIs that never checked it,
    like `curl -d`, send form types). Any valid JSON is returned, null included: whether it has the shape an
    endpoint takes is for that endpoint's parser to say, naming the shape."""
    if not any_type and not request.is_json:
        raise ApiError(Code.UNSUPPORTED_MEDIA_TYPE, f"Content-Type is {request.mimetype or 'none'}; send "
                                                    "application/json", field="Content-Type")
    data = request.get_data()  # a body over CLIP_MAX_REQUEST_MB is a 413 here, chunked too (web.app.BodyLimit)
    values = sum(data.count(mark) for mark in (b",", b":", b"[", b"{"))  # at least the values parsing would make
    if values > MAX_JSON_VALUES:
        raise ApiError(Code.REQUEST_TOO_LARGE, f"The JSON body holds about {values} values (counted by their commas, "
                                               f"colons and brackets); the limit is {MAX_JSON_VALUES}. Send images "
                                               "as base64 strings or data: URIs, not as lists of numbers")
    try:
        # Deeply nested arrays too: orjson (web.serialize.VectorJSON) refuses them past 1024 levels as invalid JSON.
        return current_app.json.loads(data)
    except ValueError:
        raise ApiError(Code.INVALID_JSON, "The body is not valid JSON") from None


def answers(*codes: Code) -> Callable[[View], View]:
    """Declares beside a view the codes it can answer (beyond errors.COMMON): the OpenAPI document lists them."""

    def declare(view: View) -> View:
        setattr(view, CODES_ATTRIBUTE, tuple(dict.fromkeys(codes)))
        return view

    return declare


def codes_of(view: Callable) -> tuple[Code, ...]:
    """The codes `view` declared with `answers` (none: it answers only the ones every route can)."""
    return getattr(view, CODES_ATTRIBUTE, ())
