"""BentoML's CLIP service and image vectorizer, so their clients work unchanged: POST /encode, POST /rank and
POST /vectorize (where a JSON body is Weaviate's multi2vec-clip request, answered by web.weaviate).

clip-as-service's client posts its envelope to /encode and /rank too; the body's shape tells them apart: an
object with `data` is that envelope (answered by web.envelope), anything else BentoML's body (a list of items
for /encode, `{"queries", "candidates"}` for /rank), so BentoML's errors stay as they were.
"""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, jsonify, request

from ..errors import IMAGE_CODES, SOURCE_CODES, Code
from ..parsing.items import checked_image, count_kinds
from ..parsing.jina_docs import is_envelope
from ..parsing.json_items import parse_items, parse_rank
from ..parsing.options import vector_encoding
from ..server.logs import note_items
from .context import EMBEDDING_CODES, answers, get_encoder, item_rules, json_body
from .envelope import ENVELOPE_CODES, answer_envelope
from .scoring import embed_items, rank
from .serialize import vector_json
from .weaviate import WEAVIATE_CODES, answer_weaviate, is_weaviate

bp = Blueprint("bentoml", __name__)
# What a BentoML JSON body can be refused for (json_body, parsing.json_items, the model), on /encode and /rank.
ITEMS_CODES = (Code.INVALID_JSON, Code.INVALID_ITEMS, Code.INVALID_ITEM, *SOURCE_CODES, *EMBEDDING_CODES)


@bp.post("/encode")
@answers(Code.INVALID_ENCODING, *ITEMS_CODES, *ENVELOPE_CODES)
def encode() -> Response | dict:
    """`[{"text": ...} | {"img_blob": ...} | {"img_uri": ...}, ...]` -> one embedding per item, in order."""
    body = json_body()
    if is_envelope(body):
        return answer_envelope(body, "/encode")
    encoder, encoding = get_encoder(), vector_encoding(request.args.get("encoding"))
    items = parse_items(body, "", item_rules(encoder))
    note_items(*count_kinds(items))
    return vectors_body(embed_items(encoder, items).rows, encoding)


@bp.post("/rank")
@answers(*ITEMS_CODES, *ENVELOPE_CODES)
def rank_candidates() -> dict:
    """`{"queries": [...], "candidates": [...]}` -> per query, probabilities and cosines over the candidates."""
    body = json_body()
    if is_envelope(body):
        return answer_envelope(body, "/rank")
    encoder = get_encoder()
    queries, candidates = parse_rank(body, item_rules(encoder))
    note_items(*count_kinds(queries + candidates))
    rows = embed_items(encoder, queries + candidates).rows
    return rank_body(*rank(rows[:len(queries)], rows[len(queries):], encoder.facts.logit_scale))


@bp.post("/vectorize")
@answers(*IMAGE_CODES, Code.REQUEST_TOO_LARGE, Code.MODEL_NOT_READY, Code.WORKER_TIMEOUT, Code.INFERENCE_TIMEOUT,
         *WEAVIATE_CODES)
def vectorize() -> dict:
    """The raw image as the body, whatever its Content-Type says (the content decides, as everywhere); but JSON
    is Weaviate's request (web.weaviate.is_weaviate)."""
    if is_weaviate(request):
        return answer_weaviate()
    encoder = get_encoder()
    rules = item_rules(encoder)
    image = checked_image("body", request.stream.read(rules.settings.max_image_bytes + 1), rules)
    note_items(1, 0)
    return vector_body(encoder.encode([image], []).images[0])


def vectors_body(rows: np.ndarray, encoding: str = "float") -> Response:
    """/encode: one vector per item, in order (a JSON list, which Flask does not make from a return value)."""
    return jsonify([vector_json(row, encoding) for row in rows])


def rank_body(probabilities: np.ndarray, cosines: np.ndarray) -> dict:
    """/rank: one row per query, one column per candidate."""
    return {"probabilities": probabilities, "cosine_similarities": cosines}


def vector_body(vector: np.ndarray) -> dict:
    """BentoML's image vectorizer: `{"vector": [...]}`, here the unit vector every endpoint returns."""
    return {"vector": vector_json(vector)}
