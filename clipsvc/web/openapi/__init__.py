"""The OpenAPI 3.1 document of an app, built from its settings (so the limits are the real ones) and its views.

Plain Python data, one part per module of web/ that serves routes: `clip`, `bentoml`, `truss`, `jina`, `openai`,
`weaviate` (its probes, and its JSON on BentoML's /vectorize) and `service` (probes, pages, /metrics), each with
its operations (`paths`) and its own schemas (`components`); `schemas` has the shared components, `parts` the
repeated shapes. The error codes and their statuses come from `clipsvc.errors`; which codes each operation answers,
from its view (`web.context.answers`).
"""

from __future__ import annotations

from functools import partial

from flask import Flask

from ... import __version__
from ...errors import Code, error_body
from ...settings import MAX_TEXT_CHARS, Settings
from ..auth import OPEN_RULES, SCHEME, keys_required
from ..context import codes_of, error_shape, settings_of
from . import bentoml, clip, jina, openai, schemas, service, truss, weaviate
from .parts import Routes, error_responses, merge, openapi_path

# In the order Swagger UI lists them within a tag (/docs).
PARTS = (clip, bentoml, truss, jina, openai, weaviate, service)


def build_spec(app: Flask) -> dict:
    """The whole document for `app`."""
    settings = settings_of(app)
    routes = Routes({endpoint: codes_of(view) for endpoint, view in app.view_functions.items()},
                    {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()})
    paths, parts = {}, schemas.components(settings)
    for part in PARTS:
        paths |= part.paths(settings, routes)
        parts = merge(parts, part.components(settings, routes))
    if keys_required(settings):
        blueprints = {openapi_path(rule.rule): rule.endpoint.rpartition(".")[0] or None
                      for rule in app.url_map.iter_rules()}
        paths, parts = _secured(paths, blueprints), parts | {"securitySchemes": SECURITY_SCHEMES}
    return {
        "openapi": "3.1.0",
        "info": {"title": "clipsvc", "version": __version__, "description": _overview(settings)},
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": parts,
    }


# Declared only when keys are on: Swagger UI (/docs) then shows its Authorize button.
SECURITY_SCHEMES = {"apiKey": {"type": "http", "scheme": SCHEME, "description": "One of the server's API keys "
                               "(CLIP_API_KEYS, CLIP_API_KEYS_FILE), sent as `Authorization: Bearer <key>`"}}


def _secured(paths: dict, blueprints: dict[str, str | None]) -> dict:
    """Every operation auth.OPEN_RULES leaves closed needs the key and may answer 401, in the error shape its API
    declared (/v1: OpenAI's)."""
    open_paths = {openapi_path(rule) for rule in OPEN_RULES}
    for path, item in paths.items():
        for method, operation in item.items():
            if path in open_paths or method == "parameters":
                continue
            shape = error_shape(path, blueprints.get(path))
            unauthorized = (weaviate.vectorize_errors if weaviate.speaks_weaviate(path) else error_responses
                            if shape is error_body else partial(openai.v1_errors, shape=shape))
            responses = operation["responses"] | {"401": unauthorized((Code.UNAUTHORIZED,))["401"]}
            operation.update(security=[{"apiKey": []}], responses=dict(sorted(responses.items())))
    return paths


TAGS = {
    "embeddings": "CLIP embeddings and similarity: the multipart endpoint and the BentoML-compatible JSON API",
    "openai": "OpenAI's embeddings API (`/v1`), for the openai SDKs and what is built on them; errors in OpenAI's "
              "shape",
    "compat": "Other CLIP servers' APIs, for their clients: BentoML's image vectorizer, the CLIP Truss and "
              "clip-as-service (POST /post; its envelope on /encode and /rank)",
    "health": "Probes and metadata",
    "docs": "This document, its interactive page, and the demo page",
    "operations": "Prometheus metrics",
}


def _overview(settings: Settings) -> str:
    rows = "\n".join(f"| {code.status} | `{code.id}` | {code.meaning} |" for code in
                     sorted(Code, key=lambda code: code.status))
    return (
        "CLIP image and text embeddings and image-text similarity over HTTP.\n\n"
        f"Limits of this server: at most **{settings.max_items} items** (images + texts) per request, "
        f"**{settings.max_text_words} words** and **{MAX_TEXT_CHARS} characters** per text, "
        f"**{settings.max_image_mb:g} MB** per image, "
        f"**{settings.max_image_pixels} pixels** per image and **{settings.max_request_mb:g} MB** per request body.\n\n"
        "Every error, from bad input to an unknown path, has the same JSON body (`Error`) and the `request_id` "
        "header.\n\n" + (_KEYS_ON if keys_required(settings) else "") +
        "| status | code | when |\n| --- | --- | --- |\n" + rows
    )


_KEYS_ON = ("**This server needs an API key** on every endpoint but the probes, `/metrics` and the pages: send "
            "`Authorization: Bearer <key>` (here: the Authorize button); without one the answer is 401 "
            "`unauthorized`.\n\n")
