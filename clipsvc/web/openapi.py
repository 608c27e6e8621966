"""The OpenAPI 3.1 document of this service, built per app from its Settings so the limits are the real ones.

Plain Python data: small helpers build the repeated shapes (error responses, vectors, items). The error
codes, their statuses and which endpoints answer them come from `error_codes`.
"""

from __future__ import annotations

import math

from .. import __version__
from ..error_codes import COMMON, ENCODE_CODES, MULTIPART_CODES, RANK_CODES, error_catalogue
from ..parsing.form import ID_PATTERN as ID
from ..parsing.form import MAX_FORM_MEMORY_BYTES, MULTIPART, URLENCODED
from ..server.request_id import MAX_LENGTH as REQUEST_ID_MAX
from ..settings import Settings
from .pages import TYPES

JSON = "application/json"
# What the demo's files and Swagger UI's (docs.ASSETS: a stylesheet, a script, an icon) are served as.
DEMO_TYPES = tuple(TYPES.values())
SWAGGER_TYPES = tuple(TYPES[suffix] for suffix in (".css", ".js", ".png"))
# An 8x8 red PNG: small enough for an example, a real image for the service.
EXAMPLE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8oaHBgA0wMeAAg1MCAOA4ASjhBhuDAAAAAElFTkSuQmCC"

def ref(name: str, kind: str = "schemas") -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: dict, example: object = None) -> dict:
    media = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {JSON: media}


def ok(description: str, content: dict) -> dict:
    return {"description": description, "headers": response_headers(), "content": content}


def response_headers() -> dict:
    return {name: ref(name, "headers") for name in ("request_id", "X-Request-ID")}


def error_responses(codes: tuple[str, ...]) -> dict:
    """One response per status among `codes` (plus COMMON), each listing exactly its codes."""
    catalogue = error_catalogue()
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes + COMMON):
        by_status.setdefault(catalogue[code][0], []).append(code)
    return {str(status): error_response(status, found, catalogue) for status, found in sorted(by_status.items())}


def error_response(status: int, codes: list[str], catalogue: dict[str, tuple[int, str]]) -> dict:
    narrowed = {"properties": {"error": {"properties": {"status": {"const": status}, "code": {"enum": codes}}}}}
    example = {"error": {"status": status, "code": codes[0], "message": catalogue[codes[0]][1], "field": None}}
    return ok("; ".join(f"`{code}`: {catalogue[code][1]}" for code in codes),
              json_content({"allOf": [ref("Error"), narrowed]}, example))


def operation(tag: str, summary: str, description: str, responses: dict, query: tuple[str, ...] = (),
              **extra: object) -> dict:
    """Every operation takes the request-id headers; `query` names more shared parameters."""
    parameters = [ref(name, "parameters") for name in (*query, "request_id", "X-Request-ID")]
    return {"tags": [tag], "summary": summary, "description": description, "parameters": parameters,
            "responses": responses, **extra}


def page(tag: str, summary: str, media_types: tuple[str, ...], path_parameter: str | None = None) -> dict:
    """A GET that answers a document that is not JSON (HTML, scripts, metrics text); with a path parameter, a file."""
    body = {media_type: {"schema": {"type": "string"}} for media_type in media_types}
    item = {"get": operation(tag, summary, summary, {"200": ok(summary, body), **error_responses(
        ("not_found",) if path_parameter else ())})}
    if path_parameter:
        item["parameters"] = [{"name": path_parameter, "in": "path", "required": True, "schema": {"type": "string"}}]
    return item


