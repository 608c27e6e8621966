"""The `/v1` operations (web.openai: OpenAI's embeddings API) and their schemas, errors in OpenAI's shape (the one
web.openai declared: web.context.error_shape)."""

from __future__ import annotations

from ...errors import Code
from ...parsing.openai_input import EmbeddingsRequest
from ...settings import Settings
from ..context import ErrorShape, error_shape
from .parts import (
    EXAMPLE_PNG,
    Routes,
    error_responses,
    json_content,
    merge,
    model_schemas,
    ok,
    openapi_path,
    operation,
    ref,
    rule_parameters,
)

# gunicorn refuses some requests (malformed HTTP, slow headers) before any path is known: those come in the
# service's own shape, so a /v1 error body is one or the other.
SHAPE = {"anyOf": [ref("OpenAIError"), ref("Error")]}


def v1_errors(codes: tuple[Code, ...], shape: ErrorShape) -> dict:
    """Error responses in the API's declared shape, each with an example the shape itself made."""
    return error_responses(codes, SHAPE, lambda status, code: shape(status, code.id, code.meaning, None))


def paths(settings: Settings, routes: Routes) -> dict:
    rules = dict(routes.of("openai"))
    shape = error_shape(rules["openai.embeddings"], "openai")
    found = {
        "openai.embeddings": {"post": operation(
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
             **v1_errors(routes.codes["openai.embeddings"], shape)},
            requestBody={"required": True, "content": json_content(ref("EmbeddingsRequest"), {
                "model": "clip-vit-large-patch14",
                "input": ["picture of a dog", {"image": f"data:image/png;base64,{EXAMPLE_PNG}"}]})},
        )},
        "openai.models": {"get": operation(
            "openai", "The model this server serves (OpenAI's GET /v1/models)", "One model: the loaded one.",
            {"200": ok("A list of one model", json_content(ref("ModelList"))),
             **v1_errors(routes.codes["openai.models"], shape)})},
        "openai.model": {"get": operation(
            "openai", "One model by name (OpenAI's GET /v1/models/{model})", "404 for any other name.",
            {"200": ok("The model", json_content(ref("Model"))),
             **v1_errors(routes.codes["openai.model"], shape)})},
    }
    for endpoint, item in found.items():
        if rule_parameters(rules[endpoint]):
            item["parameters"] = rule_parameters(rules[endpoint])
    return {openapi_path(rules[endpoint]): item for endpoint, item in found.items()}


def components(settings: Settings, routes: Routes) -> dict:
    """The request from its model (parsing.openai_input); the answers, and the error shape's `type`s as the
    declared shape writes them, for a client's fault and the server's."""
    string, integer = {"type": "string"}, {"type": "integer"}
    (_, rule), *_ = routes.of("openai")
    shape = error_shape(rule, "openai")
    model = {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
        "id": string, "object": {"const": "model"}, "created": integer, "owned_by": string}}
    return merge(model_schemas(settings, EmbeddingsRequest), {"schemas": {
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
                          "message": string, "type": {"enum": [shape(status, "", "", None)["error"]["type"]
                                                               for status in (400, 500)]},
                          "param": {"type": ["string", "null"]}, "code": {"type": "string"}}}}},
    }})
