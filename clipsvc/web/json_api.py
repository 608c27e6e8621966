"""POST /encode and POST /rank: the JSON API of BentoML's CLIP service, so its clients work unchanged."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..errors import InvalidInput, UnsupportedContentType
from ..parsing.form import check_item_count, vector_encoding
from ..parsing.json_items import parse_items
from ..server.logs import count_items
from .extensions import get_encoder, get_settings
from .scoring import embed_items, rank
from .serialize import vector_json

bp = Blueprint("json_api", __name__)


def json_body() -> object:
    if not request.is_json:
        raise UnsupportedContentType(
            f"Content-Type is {request.mimetype or 'none'}; send application/json", field="Content-Type")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # deeply nested arrays: the stdlib parser gives up, and so do we
        body = None
    if body is None:
        raise InvalidInput("The body is not valid JSON", error_code="invalid_json")
    return body


@bp.post("/encode")
def encode():
    """`[{"text": ...} | {"img_blob": ...} | {"img_uri": ...}, ...]` -> one embedding per item, in order."""
    encoder, encoding = get_encoder(), vector_encoding(request.args.get("encoding"))
    items = parse_items(json_body(), "", get_settings(), encoder.info.image_size)
    count_items(items)
    return jsonify([vector_json(row, encoding) for row in embed_items(encoder, items)])


@bp.post("/rank")
def rank_candidates() -> dict:
    """`{"queries": [...], "candidates": [...]}` -> per query, probabilities and cosines over the candidates."""
    encoder, settings = get_encoder(), get_settings()
    body = json_body()
    if not isinstance(body, dict):
        raise InvalidInput('The body must be an object {"queries": [...], "candidates": [...]}',
                           error_code="invalid_items")
    lists = [body.get("queries"), body.get("candidates")]
    check_item_count(sum(len(x) for x in lists if isinstance(x, list)), settings)  # before decoding anything
    queries = parse_items(lists[0], "queries", settings, encoder.info.image_size)
    candidates = parse_items(lists[1], "candidates", settings, encoder.info.image_size)
    count_items(queries + candidates)
    rows = embed_items(encoder, queries + candidates)
    probabilities, cosines = rank(rows[:len(queries)], rows[len(queries):], encoder.info.logit_scale)
    return {"probabilities": probabilities.tolist(), "cosine_similarities": cosines.tolist()}
