"""The OpenAPI 3.1 document of this service, built per app from its Settings so the limits are the real ones.

Plain Python data: `parts` builds the repeated shapes, `paths` and `openai` the operations, `schemas` the
components. The error codes, their statuses and which endpoints answer them come from `clipsvc.errors`;
the limits from the settings.
"""

from __future__ import annotations

from ... import __version__
from ...errors import Code
from ...settings import Settings
from .openai import openai_components, openai_paths
from .paths import embedding_paths, service_paths
from .schemas import components


def build_spec(settings: Settings) -> dict:
    """The whole document for an app running with `settings`."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "clipsvc", "version": __version__, "description": _overview(settings)},
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": {**embedding_paths(settings), **openai_paths(settings), **service_paths()},
        "components": merge(components(settings), openai_components()),
    }


TAGS = {
    "embeddings": "CLIP embeddings and similarity: the multipart endpoint and the BentoML-compatible JSON API",
    "openai": "OpenAI's embeddings API (`/v1`), for the openai SDKs and what is built on them; errors in OpenAI's "
              "shape",
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
        f"**{settings.max_text_words} words** per text, **{settings.max_image_mb:g} MB** per image, "
        f"**{settings.max_image_pixels} pixels** per image and **{settings.max_request_mb:g} MB** per request body.\n\n"
        "Every error, from bad input to an unknown path, has the same JSON body (`Error`) and the `request_id` "
        "header.\n\n| status | code | when |\n| --- | --- | --- |\n" + rows
    )


def merge(first: dict, second: dict) -> dict:
    """Components by kind (schemas, parameters, headers), the second's added to the first's."""
    return {kind: {**first.get(kind, {}), **second.get(kind, {})} for kind in {**first, **second}}
