"""The OpenAPI document's components: request and response schemas, shared parameters and headers."""

from __future__ import annotations

import math

from ...errors import Code
from ...parsing.form import ID_PATTERN as ID
from ...parsing.options import ENCODINGS
from ...server.request_id import HEADER_NAMES
from ...server.request_id import PATTERN as REQUEST_ID_PATTERN
from ...settings import LIMIT_TYPES, Settings, env_var
from .parts import ref


def components(settings: Settings) -> dict:
    return {
        "schemas": {**_item_schemas(settings), **_response_schemas()},
        "parameters": {
            "encoding": {"name": "encoding", "in": "query", "required": False,
                         "description": "How vectors are written: JSON numbers (`float`, the default) or `base64` "
                                        "of their little-endian float32 bytes (OpenAI's convention).",
                         "schema": {"type": "string", "enum": list(ENCODINGS), "default": ENCODINGS[0]}},
            **{name: {"name": name, "in": "header", "required": False,
                      "description": "The request's id, echoed in the response's request_id and X-Request-ID "
                                     "headers and in every log line; without one the service assigns a UUID4. "
                                     "request_id wins when both are sent.",
                      "schema": ref("RequestId")} for name in HEADER_NAMES},
        },
        "headers": {name: {"description": "The request's id (the client's when valid, else a new UUID4)",
                           "required": True, "schema": {"type": "string"}} for name in HEADER_NAMES},
    }


def _item_schemas(settings: Settings) -> dict:
    base64_limit = 4 * math.ceil(settings.max_image_bytes / 3)
    item = {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1}
    items = {"type": "array", "items": ref("Item"), "minItems": 1, "maxItems": settings.max_items}
    return {
        "RequestId": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"},
        "Item": {"description": "Exactly one of text, img_blob or img_uri",
                 "oneOf": [ref("TextItem"), ref("BlobItem"), ref("UriItem")]},
        "TextItem": item | {"required": ["text"], "properties": {"text": {
            "type": "string", "description": f"At most {settings.max_text_words} words; characters outside printable "
                                             "ASCII are removed"}}},
        "BlobItem": item | {"required": ["img_blob"], "properties": {"img_blob": {
            "type": "string", "contentEncoding": "base64", "maxLength": base64_limit,
            "description": f"An image file in base64 (standard or URL-safe alphabet, padding optional), at most "
                           f"{settings.max_image_mb:g} MB decoded"}}},
        "UriItem": item | {"required": ["img_uri"], "properties": {"img_uri": {
            "type": "string", "pattern": "^(data:|https?://)",
            "description": "A `data:[image/...];base64,<data>` URI. `http(s)://` URLs are refused "
                           f"(`url_fetch_disabled`) unless the operator sets {env_var('fetch_allow_hosts')}; then "
                           "the host must be allowed (`url_host_not_allowed`) and public (`url_address_forbidden`), "
                           "redirects are followed within the same host only, at most 3 and never from https to http "
                           "(`url_redirect_refused`), other failures give `url_fetch_failed` "
                           f"and an image over {settings.max_image_mb:g} MB `url_too_large` (413)."}}},
        "Items": items | {"description": f"At most {settings.max_items} items"},
        "RankRequest": {"type": "object", "required": ["queries", "candidates"],
                        "properties": {"queries": items, "candidates": items},
                        "description": f"Queries and candidates together: at most {settings.max_items} items"},
    }


def _response_schemas() -> dict:
    vector_key = "An L2-normalised embedding (a `Vector`)"
    return {
        "Vector": {"description": "A unit-length embedding, as long as the model's projection (768 for ViT-L/14)",
                   "oneOf": [{"type": "array", "items": {"type": "number"}, "description": "?encoding=float"},
                             {"type": "string", "contentEncoding": "base64", "pattern": "^[A-Za-z0-9+/]*={0,2}$",
                              "description": "?encoding=base64: base64 of the vector's little-endian float32 bytes"}]},
        "ClipResponse": {
            "type": "object", "additionalProperties": False,
            "description": "Keys grouped by id: images in the order sent, then text-only ids",
            "patternProperties": {
                f"^image_{ID}_vector$": ref("Vector") | {"description": vector_key},
                f"^text_{ID}_vector$": ref("Vector") | {"description": vector_key},
                f"^image_vector_{ID}_similarity_score$": {
                    "type": "integer", "minimum": 0, "maximum": 100,
                    "description": "CLIPScore: round(100 * clamp(2.5 * cosine, 0, 1)); only for ids sent as both"},
                f"^image_vector_{ID}_cosine_similarity$": {"type": "number", "description": "The raw cosine"},
            },
        },
        "RankResponse": {"type": "object", "required": ["probabilities", "cosine_similarities"], "properties": {
            "probabilities": {"type": "array", "items": {"type": "array", "items": {
                "type": "number", "minimum": 0, "maximum": 1}}},
            "cosine_similarities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}},
        "Meta": _meta_schema(),
        "Error": _error_schema(),
    }


def _meta_schema() -> dict:
    integer, string = {"type": "integer"}, {"type": "string"}
    limits = {name: {"type": kind} for name, kind in LIMIT_TYPES.items()}
    fields = {"model": string, "model_path": string, "embedding_dim": integer, "image_size": integer,
              "max_text_tokens": integer, "device": string, "dtype": string, "torch_threads": integer,
              "torch_threads_follow_load": {"type": "boolean"}, "packed_weights": {"type": "boolean"},
              "precision": {"type": "string", "enum": ["fp32", "bf16", "fp16", "int8"]},
              "precision_cosine": {"type": ["number", "null"], "description": "the accuracy guard's worst cosine "
                                   "against fp32 on its probe at load (null: fp32, or the guard is off)"},
              "precision_fallback": {"type": "boolean"}, "text_cache_size": integer,
              "batching": {"type": "boolean"},
              "max_batch": integer, "version": string,
              "limits": {"type": "object", "required": list(limits), "properties": limits}}
    return {"type": "object", "required": list(fields), "properties": fields}


def _error_schema() -> dict:
    return {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {"error": {
        "type": "object", "required": ["status", "code", "message", "field"], "additionalProperties": False,
        "properties": {
            "status": {"type": "integer", "description": "The HTTP status, repeated"},
            "code": {"type": "string", "enum": sorted(code.id for code in Code), "description": "Stable and "
                     "machine-readable: " + "; ".join(f"`{code.id}` ({code.status})" for code in Code)},
            "message": {"type": "string", "description": "What went wrong and what to send instead"},
            "field": {"type": ["string", "null"], "description": "The form key, JSON path or header concerned"},
        }}}}
