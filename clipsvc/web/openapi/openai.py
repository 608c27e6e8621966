"""The `/v1` operations (web.openai: OpenAI's embeddings API) and their schemas, errors in OpenAI's shape."""

from __future__ import annotations

from ...errors import Code
from ...parsing.openai_input import PARAMETERS
from ...parsing.options import ENCODINGS
from ...settings import Settings
from ..openai import OPENAI_ERROR_TYPES, PREFIX, openai_error_body
from .parts import EXAMPLE_PNG, Declared, error_responses, json_content, ok, operation, path_parameters, ref

# gunicorn refuses some requests (malformed HTTP, slow headers) before any path is known: those come in the
# service's own shape, so a /v1 error body is one or the other.
SHAPE = {"anyOf": [ref("OpenAIError"), ref("Error")]}


def example(status: int, code: Code) -> dict:
    return openai_error_body(status, code.id, code.meaning, None)


def v1_errors(codes: tuple[Code, ...]) -> dict:
    return error_responses(codes, SHAPE, example)


def paths(settings: Settings, codes: Declared) -> dict:
    return {
        f"{PREFIX}/embeddings": {"post": operation(
            "openai", "Embed texts and images (OpenAI's POST /v1/embeddings)",
            "`input` is a string, a list of strings, or a list mixing strings with `{\"text\": ...}` and "
            "`{\"image\": ...}` objects; an image is a data: URI, bare base64 or an http(s) URL (fetched only for "
            f"allow-listed hosts). At most {settings.max_items} items. `model` may be left out; if given it must be "
            "the name GET /v1/models lists. `usage` counts each text's CLIP tokens and, per image, the tokens the "
            "vision tower reads (its patches and the class token). Token-id input is refused.",
            {"200": ok("One embedding per input, in order", json_content(ref("EmbeddingList"), {
                "object": "list", "model": "clip-vit-large-patch14",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.0213, -0.0071, 0.0342]}],
                "usage": {"prompt_tokens": 7, "total_tokens": 7}})),
             **v1_errors(codes["openai.embeddings"])},
            requestBody={"required": True, "content": json_content(ref("EmbeddingsRequest"), {
                "model": "clip-vit-large-patch14",
                "input": ["picture of a dog", {"image": f"data:image/png;base64,{EXAMPLE_PNG}"}]})},
        )},
        f"{PREFIX}/models": {"get": operation(
            "openai", "The model this server serves (OpenAI's GET /v1/models)", "One model: the loaded one.",
            {"200": ok("A list of one model", json_content(ref("ModelList"))),
             **v1_errors(codes["openai.models"])})},
        f"{PREFIX}/models/{{model}}": {"parameters": path_parameters("model"), "get": operation(
            "openai", "One model by name (OpenAI's GET /v1/models/{model})", "404 for any other name.",
            {"200": ok("The model", json_content(ref("Model"))),
             **v1_errors(codes["openai.model"])})},
    }


def components(settings: Settings) -> dict:
    string, integer = {"type": "string"}, {"type": "integer"}
    item = {"anyOf": [string, {"type": "object", "required": ["text"], "additionalProperties": False,
                               "properties": {"text": string}},
                      {"type": "object", "required": ["image"], "additionalProperties": False,
                       "properties": {"image": {"type": "string", "description": "data: URI, base64 or URL"}}}]}
    model = {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
        "id": string, "object": {"const": "model"}, "created": integer, "owned_by": string}}
    return {"schemas": {
        "EmbeddingsRequest": {"type": "object", "required": ["input"], "additionalProperties": False,
                              "propertyNames": {"enum": list(PARAMETERS)}, "properties": {
            "model": string, "input": {"anyOf": [string, {"type": "array", "minItems": 1, "items": item}]},
            "encoding_format": {"enum": list(ENCODINGS), "default": ENCODINGS[0]},
            "dimensions": {"type": "integer", "description": "Only the model's own size is accepted"},
            "user": string}},
        "EmbeddingList": {"type": "object", "required": ["object", "data", "model", "usage"], "properties": {
            "object": {"const": "list"}, "model": string,
            "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                                                "properties": {"object": {"const": "embedding"}, "index": integer,
                                                               "embedding": ref("Vector")}}},
            "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                      "properties": {"prompt_tokens": integer, "total_tokens": integer}}}},
        "Model": model,
        "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}}},
        "OpenAIError": {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
            "error": {"type": "object", "required": ["message", "type", "param", "code"],
                      "additionalProperties": False, "properties": {
                          "message": string, "type": {"enum": list(OPENAI_ERROR_TYPES)},
                          "param": {"type": ["string", "null"]}, "code": {"type": "string"}}}}},
    }}
