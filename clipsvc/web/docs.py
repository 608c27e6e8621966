"""GET /openapi.json and GET /docs: the API document and Swagger UI, every asset served by this app."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify, url_for
from swagger_ui_bundle import swagger_ui_path

from ..errors import Code
from .context import answers
from .openapi import build_spec
from .pages import harden, send_asset

# The Swagger UI files the page loads; the package's other files are not served.
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
INITIALIZER = "clipsvc-docs.js"  # ours: starts Swagger UI on /openapi.json (no inline script under the CSP)
# Swagger UI sets inline styles (hence 'unsafe-inline' for styles only) and its CSS has data: SVG icons.
CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>clipsvc API</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""
# validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
INIT = """window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: {spec}, dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
  }});
}});
"""

bp = Blueprint("docs", __name__)


harden(bp, CSP)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_spec(current_app))


@bp.get("/docs")
def docs() -> Response:
    asset_url = {name: url_for("docs.asset", filename=name) for name in (*ASSETS, INITIALIZER)}
    html = PAGE.format(css=asset_url["swagger-ui.css"], icon=asset_url["favicon-32x32.png"],
                       bundle=asset_url["swagger-ui-bundle.js"], init=asset_url[INITIALIZER])
    return Response(html, mimetype="text/html")


@bp.get("/docs/assets/<filename>")
@answers(Code.NOT_FOUND)
def asset(filename: str) -> Response:
    if filename == INITIALIZER:
        return Response(INIT.format(spec=json.dumps(url_for("docs.openapi"))), mimetype="text/javascript")
    if filename not in ASSETS:
        abort(404)
    return send_asset(Path(swagger_ui_path), filename, max_age=3600)
