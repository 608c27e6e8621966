"""clip-as-service's operation (web.jina: POST /post, jina's HTTP gateway) and its envelope, which BentoML's /encode
and /rank take too (openapi.bentoml wraps their bodies and answers with `envelope_body`, `envelope_ok`)."""

from __future__ import annotations

from ...parsing.jina_docs import ENVELOPE_NOTE, CasRequest
from ...settings import Settings
from .parts import EXAMPLE_PNG, Routes, error_responses, json_content, merge, model_schemas, ok, operation, ref


def paths(settings: Settings, routes: Routes) -> dict:
    return {"/post": {"post": operation(
        "compat", "Embed or rank documents (clip-as-service over HTTP: jina's gateway)",
        "`data` is a list of documents: each has `text`, or an image as `blob` (base64 of the file) or `uri` (a "
        "data: URI or an http(s) URL on the operator's allow-list); the blob is read first, then the uri. "
        "`exec_endpoint` (or `execEndpoint`) `/` or `/encode` gives every document its `embedding` (a unit vector); "
        "`/rank` ranks each document's `matches`: each gets `scores.clip_score.value` (the softmax over that "
        "document's matches of the model's logit_scale times the cosine, as /rank) and "
        "`scores.clip_score_cosine.value`, best first. Documents and matches count together against the limit of "
        f"{settings.max_items} items. `parameters` is echoed; `drop_image_content: true` leaves `blob` out of the "
        "answer. The body is read as JSON whatever its Content-Type says.",
        {"200": ok("The documents, embedded (and, for /rank, their matches ranked), in jina's response",
                   json_content(ref("CasResponse"), ENCODE_RESPONSE_EXAMPLE)),
         **error_responses(routes.codes["jina.post"])},
        requestBody={"required": True, "content": json_content(ref("CasRequest"), POST_EXAMPLE)},
    )}}


def components(settings: Settings, routes: Routes) -> dict:
    """The envelope from its model (parsing.jina_docs); jina's answer here."""
    answered = {
        "type": "object", "required": ["id", "embedding"],
        "description": "The document as sent, with its `embedding`; for /rank, `matches` best first, with scores",
        "properties": {"id": {"type": "string"}, "embedding": {"type": "array", "items": {"type": "number"}},
                       "scores": {"type": ["object", "null"], "additionalProperties": {
                           "type": "object", "required": ["value"], "properties": {"value": {"type": "number"}}}},
                       "matches": {"type": ["array", "null"],
                                   "items": {"anyOf": [ref("CasAnswerDocument"), ref("CasDocument")]},
                                   "description": "/rank: ranked, each with its embedding and scores; encoding: "
                                                  "the matches as sent, untouched"}}}
    return merge(model_schemas(settings, CasRequest), {"schemas": {
        "CasAnswerDocument": answered,
        "CasResponse": {"type": "object", "required": ["header", "parameters", "routes", "data"], "properties": {
            "header": {"type": "object", "required": ["requestId", "execEndpoint"], "properties": {
                "requestId": {"type": "string"}, "execEndpoint": {"type": "string"}}},
            "parameters": {"type": "object"}, "routes": {"type": "array"},
            "data": {"type": "array", "items": ref("CasAnswerDocument")}}},
    }})


def envelope_body(bentoml: dict, example: dict) -> dict:
    """/encode's and /rank's request body: BentoML's, or clip-as-service's envelope (`example` keeps BentoML's)."""
    schema = bentoml["content"]["application/json"]["schema"]
    media = bentoml["content"]["application/json"] | {"schema": {"oneOf": [schema, ref("CasRequest")]}}
    return bentoml | {"description": ENVELOPE_NOTE, "content": {"application/json": media | {"example": example}}}


def envelope_ok(bentoml: dict) -> dict:
    """/encode's and /rank's 200: BentoML's answer, or jina's for an envelope."""
    media = bentoml["content"]["application/json"]
    return bentoml | {"content": {"application/json": media | {
        "schema": {"oneOf": [media["schema"], ref("CasResponse")]}}}}


IMAGE_URI = f"data:image/png;base64,{EXAMPLE_PNG}"
POST_EXAMPLE = {"data": [{"text": "First do it"}, {"uri": IMAGE_URI}], "execEndpoint": "/"}
ENCODE_RESPONSE_EXAMPLE = {
    "header": {"requestId": "3f1c9a6e2b7d4c1e9a0b8d7c6e5f4a3b", "status": None, "execEndpoint": "/",
               "targetExecutor": ""},
    "parameters": {}, "routes": [{"executor": "clipsvc", "startTime": None, "endTime": None, "status": None}],
    "data": [{"id": "5c1e0a7f9b3d4e2a8c6b1d0f7e9a3c5b", "text": "First do it", "embedding": [0.0105, 0.0342, -0.0118]},
             {"id": "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b", "uri": IMAGE_URI, "embedding": [0.0213, -0.0071, 0.0342]}],
}