def build_spec(settings: Settings) -> dict:
    """The whole document for an app running with `settings`."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "clipsvc", "version": __version__, "description": _overview(settings)},
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": {**_embedding_paths(settings), **_service_paths()},
        "components": _components(settings),
    }


TAGS = {
    "embeddings": "CLIP embeddings and similarity: the multipart endpoint and the BentoML-compatible JSON API",
    "health": "Probes and metadata",
    "docs": "This document, its interactive page, and the demo page",
    "operations": "Prometheus metrics",
}


def _overview(settings: Settings) -> str:
    catalogue = error_catalogue()
    rows = "\n".join(f"| {status} | `{code}` | {when} |" for code, (status, when) in
                     sorted(catalogue.items(), key=lambda item: item[1][0]))
    return (
        "CLIP image and text embeddings and image-text similarity over HTTP.\n\n"
        f"Limits of this server: at most **{settings.max_items} items** (images + texts) per request, "
        f"**{settings.max_text_words} words** per text, **{settings.max_image_mb:g} MB** per image, "
        f"**{settings.max_image_pixels} pixels** per image and **{settings.max_request_mb:g} MB** per request body.\n\n"
        "Every error, from bad input to an unknown path, has the same JSON body (`Error`) and the `request_id` "
        "header.\n\n| status | code | when |\n| --- | --- | --- |\n" + rows
    )


def _embedding_paths(settings: Settings) -> dict:
    return {
        "/syte_test/clip": {"post": operation(
            "embeddings", "Embed images and texts sent as form parts; score image-text pairs",
            "Parts `image-<id>` carry an image file, parts `text-<id>` a text; `<id>` is 1-64 letters, digits, "
            "`_` or `-`. An image and a text with the same `<id>` are compared (CLIPScore and cosine). "
            "A multipart/form-data body carries both; an application/x-www-form-urlencoded body (`curl -d`, an HTML "
            "form, Postman's x-www-form-urlencoded) carries texts only, with the same rules and limits.",
            {"200": ok("Vectors and scores, keys grouped by id in the order sent",
                       json_content(ref("ClipResponse"), CLIP_RESPONSE_EXAMPLE)),
             **error_responses(MULTIPART_CODES)},
            query=("encoding",), requestBody=_form_body(settings),
        )},
        "/encode": {"post": operation(
            "embeddings", "Embed a list of items (BentoML's /encode)",
            "One unit vector per item, in order.",
            {"200": ok("One vector per item", json_content({"type": "array", "items": ref("Vector")},
                                                           [[0.0213, -0.0071, 0.0342], [0.0105, 0.0342, -0.0118]])),
             **error_responses(ENCODE_CODES)},
            query=("encoding",), requestBody={"required": True, "content": json_content(ref("Items"), ENCODE_EXAMPLE)},
        )},
        "/rank": {"post": operation(
            "embeddings", "Rank candidates against each query (BentoML's /rank)",
            "Per query, the softmax over the candidates of the cosines times the model's logit_scale "
            f"(CLIP's zero-shot rule), and the cosines. Queries and candidates count together against "
            f"the limit of {settings.max_items} items.",
            {"200": ok("Probabilities and cosines, one row per query, one column per candidate",
                       json_content(ref("RankResponse"), {"probabilities": [[0.996, 0.004]],
                                                          "cosine_similarities": [[0.2298, 0.1687]]})),
             **error_responses(RANK_CODES)},
            requestBody={"required": True, "content": json_content(ref("RankRequest"), {
                "queries": [{"img_blob": EXAMPLE_PNG}],
                "candidates": [{"text": "picture of a dog"}, {"text": "picture of a cat"}]})},
        )},
    }


def _form_body(settings: Settings) -> dict:
    """The same parts as multipart/form-data or, texts only, as application/x-www-form-urlencoded fields."""
    image = {"type": "string", "contentMediaType": "application/octet-stream",
             "description": f"An image file (at most {settings.max_image_mb:g} MB and {settings.max_image_pixels} "
                            "pixels): JPEG, PNG, GIF, BMP, TIFF, WebP, PPM/PGM/PBM, ICO, DDS, TGA or JPEG 2000, "
                            "recognised by content; its file name and Content-Type are ignored."}
    text = {"type": "string", "description": f"A text, at most {settings.max_text_words} words; characters outside "
                                             "printable ASCII are removed."}
    text_part = text | {"description": text["description"] + " May also be sent as a UTF-8 file part."}
    counts = {"additionalProperties": False, "minProperties": 1, "maxProperties": settings.max_items}
    multipart = {
        "type": "object",
        "description": f"Parts named `image-<id>` (files) and `text-<id>` (texts), `<id>` matching `{ID}`; at least "
                       f"one part, at most {settings.max_items}. `image-1` and `text-1` are examples of the pattern; "
                       "any other part name is refused (`unknown_key`).",
        "properties": {"image-1": image, "text-1": text_part},
        "patternProperties": {f"^image-{ID}$": image, f"^text-{ID}$": text_part},
        **counts,
    }
    urlencoded = {
        "type": "object",
        "description": f"Texts only: fields named `text-<id>`, `<id>` matching `{ID}`; at least one, at most "
                       f"{settings.max_items}, the whole body at most {MAX_FORM_MEMORY_BYTES} bytes "
                       "(`form_too_large`). Images need multipart/form-data: an `image-<id>` field here is refused "
                       "(`image_not_a_file`).",
        "properties": {"text-1": text},
        "patternProperties": {f"^text-{ID}$": text},
        **counts,
    }
    example = {"text-1": "Man staring at the moon, moon is made of mechanical parts"}
    return {"required": True, "content": {
        MULTIPART: {"schema": multipart, "encoding": {
            "image-1": {"contentType": "image/jpeg, image/png, image/*, application/octet-stream"},
            "text-1": {"contentType": "text/plain"}}, "example": example},
        URLENCODED: {"schema": urlencoded, "example": example},
    }}


def _service_paths() -> dict:
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    return {
        "/livez": {"get": operation("health", "Liveness: the process runs (no model needed)", "Always 200.", {
            "200": ok("Alive", json_content(status | {"properties": {"status": {"const": "alive"}}},
                                            {"status": "alive"})), **error_responses(())})},
        "/readyz": {"get": operation("health", "Readiness: this worker has loaded the model", "503 until it has.", {
            "200": ok("Ready", json_content(status | {"properties": {"status": {"const": "ready"}}},
                                            {"status": "ready"})), **error_responses(("model_not_ready",))})},
        "/meta": {"get": operation("health", "The model, device, version and limits", "Needs a loaded model.", {
            "200": ok("Metadata", json_content(ref("Meta"))), **error_responses(("model_not_ready",))})},
        "/openapi.json": {"get": operation("docs", "This OpenAPI 3.1 document", "Built from this server's settings.", {
            "200": ok("The document", json_content({"type": "object", "required": ["openapi", "paths"]})),
            **error_responses(())})},
        "/docs": page("docs", "Interactive API documentation (Swagger UI, served from this app)", ("text/html",)),
        "/docs/assets/{filename}": page("docs", "A file of the /docs page (Swagger UI's own assets)",
                                        SWAGGER_TYPES, "filename"),
        "/": page("docs", "Demo page: rank captions against an image through POST /rank", ("text/html",)),
        "/demo/{name}": page("docs", "A file of the demo page", DEMO_TYPES, "name"),
        "/metrics": page("operations", "Prometheus metrics of all workers (text exposition format 0.0.4)",
                         ("text/plain; version=0.0.4",)),
    }


def _components(settings: Settings) -> dict:
    return {
        "schemas": {**_item_schemas(settings), **_response_schemas()},
        "parameters": {
            "encoding": {"name": "encoding", "in": "query", "required": False,
                         "description": "How vectors are written: JSON numbers (`float`, the default) or `base64` "
                                        "of their little-endian float32 bytes (OpenAI's convention).",
                         "schema": {"type": "string", "enum": ["float", "base64"], "default": "float"}},
            **{name: {"name": name, "in": "header", "required": False,
                      "description": "The request's id, echoed in the response's request_id and X-Request-ID "
                                     "headers and in every log line; without one the service assigns a UUID4. "
                                     "request_id wins when both are sent.",
                      "schema": ref("RequestId")} for name in ("request_id", "X-Request-ID")},
        },
        "headers": {name: {"description": "The request's id (the client's when valid, else a new UUID4)",
                           "required": True, "schema": {"type": "string"}} for name in ("request_id", "X-Request-ID")},
    }


def _item_schemas(settings: Settings) -> dict:
    base64_limit = 4 * math.ceil(settings.max_image_bytes / 3)
    item = {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1}
    items = {"type": "array", "items": ref("Item"), "minItems": 1, "maxItems": settings.max_items}
    return {
        "RequestId": {"type": "string", "pattern": f"^[A-Za-z0-9._:-]{{1,{REQUEST_ID_MAX}}}$"},
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
                           "(`url_fetch_disabled`) unless the operator sets CLIP_FETCH_ALLOW_HOSTS; then the host "
                           "must be allowed (`url_host_not_allowed`) and public (`url_address_forbidden`), redirects "
                           "are followed within the same host only, at most 3 and never from https to http "
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
    integer, number, string = {"type": "integer"}, {"type": "number"}, {"type": "string"}
    limits = {"max_request_mb": number, "max_image_mb": number, "max_image_pixels": integer,
              "max_text_words": integer, "max_items": integer}
    fields = {"model": string, "model_path": string, "embedding_dim": integer, "image_size": integer,
              "max_text_tokens": integer, "device": string, "dtype": string, "torch_threads": integer,
              "torch_threads_follow_load": {"type": "boolean"}, "packed_weights": {"type": "boolean"},
              "batching": {"type": "boolean"},
              "max_batch": integer, "version": string,
              "limits": {"type": "object", "required": list(limits), "properties": limits}}
    return {"type": "object", "required": list(fields), "properties": fields}


def _error_schema() -> dict:
    catalogue = error_catalogue()
    return {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {"error": {
        "type": "object", "required": ["status", "code", "message", "field"], "additionalProperties": False,
        "properties": {
            "status": {"type": "integer", "description": "The HTTP status, repeated"},
            "code": {"type": "string", "enum": sorted(catalogue), "description": "Stable and machine-readable: " +
                     "; ".join(f"`{code}` ({status})" for code, (status, _) in catalogue.items())},
            "message": {"type": "string", "description": "What went wrong and what to send instead"},
            "field": {"type": ["string", "null"], "description": "The form key, JSON path or header concerned"},
        }}}}


CLIP_RESPONSE_EXAMPLE = {
    "image_1_vector": [0.0213, -0.0071, 0.0342],
    "text_1_vector": [0.0105, 0.0342, -0.0118],
    "image_vector_1_similarity_score": 85,
    "image_vector_1_cosine_similarity": 0.3412,
}
ENCODE_EXAMPLE = [{"text": "picture of a dog"}, {"img_blob": EXAMPLE_PNG},
                  {"img_uri": f"data:image/png;base64,{EXAMPLE_PNG}"}]
