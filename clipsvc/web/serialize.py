"""Vectors and scores -> the response bodies: the user's keys, BentoML's lists, the chosen vector encoding."""

from __future__ import annotations

import base64

import numpy as np
from flask import Response, jsonify

from ..errors import ApiError, Code
from ..parsing.form import FIELD_ECHO
from .scoring import Embeddings

ENCODINGS = ("float", "base64")  # ?encoding=: JSON numbers (the default) or base64 of float32 bytes


def vector_encoding(value: str | None) -> str:
    """The `?encoding=` query parameter: float (default) or base64."""
    if value is None:
        return ENCODINGS[0]
    if value in ENCODINGS:
        return value
    raise ApiError(Code.INVALID_ENCODING, f"encoding={value[:FIELD_ECHO]!r} is not supported; use "
                                          f"{' or '.join(ENCODINGS)}", field="encoding")


def vector_json(vector: np.ndarray, encoding: str = "float") -> list[float] | str:
    """JSON numbers, or base64 of little-endian float32 bytes (OpenAI's embeddings convention)."""
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def image_vector_key(item_id: str) -> str:
    return f"image_{item_id}_vector"


def text_vector_key(item_id: str) -> str:
    return f"text_{item_id}_vector"


def score_key(item_id: str) -> str:
    return f"image_vector_{item_id}_similarity_score"


def cosine_key(item_id: str) -> str:
    return f"image_vector_{item_id}_cosine_similarity"


def embeddings_body(embeddings: Embeddings, encoding: str = "float") -> dict:
    """Keys grouped by id in the order the client sent them: vectors, then score and cosine."""
    pairs = {pair.id: pair for pair in embeddings.pairs}
    body: dict = {}
    for item_id in embeddings.order:
        if item_id in embeddings.images:
            body[image_vector_key(item_id)] = vector_json(embeddings.images[item_id], encoding)
        if item_id in embeddings.texts:
            body[text_vector_key(item_id)] = vector_json(embeddings.texts[item_id], encoding)
        if item_id in pairs:
            body[score_key(item_id)] = pairs[item_id].score
            body[cosine_key(item_id)] = round(pairs[item_id].cosine, 6)
    return body


def vectors_body(rows: np.ndarray, encoding: str = "float") -> Response:
    """/encode: one vector per item, in order (a JSON list, which Flask does not make from a return value)."""
    return jsonify([vector_json(row, encoding) for row in rows])


def rank_body(probabilities: np.ndarray, cosines: np.ndarray) -> dict:
    """/rank: one row per query, one column per candidate."""
    return {"probabilities": probabilities.tolist(), "cosine_similarities": cosines.tolist()}
