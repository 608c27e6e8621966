"""The components every part of the document shares: the request-id parameters and headers, `?encoding=`, the
`Vector` and the `Error` body; each API's own schemas are in its part (clip, bentoml, truss, jina, openai)."""

from __future__ import annotations

from ...errors import Code
from ...parsing.options import ENCODINGS
from ...server.request_id import HEADER_NAMES, REPLACED_HEADER
from ...server.request_id import PATTERN as REQUEST_ID_PATTERN
from ...settings import Settings
from .parts import ref


def components(settings: Settings) -> dict:
    return {
        "schemas": {
            "RequestId": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"},
            "Vector": {"description": "A unit-length embedding, as long as the model's projection (768 for ViT-L/14)",
                       "oneOf": [{"type": "array", "items": {"type": "number"}, "description": "?encoding=float"},
                                 {"type": "string", "contentEncoding": "base64", "pattern": "^[A-Za-z0-9+/]*={0,2}$",
                                  "description": "?encoding=base64: base64 of the vector's little-endian float32 "
                                                 "bytes"}]},
            "Error": _error_schema(),
        },
        "parameters": {
            "encoding": {"name": "encoding", "in": "query", "required": False,
                         "description": "How vectors are written: JSON numbers (`float`, the default) or `base64` "
                                        "of their little-endian float32 bytes (OpenAI's convention).",
                         "schema": {"type": "string", "enum": list(ENCODINGS), "default": ENCODINGS[0]}},
            **{name: {"name": name, "in": "header", "required": False,
                      "description": "The request's id, echoed in the response's request_id and X-Request-ID "
                                     "headers and in every log line; without one the service assigns a UUID4. "
                                     "request_id wins when both are sent. One that does not match RequestId is "
                                     f"replaced by a new UUID4 (the response says {REPLACED_HEADER}: true) and the "
                                     "request is served.",
                      "schema": ref("RequestId")} for name in HEADER_NAMES},
        },
        "headers": {
            **{name: {"description": "The request's id (the client's when valid, else a new UUID4)",
                      "required": True, "schema": {"type": "string"}} for name in HEADER_NAMES},
            REPLACED_HEADER: {"description": "Sent only when the client's request id did not match RequestId and was "
                                             "replaced (the log keeps it, escaped, as original_request_id)",
                              "required": False, "schema": {"type": "string", "const": "true"}},
        },
    }


def _error_schema() -> dict:
    return {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {"error": {
        "type": "object", "required": ["status", "code", "message", "field"], "additionalProperties": False,
        "properties": {
            "status": {"type": "integer", "description": "The HTTP status, repeated"},
            "code": {"type": "string", "enum": sorted(code.id for code in Code), "description": "Stable and "
                     "machine-readable: " + "; ".join(f"`{code.id}` ({code.status})" for code in Code)},
            "message": {"type": "string", "description": "What went wrong and what to send instead"},
            "field": {"type": ["string", "null"], "description": "The form key, JSON path or header concerned"},
            "index": {"type": "integer", "minimum": 0, "description": "Only when one item of a list failed: its "
                      "position in the list `field` names (2 for `candidates[2].img_blob`), for clients to drop it"},
        }}}}
