"""GET /: a demo page that ranks captions against an image through POST /rank, with no assets from elsewhere."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

from .pages import harden

ASSETS = Path(__file__).with_name("demo")
# Our own table, not the host's mimetypes (some map .js to text/plain): with nosniff a wrong type stops the script.
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
# Only this app's own files: no inline script or style, no other origin, not framable. blob: is the image preview.
CSP = ("default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")

bp = Blueprint("demo", __name__)


harden(bp, CSP)


@bp.get("/")
def page() -> Response:
    return asset("index.html")


@bp.get("/demo/<path:name>")
def asset(name: str) -> Response:
    """A file of clipsvc/demo/ with a known type; send_from_directory refuses paths that leave the folder."""
    mimetype = TYPES.get(Path(name).suffix)
    if mimetype is None:
        abort(404)
    return send_from_directory(ASSETS, name, mimetype=mimetype)
