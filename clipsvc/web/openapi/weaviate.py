"""Weaviate's multi2vec-clip module: its probes (web.health), and its JSON on POST /vectorize (web.weaviate), which
BentoML's operation (openapi.bentoml) takes beside the raw image: the body as parsing.weaviate's model declares it,
the answer, and errors in either shape."""

from __future__ import annotations

from ...errors import Code
from ...parsing.weaviate import WeaviateVectorizeRequest
from ...settings import Settings
from ..weaviate import PATH, weaviate_error_body
from .parts import (
    EXAMPLE_PNG,
    JSON,
    Routes,
    error_example,
    error_responses,
    merge,
    model_schemas,
    operation,
    ref,
    response_headers,
)

# A /vectorize error is in Weaviate's shape for its JSON, in ours for BentoML's image (and for gunicorn's refusals,
# which come before any body is seen).
SHAPE = {"anyOf": [ref("Error"), ref("WeaviateError")]}
EXAMPLE = {"texts": ["picture of a dog"], "images": [EXAMPLE_PNG]}


def speaks_weaviate(path: str) -> bool:
    """Whether errors on `path` may come in Weaviate's shape (those of its JSON requests)."""
    return path == PATH


def vectorize_errors(codes: tuple[Code, ...]) -> dict:
    return error_responses(codes, SHAPE, error_example)


def with_weaviate_body(body: dict) -> dict:
    """BentoML's request body, and Weaviate's JSON beside it."""
    return body | {"content": body["content"] | {JSON: {"schema": ref("WeaviateVectorizeRequest"),
                                                        "example": EXAMPLE}}}


def with_weaviate_answer(answer: dict) -> dict:
    """BentoML's answer, or Weaviate's: the request's type says which."""
    media = answer["content"][JSON]
    return answer | {"content": {JSON: media | {"schema": {"anyOf": [media["schema"], ref("WeaviateVectors")]}}}}


def paths(settings: Settings, routes: Routes) -> dict:
    def probe(summary: str, description: str, endpoint: str) -> dict:
        return {"get": operation("health", summary, description, {
            "204": {"description": summary, "headers": response_headers()}, **error_responses(routes.codes[endpoint])})}

    return {
        "/.well-known/live": probe("Liveness for Weaviate's multi2vec-clip module", "Always 204, as /livez's 200.",
                                   "health.weaviate_live"),
        "/.well-known/ready": probe("Readiness for Weaviate's multi2vec-clip module (polled at its start-up)",
                                    "204 once this worker has loaded the model; 503 until then, as /readyz.",
                                    "health.weaviate_ready"),
    }


def components(settings: Settings, routes: Routes) -> dict:
    vectors = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    return merge(model_schemas(settings, WeaviateVectorizeRequest), {"schemas": {
        "WeaviateVectors": {"type": "object", "required": ["textVectors", "imageVectors"], "properties": {
            "textVectors": vectors | {"description": "One unit vector per text, in order"},
            "imageVectors": vectors | {"description": "One unit vector per image, in order"}}},
        "WeaviateError": {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
            "error": {"type": "string", "description": "What went wrong and what to send instead (the message of "
                                                       "our `Error`; the status and request-id headers as usual)",
                      "example": weaviate_error_body(400, "", "texts[0] is empty", None)["error"]}}},
    }})
