"""What the app's browser pages (demo, API docs) share: their own assets only, typed by us, never sniffed."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

# Our own table, not the host's mimetypes (some map .js to text/plain): with nosniff a wrong type stops the script.
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def harden(bp: Blueprint, csp: str) -> None:
    """Every response of `bp`, its 404s too, carries `csp` and nosniff: with a wrong type a script will not run."""

    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    bp.after_request(headers)


def send_asset(directory: Path, name: str, **options: object) -> Response:
    """A file of `directory` with a type from TYPES, else 404; send_from_directory refuses paths that leave it."""
    mimetype = TYPES.get(Path(name).suffix)
    if mimetype is None:
        abort(404)
    return send_from_directory(directory, name, mimetype=mimetype, **options)
