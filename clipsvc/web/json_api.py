"""POST /encode and POST /rank: the JSON API of BentoML's CLIP service, so its clients work unchanged; and
POST /post, clip-as-service's (jina's) HTTP gateway route, answered by web/jina.py.

clip-as-service's client posts its envelope to the same paths; the body's shape tells them apart: an object
with `data` is that envelope (answered by web/jina.py), anything else BentoML's body (a list of items for
/encode, `{"queries", "candidates"}` for /rank), so BentoML's errors stay as they were.
"""

from __future__ import annotations

from flask import Blueprint, request

from ..errors import ApiError, Code
from ..parsing.items import count_kinds
from ..parsing.jina_docs import is_envelope
from ..parsing.json_items import parse_items, parse_rank
from ..parsing.options import vector_encoding
from ..server.logs import note_items
from . import jina
from .extensions import get_encoder, item_rules
from .scoring import embed_items, rank
from .serialize import rank_body, vectors_body

bp = Blueprint("json_api", __name__)


def json_body(any_type: bool = False) -> object:
    """The body as JSON; with `any_type`, whatever its Content-Type says (clients of APIs that never checked it,
    like `curl -d`, send form types)."""
    if not any_type and not request.is_json:
        raise ApiError(Code.UNSUPPORTED_MEDIA_TYPE, f"Content-Type is {request.mimetype or 'none'}; send "
                                                    "application/json", field="Content-Type")
    try:
        body = request.get_json(force=any_type, silent=True)
    except RecursionError:  # deeply nested arrays: the stdlib parser gives up, and so do we
        body = None
    if body is None:
        raise ApiError(Code.INVALID_JSON, "The body is not valid JSON")
    return body


@bp.post("/post")
def post() -> dict:
    """clip-as-service's envelope; read as JSON whatever its Content-Type says (`curl -d` sends a form type)."""
    return jina.answer(json_body(any_type=True))


@bp.post("/encode")
def encode():
    """`[{"text": ...} | {"img_blob": ...} | {"img_uri": ...}, ...]` -> one embedding per item, in order."""
    body = json_body()
    if is_envelope(body):
        return jina.answer(body, "/encode")
    encoder, encoding = get_encoder(), vector_encoding(request.args.get("encoding"))
    items = parse_items(body, "", item_rules(encoder))
    note_items(*count_kinds(items))
    return vectors_body(embed_items(encoder, items), encoding)


@bp.post("/rank")
def rank_candidates() -> dict:
    """`{"queries": [...], "candidates": [...]}` -> per query, probabilities and cosines over the candidates."""
    body = json_body()
    if is_envelope(body):
        return jina.answer(body, "/rank")
    encoder = get_encoder()
    queries, candidates = parse_rank(body, item_rules(encoder))
    note_items(*count_kinds(queries + candidates))
    rows = embed_items(encoder, queries + candidates)
    return rank_body(*rank(rows[:len(queries)], rows[len(queries):], encoder.info.logit_scale))
