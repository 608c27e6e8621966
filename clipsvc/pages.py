"""What the app's browser pages (demo, API docs) share: their own assets only, never sniffed."""

from __future__ import annotations

from flask import Blueprint, Response


def harden(bp: Blueprint, csp: str) -> None:
    """Every response of `bp`, its 404s too, carries `csp` and nosniff: with a wrong type a script will not run."""

    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    bp.after_request(headers)
