"""The service's own operations: the multipart endpoint, the BentoML JSON API, probes, docs and pages."""

from __future__ import annotations

from ...errors import CLIP_AS_SERVICE_CODES, ENCODE_CODES, MULTIPART_CODES, RANK_CODES, Code
from ...parsing.form import ID_PATTERN as ID
from ...parsing.form import ID_RULE, MULTIPART, URLENCODED
from ...parsing.images import SUPPORTED_LIST
from ...settings import MAX_FORM_MEMORY_BYTES, Settings
from .jina import envelope_body, envelope_ok
from .parts import DEMO_TYPES, EXAMPLE_PNG, SWAGGER_TYPES, error_responses, json_content, ok, operation, page, ref


def embedding_paths(settings: Settings) -> dict:
    return {
        "/syte_test/clip": {"post": operation(
            "embeddings", "Embed images and texts sent as form parts; score image-text pairs",
            f"Parts `image-<id>` carry an image file, parts `text-<id>` a text; `<id>` is {ID_RULE}. An image and "
            "a text with the same `<id>` are compared (CLIPScore and cosine). "
            "A multipart/form-data body carries both; an application/x-www-form-urlencoded body (`curl -d`, an HTML "
            "form, Postman's x-www-form-urlencoded) carries texts only, with the same rules and limits.",
            {"200": ok("Vectors and scores, keys grouped by id in the order sent",
                       json_content(ref("ClipResponse"), CLIP_RESPONSE_EXAMPLE)),
             **error_responses(MULTIPART_CODES)},
            query=("encoding",), requestBody=_form_body(settings),
        )},
        "/encode": {"post": operation(
            "embeddings", "Embed a list of items (BentoML's /encode)",
            "One unit vector per item, in order. (clip-as-service's envelope: as POST /post with /encode.)",
            {"200": envelope_ok(ok("One vector per item", json_content(
                {"type": "array", "items": ref("Vector")}, [[0.0213, -0.0071, 0.0342], [0.0105, 0.0342, -0.0118]]))),
             **error_responses((*ENCODE_CODES, *CLIP_AS_SERVICE_CODES))},
            query=("encoding",), requestBody=envelope_body({"required": True, "content": json_content(
                ref("Items"), ENCODE_EXAMPLE)}, ENCODE_EXAMPLE),
        )},
        "/rank": {"post": operation(
            "embeddings", "Rank candidates against each query (BentoML's /rank)",
            "Per query, the softmax over the candidates of the cosines times the model's logit_scale "
            f"(CLIP's zero-shot rule), and the cosines. Queries and candidates count together against "
            f"the limit of {settings.max_items} items. (clip-as-service's envelope: as POST /post with /rank.)",
            {"200": envelope_ok(ok("Probabilities and cosines, one row per query, one column per candidate",
                                   json_content(ref("RankResponse"), {"probabilities": [[0.996, 0.004]],
                                                                      "cosine_similarities": [[0.2298, 0.1687]]}))),
             **error_responses((*RANK_CODES, *CLIP_AS_SERVICE_CODES))},
            requestBody=envelope_body({"required": True, "content": json_content(ref("RankRequest"))}, RANK_EXAMPLE),
        )},
    }


def _form_body(settings: Settings) -> dict:
    """The same parts as multipart/form-data or, texts only, as application/x-www-form-urlencoded fields."""
    image = {"type": "string", "contentMediaType": "application/octet-stream",
             "description": f"An image file (at most {settings.max_image_mb:g} MB and {settings.max_image_pixels} "
                            f"pixels): {SUPPORTED_LIST}, recognised by content; its file name and Content-Type "
                            "are ignored."}
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


def service_paths() -> dict:
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    return {
        "/livez": {"get": operation("health", "Liveness: the process runs (no model needed)", "Always 200.", {
            "200": ok("Alive", json_content(status | {"properties": {"status": {"const": "alive"}}},
                                            {"status": "alive"})), **error_responses(())})},
        "/readyz": {"get": operation("health", "Readiness: this worker has loaded the model", "503 until it has.", {
            "200": ok("Ready", json_content(status | {"properties": {"status": {"const": "ready"}}},
                                            {"status": "ready"})), **error_responses((Code.MODEL_NOT_READY,))})},
        "/meta": {"get": operation("health", "The model, device, version and limits", "Needs a loaded model.", {
            "200": ok("Metadata", json_content(ref("Meta"))), **error_responses((Code.MODEL_NOT_READY,))})},
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


CLIP_RESPONSE_EXAMPLE = {
    "image_1_vector": [0.0213, -0.0071, 0.0342],
    "text_1_vector": [0.0105, 0.0342, -0.0118],
    "image_vector_1_similarity_score": 85,
    "image_vector_1_cosine_similarity": 0.3412,
}
RANK_EXAMPLE = {"queries": [{"img_blob": EXAMPLE_PNG}],
                "candidates": [{"text": "picture of a dog"}, {"text": "picture of a cat"}]}
ENCODE_EXAMPLE = [{"text": "picture of a dog"}, {"img_blob": EXAMPLE_PNG},
                  {"img_uri": f"data:image/png;base64,{EXAMPLE_PNG}"}]
