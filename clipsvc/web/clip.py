"""POST /syte_test/clip: the user's endpoint. Parsing and embedding live elsewhere; its keyed body is built here."""

from __future__ import annotations

from flask import Blueprint, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import IMAGE_CODES, TEXT_CODES, ApiError, Code
from ..parsing.form import URLENCODED, parse_form, require_form
from ..parsing.items import ItemRules, ParsedRequest
from ..parsing.options import vector_encoding
from ..server.logs import note_items
from ..settings import MAX_TEXT_CHARS
from .context import EMBEDDING_CODES, answers, get_encoder, item_rules
from .scoring import Embeddings, embed
from .serialize import vector_json

bp = Blueprint("clip", __name__)


@bp.post("/syte_test/clip")
@answers(Code.EMPTY_REQUEST, Code.UNKNOWN_KEY, Code.DUPLICATE_KEY, Code.IMAGE_NOT_A_FILE, Code.FORM_TOO_LARGE,
         Code.INVALID_ENCODING, *IMAGE_CODES, *TEXT_CODES, *EMBEDDING_CODES)
def clip() -> dict:
    encoder, encoding = get_encoder(), vector_encoding(request.args.get("encoding"))
    parsed = parse_request(item_rules(encoder))
    note_items(len(parsed.images), len(parsed.texts))
    return embeddings_body(embed(encoder, parsed), encoding)


def parse_request(rules: ItemRules) -> ParsedRequest:
    """The form body (multipart or urlencoded) as validated items; werkzeug's size refusals get our wording."""
    settings = rules.settings
    require_form(request.mimetype)
    try:
        form, files = request.form, request.files
    except RequestEntityTooLarge:
        # werkzeug raises the same error for three limits; tell the client which one it hit.
        declared = request.content_length
        too_big = declared > settings.max_request_bytes if declared is not None else request.stream.is_exhausted
        if too_big:
            raise  # the one body-size error, worded in web.errors
        raise ApiError(Code.FORM_TOO_LARGE, _form_too_large(settings.max_items)) from None
    return parse_form(form, files, rules)


def _form_too_large(max_items: int) -> str:
    """The form limit that was hit, in words: urlencoded bodies are bounded as a whole, multipart ones per part
    (parsing.form counts the parts itself, so too many of them is too_many_items, never this)."""
    if request.mimetype == URLENCODED:
        return (f"The {URLENCODED} body is over {request.max_form_memory_size} bytes; send at most {max_items} "
                f"texts of at most {MAX_TEXT_CHARS} characters")
    return (f"A text part is over {request.max_form_memory_size} bytes; a text may have at most {MAX_TEXT_CHARS} "
            "characters")


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
