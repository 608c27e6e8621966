"""GET /: a demo page that ranks captions against an image through POST /rank, with no assets from elsewhere."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

from ..errors import Code
from .context import answers
from .pages import harden, send_asset

ASSETS = Path(__file__).with_name("demo_assets")
# Only this app's own files: no inline script or style, no other origin, not framable. blob: is the image preview.
CSP = ("default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")

bp = Blueprint("demo", __name__)


harden(bp, CSP)


@bp.get("/")
def page() -> Response:
    return asset("index.html")


@bp.get("/demo/<path:name>")
@answers(Code.NOT_FOUND)
def asset(name: str) -> Response:
    """A file of demo_assets/ with a known type."""
    return send_asset(ASSETS, name)
