"""POST /v1/embeddings and GET /v1/models: OpenAI's embeddings API, for its SDKs and everything built on them
(LangChain, LlamaIndex, vector databases' "OpenAI-compatible" embedders). Errors on these paths come in
OpenAI's shape (declared below, for web.errors)."""

from __future__ import annotations

import numpy as np
from flask import Blueprint

from ..errors import SOURCE_CODES, Code
from ..parsing.items import count_kinds
from ..parsing.openai_input import check_model, parse_embeddings_request
from ..server.logs import note_items
from .context import EMBEDDING_CODES, answers, declare_error_shape, get_encoder, item_rules, json_body
from .scoring import embed_items
from .serialize import vector_json

PREFIX = "/v1"
bp = Blueprint("openai", __name__, url_prefix=PREFIX)

# OpenAI's error `type`s: the client's fault (4xx), or the server's (5xx).
OPENAI_ERROR_TYPES = ("invalid_request_error", "server_error")


def openai_error_body(status: int, code: str, message: str, field: str | None, index: int | None = None) -> dict:
    """OpenAI's error shape, which its SDKs parse into their exceptions; `code` is ours, `param` the field."""
    kind = OPENAI_ERROR_TYPES[status >= 500]
    return {"error": {"message": message, "type": kind, "param": field, "code": code}}


# OpenAI's SDKs parse errors in OpenAI's shape: every error under /v1, an unknown path's too (but web.truss's).
declare_error_shape(openai_error_body, prefix=PREFIX)


@bp.post("/embeddings")
@answers(Code.INVALID_JSON, Code.INVALID_INPUT, Code.UNKNOWN_PARAMETER, Code.TOKEN_IDS_UNSUPPORTED,
         Code.INVALID_DIMENSIONS, Code.INVALID_ENCODING, Code.MODEL_NOT_FOUND, *SOURCE_CODES, *EMBEDDING_CODES)
def embeddings() -> dict:
    """Texts count their CLIP tokens in `usage`; an image counts what the vision tower reads (patches + 1)."""
    encoder = get_encoder()
    info = encoder.facts
    asked = parse_embeddings_request(json_body(), item_rules(encoder), info.model_name,
                                     info.embedding_dim)
    images, texts = count_kinds(asked.items)
    note_items(images, texts)
    embedded = embed_items(encoder, asked.items)  # its texts' tokens counted as they were embedded, not again
    return openai_embeddings_body(embedded.rows, asked.encoding_format, info.model_name,
                                  embedded.text_tokens + images * info.image_tokens)


@bp.get("/models")
@answers(Code.MODEL_NOT_READY)
def models() -> dict:
    return {"object": "list", "data": [_model_card()]}


@bp.get("/models/<path:model>")
@answers(Code.MODEL_NOT_FOUND, Code.MODEL_NOT_READY)
def model(model: str) -> dict:
    check_model(model, get_encoder().facts.model_name)
    return _model_card()


def _model_card() -> dict:
    info = get_encoder().facts
    return openai_model_body(info.model_name, info.model_created)


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
