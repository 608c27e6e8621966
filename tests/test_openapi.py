"""The OpenAPI document and the /docs page: valid, complete, and served from this app alone."""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from http import HTTPStatus
from pathlib import Path

import gunicorn.workers.base
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from clipsvc.errors import COMMON, Code
from clipsvc.settings import Settings
from clipsvc.web import auth, docs
from clipsvc.web.app import create_app
from clipsvc.web.context import codes_of
from clipsvc.web.openapi import build_spec

CLIPSVC = Path(__file__).resolve().parent.parent / "clipsvc"
IGNORED_METHODS = {"HEAD", "OPTIONS"}
CODES = {code.id: code for code in Code}


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_the_document_is_built_from_the_apps_settings(app, spec):
    assert spec == build_spec(app)


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)


def openapi_path(rule: str) -> str:
    """werkzeug's `/demo/<path:name>` is OpenAPI's `/demo/{name}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_route_is_documented_and_every_documented_route_exists(app, spec):
    routes = {(openapi_path(rule.rule), method.lower()) for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" for method in rule.methods - IGNORED_METHODS}
    documented = {(path, method) for path, item in spec["paths"].items() for method in item if method != "parameters"}
    assert routes - documented == set()
    assert documented - routes == set()


def code_names(tree: ast.AST) -> list[ast.Attribute]:
    """Every `Code.X` in `tree`."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "Code"]


def declarations(tree: ast.AST):
    """Where codes are only listed, not raised: `@answers(...)` and the module-level groups (`..._CODES`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "answers":
            yield node
        elif isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id.endswith("_CODES")
                                                   for target in node.targets):
            yield node


def produced_error_codes() -> set[str]:
    """Every code the package can put in `error.code`: named in its source other than where codes are only
    declared (the table, the groups, `@answers`, the OpenAPI document), or derived from a reason."""
    codes = set()
    for path in CLIPSVC.rglob("*.py"):
        if path == CLIPSVC / "errors.py" or "openapi" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        declared = {id(node) for declaration in declarations(tree) for node in code_names(declaration)}
        codes |= {node.attr.lower() for node in code_names(tree) if id(node) not in declared}
    # werkzeug's routing errors and gunicorn's own refusals become codes from their reason phrase
    # (web.errors._describe, server.gunicorn_errors.write_gunicorn_error).
    codes |= {"not_found", "method_not_allowed"}
    base = Path(gunicorn.workers.base.__file__).read_text()
    reasons = set(re.findall(r'reason = "([^"]+)"', base))
    # gunicorn's 500 and 501 carry its default "Bad Request" reason, which write_gunicorn_error replaces.
    reasons |= {HTTPStatus(status).phrase for status in (500, 501)}
    return codes | {reason.lower().replace(" ", "_") for reason in reasons}


def test_every_error_code_is_declared_produced_and_documented(spec):
    """The table has no dead entries, and nothing reaches a client that the table (and so the document) lacks."""
    produced, declared = produced_error_codes(), {code.id for code in Code}
    assert {"empty_request", "unsupported_image", "empty_text", "worker_timeout", "too_many_pixels",
            "invalid_image", "url_fetch_failed", "forbidden", "expectation_failed"} <= produced
    assert produced == declared
    assert set(spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]) == declared
    assert all(f"`{code}`" in spec["info"]["description"] for code in declared)


@pytest.mark.parametrize("method, path, body, code, documented", [
    ("get", "/nowhere", None, "not_found", None),
    ("get", "/syte_test/clip", None, "method_not_allowed", ("/syte_test/clip", "post")),
    ("post", "/encode", b"x" * (2 * 1024 * 1024), "request_too_large", ("/encode", "post")),
    ("get", "/docs/assets/nothing.js", None, "not_found", ("/docs/assets/{filename}", "get")),
])
def test_werkzeug_codes_are_documented_for_the_operation(settings, encoder, spec, method, path, body, code,
                                                         documented):
    client = create_app(Settings(**{**vars(settings), "max_request_mb": 1, "max_image_mb": 1}), encoder).test_client()
    response = getattr(client, method)(path, data=body, content_type="application/json")
    assert response.get_json()["error"]["code"] == code
    assert code in CODES
    if documented:
        assert code in documented_codes(spec["paths"][documented[0]][documented[1]])


def documented_codes(operation: dict) -> set[str]:
    """The codes an operation's error responses list."""
    return {code for status, response in operation["responses"].items() if status.startswith(("4", "5"))
            for code in response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"][
                "properties"]["code"]["enum"]}


def test_each_operation_lists_the_codes_its_view_declares(app, spec):
    """The document reads each route's codes from its view (`@answers`), and adds only those every route answers."""
    for rule in app.url_map.iter_rules():
        for method in rule.methods - IGNORED_METHODS:
            operation = spec["paths"][openapi_path(rule.rule)][method.lower()]
            declared = {code.id for code in (*codes_of(app.view_functions[rule.endpoint]), *COMMON)}
            assert documented_codes(operation) == declared, (method, rule.rule)


def test_limits_come_from_the_settings(settings, encoder):
    custom = Settings(**{**vars(settings), "max_items": 7, "max_text_words": 9, "max_image_mb": 3})
    spec = create_app(custom, encoder).test_client().get("/openapi.json").get_json()
    assert "**7 items**" in spec["info"]["description"] and "**9 words**" in spec["info"]["description"]
    assert spec["components"]["schemas"]["Items"]["maxItems"] == 7
    forms = spec["paths"]["/syte_test/clip"]["post"]["requestBody"]["content"]
    assert forms["multipart/form-data"]["schema"]["maxProperties"] == 7
    assert forms["application/x-www-form-urlencoded"]["schema"]["maxProperties"] == 7
    assert "at most 3 MB" in spec["components"]["schemas"]["BlobItem"]["properties"]["img_blob"]["description"]


