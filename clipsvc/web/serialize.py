"""Vectors and scores -> the response bodies: the user's keys, BentoML's lists, the chosen vector encoding."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
from flask import Response, jsonify
from flask.json.provider import DefaultJSONProvider

from .scoring import Embeddings


class VectorJSON(DefaultJSONProvider):
    """Flask's JSON through orjson, which writes numpy arrays itself (no tolist(), the GIL held far shorter).

    A float32 is written as the shortest decimal that parses back to the same float32.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        if kwargs.get("sort_keys", self.sort_keys):
            option |= orjson.OPT_SORT_KEYS
        return orjson.dumps(obj, default=self.default, option=option).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def vector_json(vector: np.ndarray, encoding: str = "float") -> np.ndarray | str:
    """JSON numbers (the float32 array, written by VectorJSON), or base64 of little-endian float32 bytes (OpenAI's
    embeddings convention)."""
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return np.ascontiguousarray(vector, dtype=np.float32)


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
    return {"probabilities": probabilities, "cosine_similarities": cosines}


def openai_embeddings_body(rows: np.ndarray, encoding: str, model: str, tokens: int) -> dict:
    """OpenAI's embeddings list, exactly: its SDKs read `data[i].embedding` and decode base64 themselves."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector_json(row, encoding)}
                 for i, row in enumerate(rows)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def openai_model_body(model: str, created: int) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "clipsvc"}


# OpenAI's error `type`s: the client's fault (4xx), or the server's (5xx).
OPENAI_ERROR_TYPES = ("invalid_request_error", "server_error")


def openai_error_body(status: int, code: str, message: str, field: str | None) -> dict:
    """OpenAI's error shape, which its SDKs parse into their exceptions; `code` is ours, `param` the field."""
    kind = OPENAI_ERROR_TYPES[status >= 500]
    return {"error": {"message": message, "type": kind, "param": field, "code": code}}


def vector_body(vector: np.ndarray) -> dict:
    """BentoML's image vectorizer: `{"vector": [...]}`, here the unit vector every endpoint returns."""
    return {"vector": vector_json(vector)}


def labels_body(labels: list[str], probabilities: np.ndarray) -> dict:
    """The CLIP Truss's answer: each label, in the order sent, with its zero-shot probability."""
    return {label: float(p) for label, p in zip(labels, probabilities, strict=True)}


# docarray's document JSON (its pydantic model, as jina's HTTP gateway answers): every field, unset ones null.
DOCUMENT_FIELDS = ("id", "parent_id", "granularity", "adjacency", "blob", "tensor", "mime_type", "text", "weight",
                   "uri", "tags", "offset", "location", "embedding", "modality", "evaluations", "scores", "chunks",
                   "matches")


def jina_document(doc: dict, vector: np.ndarray, drop_blob: bool, matches: list[dict] | None = None) -> dict:
    """A document as sent (its id, text, uri, mime_type, tags), with its `embedding`; `matches` replaced when given."""
    out = {field: doc.get(field) for field in DOCUMENT_FIELDS} | {"tensor": None, "embedding": vector_json(vector)}
    if drop_blob:
        out["blob"] = None
    if matches is not None:
        out["matches"] = matches
    return out


def jina_scores(probability: float, cosine: float) -> dict:
    """clip-as-service's scores on a ranked match: the softmax probability and the cosine."""
    return {"clip_score": {"value": probability, "op_name": "softmax", "description": None, "ref_id": None},
            "clip_score_cosine": {"value": cosine, "op_name": "cosine", "description": None, "ref_id": None}}


def jina_body(request_id: str, endpoint: str, parameters: dict, docs: list[dict]) -> dict:
    """jina's HTTP gateway response: header (camelCase, as its response model writes it), parameters, routes, data."""
    return {"header": {"requestId": request_id, "status": None, "execEndpoint": endpoint, "targetExecutor": ""},
            "parameters": parameters, "routes": [{"executor": "clipsvc", "startTime": None, "endTime": None,
                                                  "status": None}], "data": docs}
