"""clip-as-service's envelope answered, wherever it is posted: POST /post (web.jina) and BentoML's /encode and
/rank (web.bentoml), which take it too because clip-as-service's client posts it there once /openapi.json lists
those paths.

`{"data": [documents], "exec_endpoint": "/" | "/encode" | "/rank", "parameters": {...}}`: / and /encode give every
document its `embedding`; /rank gives every match `scores.clip_score` (the softmax over the document's matches
of logit_scale x cosine, as /rank) and `scores.clip_score_cosine`, best first. The same parsing, encoder,
scoring and serialisation as every other endpoint.
"""

from __future__ import annotations

import numpy as np
from flask import g

from ..errors import SOURCE_CODES, Code
from ..parsing.items import count_kinds
from ..parsing.jina_docs import Envelope, parse_envelope
from ..server.logs import note_items
from .context import EMBEDDING_CODES, get_encoder, item_rules
from .scoring import embed_items, rank
from .serialize import vector_json

# What a request that carries the envelope can be refused for, on any of the three paths.
ENVELOPE_CODES = (Code.INVALID_JSON, Code.INVALID_DOCUMENTS, Code.INVALID_DOCUMENT, *SOURCE_CODES, *EMBEDDING_CODES)


def answer_envelope(body: object, endpoint: str | None = None) -> dict:
    """The envelope's documents embedded (and, for /rank, their matches ranked), in jina's response; `endpoint`
    is the path posted to (/encode, /rank), or None for /post, where the body names it."""
    encoder = get_encoder()
    envelope = parse_envelope(body, item_rules(encoder), endpoint)
    note_items(*count_kinds(envelope.items))
    rows = embed_items(encoder, envelope.items).rows
    drop = envelope.parameters.get("drop_image_content") is True
    docs = _ranked(envelope, rows, encoder.facts.logit_scale, drop) if envelope.endpoint == "/rank" else [
        jina_document(doc, row, drop) for doc, row in zip(envelope.docs, rows, strict=True)]
    return jina_body(g.get("request_id", ""), envelope.endpoint, envelope.parameters, docs)


def _ranked(envelope: Envelope, rows: np.ndarray, logit_scale: float, drop: bool) -> list[dict]:
    """Rows are each document followed by its matches; each document's matches are ranked on their own."""
    docs, start = [], 0
    for doc in envelope.docs:
        end = start + 1 + len(doc["matches"])
        probabilities, cosines = rank(rows[start:start + 1], rows[start + 1:end], logit_scale)
        matches = [jina_document(match, row, drop) | {"scores": jina_scores(float(p), float(c))}
                   for match, row, p, c in zip(doc["matches"], rows[start + 1:end], probabilities[0], cosines[0],
                                               strict=True)]
        matches.sort(key=lambda match: -match["scores"]["clip_score"]["value"])
        docs.append(jina_document(doc, rows[start], drop, matches))
        start = end
    return docs


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
