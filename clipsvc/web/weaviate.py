"""Weaviate's multi2vec-clip module, so Weaviate can use this service as its CLIP inference container: its JSON on
POST /vectorize, answered here for web.bentoml's view (the route BentoML's raw image shares; the body's type tells
them apart, as web.envelope's envelope is told apart on /encode), and its errors in the shape its Go client reads.
The module's probes are in web.health."""

from __future__ import annotations

import io

import numpy as np
from flask import Request, g

from ..errors import SOURCE_CODES, Code
from ..parsing.weaviate import parse_vectorize
from ..server.logs import note_items
from .context import EMBEDDING_CODES, declare_error_shape, get_encoder, item_rules, json_body
from .scoring import embed_items
from .serialize import vector_json

PATH = "/vectorize"
# What a Weaviate body can be refused for: json_body, parsing.weaviate (its items as every JSON item), the model
# (EMBEDDING_CODES but 415: whatever its type, a body sniffed as JSON is read as JSON).
WEAVIATE_CODES = (Code.INVALID_JSON, Code.INVALID_ITEMS, Code.INVALID_ITEM, *SOURCE_CODES,
                  *(code for code in EMBEDDING_CODES if code is not Code.UNSUPPORTED_MEDIA_TYPE))
_SNIFFED = "weaviate_body"  # on flask.g: what a body without Content-Type started with, for the error handler


def weaviate_error_body(status: int, code: str, message: str, field: str | None, index: int | None = None) -> dict:
    """What the Go client reads of an error: `error`, a string (Weaviate reports `fail with status N: <error>`)."""
    return {"error": message}


def is_weaviate(asked: Request) -> bool:
    """A POST /vectorize whose body is JSON: application/json (the module since 2024), or no Content-Type and a body
    that starts with `{` (the 2023 module sent none; no image format starts so). Anything else is BentoML's image."""
    if asked.method != "POST" or asked.path != PATH:
        return False
    if asked.mimetype:
        return asked.is_json
    if _SNIFFED not in g:
        setattr(g, _SNIFFED, False)  # first: a peek that fails is not tried again by the error handler
        setattr(g, _SNIFFED, _starts_an_object(asked))
    return g.get(_SNIFFED)


def _starts_an_object(asked: Request) -> bool:
    """Peeks at the body's first bytes and leaves them for whichever view reads it (within the same limits)."""
    stream = io.BufferedReader(asked.stream)
    asked.stream = stream  # werkzeug's cached_property: this request reads through the buffer from now on
    return stream.peek(1).lstrip()[:1] == b"{"


def _errs_as_weaviate(asked: Request) -> bool:
    """Whether an error answers a Weaviate request, those raised before the view (a key refused, 413) included. A
    body that cannot be peeked at (over the limit from its Content-Length) gets our shape: an error being answered
    must not fail again here."""
    try:
        return is_weaviate(asked)
    except Exception:  # noqa: BLE001 (whatever failed, the answer is the error already raised)
        return False


declare_error_shape(weaviate_error_body, when=_errs_as_weaviate)


def answer_weaviate() -> dict:
    """`{"texts": [...], "images": [...]}` -> their unit vectors, each list in order; nothing asked, nothing
    answered (200 with two empty lists, as Weaviate's reference container does)."""
    encoder = get_encoder()
    asked = parse_vectorize(json_body(any_type=True), item_rules(encoder))  # is_weaviate read the type
    note_items(len(asked.images), len(asked.texts))
    items = [*asked.texts, *asked.images]
    rows = embed_items(encoder, items).rows  # nothing asked: (0, dim), no forward pass
    return weaviate_vectors_body(rows[:len(asked.texts)], rows[len(asked.texts):])


def weaviate_vectors_body(texts: np.ndarray, images: np.ndarray) -> dict:
    """The module's answer: one unit vector per text and per image, each list in the order sent."""
    return {"textVectors": [vector_json(row) for row in texts], "imageVectors": [vector_json(row) for row in images]}

