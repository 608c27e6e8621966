"""POST /syte_test/clip (web.clip): the user's multipart endpoint, its form bodies and its response."""

from __future__ import annotations

from ...parsing.form import ID_PATTERN as ID
from ...parsing.form import ID_RULE, MULTIPART, URLENCODED
from ...parsing.images import SUPPORTED_LIST
from ...settings import MAX_FORM_MEMORY_BYTES, MAX_TEXT_CHARS, Settings
from .parts import Routes, error_responses, json_content, ok, operation, ref


def paths(settings: Settings, routes: Routes) -> dict:
    return {"/syte_test/clip": {"post": operation(
        "embeddings", "Embed images and texts sent as form parts; score image-text pairs",
        f"Parts `image-<id>` carry an image file, parts `text-<id>` a text; `<id>` is {ID_RULE}. An image and "
        "a text with the same `<id>` are compared (CLIPScore and cosine). "
        "A multipart/form-data body carries both; an application/x-www-form-urlencoded body (`curl -d`, an HTML "
        "form, Postman's x-www-form-urlencoded) carries texts only, with the same rules and limits.",
        {"200": ok("Vectors and scores, keys grouped by id in the order sent",
                   json_content(ref("ClipResponse"), CLIP_RESPONSE_EXAMPLE)),
         **error_responses(routes.codes["clip.clip"])},
        query=("encoding",), requestBody=_form_body(settings),
    )}}


def _form_body(settings: Settings) -> dict:
    """The same parts as multipart/form-data or, texts only, as application/x-www-form-urlencoded fields."""
    image = {"type": "string", "contentMediaType": "application/octet-stream",
             "description": f"An image file (at most {settings.max_image_mb:g} MB and {settings.max_image_pixels} "
                            f"pixels): {SUPPORTED_LIST}, recognised by content; its file name and Content-Type "
                            "are ignored."}
    text = {"type": "string", "maxLength": MAX_TEXT_CHARS,
            "description": f"A text, at most {settings.max_text_words} words and {MAX_TEXT_CHARS} characters; "
                           "characters outside printable ASCII are removed."}
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


def components(settings: Settings, routes: Routes) -> dict:
    vector_key = "An L2-normalised embedding (a `Vector`)"
    return {"schemas": {"ClipResponse": {
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
    }}}


CLIP_RESPONSE_EXAMPLE = {
    "image_1_vector": [0.0213, -0.0071, 0.0342],
    "text_1_vector": [0.0105, 0.0342, -0.0118],
    "image_vector_1_similarity_score": 85,
    "image_vector_1_cosine_similarity": 0.3412,
}
