"""The OpenAPI document's building blocks: references, JSON bodies, responses with the request-id headers,
error responses that list exactly their codes, operations and plain pages."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ...errors import COMMON, Code, error_body
from ...server.request_id import HEADER_NAMES, REPLACED_HEADER
from ..pages import TYPES

# The codes each view declared (web.context.answers), by its Flask endpoint ("bentoml.encode"): what the
# operations' error responses list, with COMMON.
Declared = Mapping[str, tuple[Code, ...]]


def ref(name: str, kind: str = "schemas") -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


JSON = "application/json"
# What the demo's files and Swagger UI's (docs.ASSETS: a stylesheet, a script, an icon) are served as.
DEMO_TYPES = tuple(TYPES.values())
SWAGGER_TYPES = tuple(TYPES[suffix] for suffix in (".css", ".js", ".png"))
# An 8x8 red PNG: small enough for an example, a real image for the service.
EXAMPLE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8oaHBgA0wMeAAg1MCAOA4ASjhBhuDAAAAAElFTkSuQmCC"

def json_content(schema: dict, example: object = None) -> dict:
    media = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {JSON: media}


def ok(description: str, content: dict) -> dict:
    return {"description": description, "headers": response_headers(), "content": content}


def response_headers() -> dict:
    return {name: ref(name, "headers") for name in (*HEADER_NAMES, REPLACED_HEADER)}


def error_responses(codes: tuple[Code, ...], shape: dict | None = None, example=None) -> dict:
    """One response per status among `codes` (plus COMMON), each listing exactly its codes; `shape` is the body's
    schema (our `Error` unless given) and `example(status, code)` its example."""
    by_status: dict[int, list[Code]] = {}
    for code in dict.fromkeys(codes + COMMON):
        by_status.setdefault(code.status, []).append(code)
    return {str(status): error_response(status, found, shape or ref("Error"), example or error_example)
            for status, found in sorted(by_status.items())}


def error_example(status: int, code: Code) -> dict:
    return error_body(status, code.id, code.meaning)


def error_response(status: int, codes: list[Code], shape: dict, example) -> dict:
    # Constraints on properties hold only where the property is: `status` narrows our shape, not OpenAI's.
    narrowed = {"properties": {"error": {"properties": {"status": {"const": status},
                                                        "code": {"enum": [code.id for code in codes]}}}}}
    response = ok("; ".join(f"`{code.id}`: {code.meaning}" for code in codes),
                  json_content({"allOf": [shape, narrowed]}, example(status, codes[0])))
    if any(code.retry_after for code in codes):
        response["headers"]["Retry-After"] = {
            "description": "seconds to wait before sending the request again: "
                           + "; ".join(f"`{code.id}`: {code.retry_after}" for code in codes if code.retry_after),
            "schema": {"type": "integer", "minimum": 1}}
    return response


def operation(tag: str, summary: str, description: str, responses: dict, query: tuple[str, ...] = (),
              **extra: object) -> dict:
    """Every operation takes the request-id headers; `query` names more shared parameters."""
    parameters = [ref(name, "parameters") for name in (*query, *HEADER_NAMES)]
    return {"tags": [tag], "summary": summary, "description": description, "parameters": parameters,
            "responses": responses, **extra}


def page(tag: str, summary: str, media_types: tuple[str, ...], codes: tuple[Code, ...],
         path_parameter: str | None = None) -> dict:
    """A GET that answers a document that is not JSON (HTML, scripts, metrics text); with a path parameter, a file."""
    body = {media_type: {"schema": {"type": "string"}} for media_type in media_types}
    item = {"get": operation(tag, summary, summary, {"200": ok(summary, body), **error_responses(codes)})}
    if path_parameter:
        item["parameters"] = path_parameters(path_parameter)
    return item


def path_parameters(*names: str) -> list[dict]:
    """The path's variables, each a required string (werkzeug's converters here are all strings)."""
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


_RULE_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def openapi_path(rule: str) -> str:
    """werkzeug's `/demo/<path:name>` is OpenAPI's `/demo/{name}`."""
    return _RULE_VARIABLE.sub(r"{\1}", rule)


def rule_parameters(rule: str) -> list[dict]:
    """A werkzeug rule's variables as path parameters: `name` of `/demo/<path:name>`."""
    return path_parameters(*_RULE_VARIABLE.findall(rule))
