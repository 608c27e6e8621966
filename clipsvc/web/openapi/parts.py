"""The OpenAPI document's building blocks: references, JSON bodies, responses with the request-id headers,
error responses that list exactly their codes, operations and plain pages."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from ...errors import COMMON, Code, error_body
from ...server.request_id import HEADER_NAMES, REPLACED_HEADER
from ...settings import Settings
from ..pages import TYPES


@dataclass(frozen=True)
class Routes:
    """What the app serves, read from it, so that no part of the document imports a view: by Flask endpoint
    ("bentoml.encode"), the codes its view declared (web.context.answers; its error responses list them, with
    COMMON) and its URL rule."""

    codes: Mapping[str, tuple[Code, ...]]
    rules: Mapping[str, str]

    def of(self, blueprint: str) -> list[tuple[str, str]]:
        """(endpoint, rule) of each route of `blueprint`, in the order it registered them."""
        return [(endpoint, rule) for endpoint, rule in self.rules.items() if endpoint.startswith(f"{blueprint}.")]


def merge(first: dict, second: dict) -> dict:
    """Components by kind (schemas, parameters, headers), the second's added to the first's."""
    return {kind: {**first.get(kind, {}), **second.get(kind, {})} for kind in {**first, **second}}


def model_schemas(settings: Settings, *models: type[BaseModel]) -> dict:
    """The request bodies' schemas, generated from their models (parsing): each model and what it refers to as a
    component, pydantic's titles left out, and the limits its descriptions name (`{max_items}`) this server's."""
    found: dict[str, dict] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found |= schema.pop("$defs", {}) | {model.__name__: schema}
    return {"schemas": _filled(found, _limits(settings))}


def _limits(settings: Settings) -> dict[str, int | float]:
    return {"max_items": settings.max_items, "max_text_words": settings.max_text_words,
            "max_image_mb": settings.max_image_mb, "max_image_pixels": settings.max_image_pixels,
            "base64_limit": 4 * math.ceil(settings.max_image_bytes / 3)}


_LIMIT = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _filled(schema: object, limits: dict[str, int | float], properties: bool = False) -> object:
    """`schema` without titles, its `{limit}`s (a description's words, or a keyword's whole value) filled in."""
    if isinstance(schema, dict):
        return {key: _filled(value, limits, key == "properties" and not properties) for key, value in schema.items()
                if properties or key != "title"}
    if isinstance(schema, list):
        return [_filled(value, limits) for value in schema]
    if isinstance(schema, str) and _LIMIT.search(schema):
        whole = _LIMIT.fullmatch(schema)
        if whole and whole[1] in limits:
            return limits[whole[1]]
        return _LIMIT.sub(lambda m: format(limits[m[1]], m[2] or "") if m[1] in limits else m[0], schema)
    return schema


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
