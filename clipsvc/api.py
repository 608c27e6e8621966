"""POST /syte_test/clip: the user's endpoint. Parse, embed, serialise; each step lives elsewhere."""

from __future__ import annotations

from flask import Blueprint, request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import PayloadTooLarge
from .extensions import get_encoder, get_settings
from .logs import count_items
from .parsing import ParsedRequest, parse_form, require_multipart, vector_encoding
from .scoring import embed
from .serialize import embeddings_body

bp = Blueprint("api", __name__)


@bp.post("/syte_test/clip")
def clip() -> dict:
    encoder, encoding = get_encoder(), vector_encoding(request.args.get("encoding"))
    parsed = parse_request(min_side=encoder.info.image_size)
    count_items(parsed.images + parsed.texts)
    return embeddings_body(embed(encoder, parsed), encoding)


def parse_request(min_side: int) -> ParsedRequest:
    """The multipart body as validated items; werkzeug's size refusals get our wording."""
    settings = get_settings()
    require_multipart(request.mimetype)
    try:
        form, files = request.form, request.files
    except RequestEntityTooLarge:
        # werkzeug raises the same error for three limits; tell the client which one it hit.
        declared = request.content_length
        too_big = declared > settings.max_request_bytes if declared is not None else request.stream.is_exhausted
        if too_big:
            raise  # the one body-size error, worded in errors._describe
        raise PayloadTooLarge(
            f"The request has too many parts or a text part over "
            f"{request.max_form_memory_size} bytes; send at most {settings.max_items} items",
            error_code="form_too_large",
        ) from None
    return parse_form(form, files, settings, min_side)