def test_each_error_response_lists_exactly_codes_of_its_status(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    narrowed = response["content"]["application/json"]["schema"]["allOf"][1]
                    codes = narrowed["properties"]["error"]["properties"]["code"]["enum"]
                    assert {CODES[code].status for code in codes} == {int(status)}, (path, method, status)


def examples(spec: dict):
    """(where, schema, example) for every example of a request or response body."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            bodies = [("request", operation.get("requestBody", {}))]
            bodies += [(status, response) for status, response in operation["responses"].items()]
            for where, body in bodies:
                for media_type, media in body.get("content", {}).items():
                    if "example" in media:
                        yield f"{method} {path} {where} {media_type}", media["schema"], media["example"]


def test_examples_are_valid_against_their_schemas(spec):
    found = list(examples(spec))
    assert len(found) > 20
    for where, schema, example in found:
        # The document's components ride along so that "#/components/..." resolves.
        validator = Draft202012Validator({"allOf": [schema], "components": spec["components"]})
        errors = [error.message for error in validator.iter_errors(example)]
        assert errors == [], where


def test_examples_are_accepted_by_the_service(client, spec):
    """The request examples are real requests: the service answers them with 200."""
    for path in ("/encode", "/rank"):
        example = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]
        assert client.post(path, json=example).status_code == 200, path
    forms = spec["paths"]["/syte_test/clip"]["post"]["requestBody"]["content"]
    assert set(forms) == {"multipart/form-data", "application/x-www-form-urlencoded"}
    for content_type, media in forms.items():
        response = client.post("/syte_test/clip", data=media["example"], content_type=content_type)
        assert response.status_code == 200, content_type


def test_urlencoded_bodies_are_documented_as_texts_only(spec):
    """No image field in the urlencoded schema: an image-<id> there is refused (image_not_a_file)."""
    operation = spec["paths"]["/syte_test/clip"]["post"]
    schema = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert list(schema["properties"]) == ["text-1"]
    assert [pattern.split("-")[0] for pattern in schema["patternProperties"]] == ["^text"]
    assert schema["additionalProperties"] is False
    assert "image_not_a_file" in operation["responses"]["400"]["description"]
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"text-1": "a dog", "text-x_2": "a cat"})
    assert not validator.is_valid({"image-1": "photo.jpg"})


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


DOCS_ASSET_TYPES = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
                    "favicon-32x32.png": "image/png", "clipsvc-docs.js": "text/javascript"}


def test_docs_page_loads_only_its_own_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]  # scripts: 'self' only, no inline
    links = Links()
    links.feed(response.text)
    assert len(links.urls) == 4
    assert "<script>" not in response.text and "style=" not in response.text
    for url in links.urls:
        assert url.startswith("/docs/assets/") and "//" not in url, url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.mimetype == DOCS_ASSET_TYPES[url.rsplit("/", 1)[1]] and asset.content_length > 0, url
        assert asset.headers["X-Content-Type-Options"] == "nosniff"


def test_docs_initializer_points_at_the_document_and_nowhere_else(client):
    script = client.get(f"/docs/assets/{docs.INITIALIZER}").text
    assert '"/openapi.json"' in script
    assert "validatorUrl: null" in script and "http" not in script


def test_files_outside_the_list_are_not_served(client):
    for name in ("index.html", "..%2F__init__.py", "swagger-ui.js.map"):
        assert client.get(f"/docs/assets/{name}").status_code == 404


def test_with_api_keys_the_document_declares_bearer_and_the_401s(settings, encoder, spec):
    keyed = create_app(Settings(**{**vars(settings), "api_keys": ("a-key-of-sixteen+",)}), encoder)
    secured = keyed.test_client().get("/openapi.json").get_json()
    validate(secured, cls=OpenAPIV31SpecValidator)
    assert secured["components"]["securitySchemes"] == {"apiKey": {
        "type": "http", "scheme": "bearer", "description": secured["components"]["securitySchemes"]["apiKey"][
            "description"]}}
    assert "securitySchemes" not in spec["components"]  # keys off: no Authorize button, no 401
    open_paths = {openapi_path(rule) for rule in auth.OPEN_RULES}
    for path, item in secured["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert ("401" in operation["responses"]) is (path not in open_paths), (path, method)
            assert operation.get("security") == (None if path in open_paths else [{"apiKey": []}]), (path, method)
            unsecured = spec["paths"][path][method]
            assert "401" not in unsecured["responses"] and "security" not in unsecured
    assert {"/syte_test/clip", "/encode", "/rank", "/meta", "/v1/embeddings", "/v1/models"} <= \
        {path for path, item in secured["paths"].items() if "security" in next(iter(item.values()))}
    v1 = secured["paths"]["/v1/embeddings"]["post"]["responses"]["401"]["content"]["application/json"]
    assert v1["example"]["error"]["code"] == "unauthorized" and "type" in v1["example"]["error"]
    assert "needs an API key" in secured["info"]["description"]
    test_each_error_response_lists_exactly_codes_of_its_status(secured)
    test_examples_are_valid_against_their_schemas(secured)
