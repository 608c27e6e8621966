"""Browsers on other origins (CLIP_CORS_ORIGINS, off by default): preflights answered, responses readable.

A web app served from another origin may call the API only if the response names its origin. With origins set,
an `OPTIONS` preflight from one of them is answered 204 before any other check (it never carries the API key),
allowing the methods and request headers the API reads; every response to such an origin names it and lets
scripts read the request-id headers. Requests from other origins are served as before, without these headers,
so the browser withholds the response from the page.
"""

from __future__ import annotations

from flask import Flask, Response, request

from ..server.request_id import HEADER_NAMES, REPLACED_HEADER
from ..settings import Settings

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = ", ".join((*HEADER_NAMES, "Authorization", "Content-Type"))
EXPOSED_HEADERS = ", ".join((*HEADER_NAMES, REPLACED_HEADER))
PREFLIGHT_CACHE_S = 600  # browsers cache a preflight this long (Chromium caps it at 7200)


class Cors:
    """The origins allowed (or `*`), and the two hooks that answer them."""

    def __init__(self, settings: Settings):
        self.origins = frozenset(settings.cors_origins)

    def init_app(self, app: Flask) -> None:
        """Before the API-key check (registered after this), so a preflight is never refused for lacking a key."""
        if self.origins:
            app.before_request(self._preflight)
            app.after_request(self._headers)

    def allowed(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    def _preflight(self) -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(status=204)
        if self.allowed(request.headers.get("Origin")):
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_CACHE_S)
        return response  # _headers adds the origin; an origin not allowed gets none, and the browser stops there

    def _headers(self, response: Response) -> Response:
        origin = request.headers.get("Origin")
        response.vary.add("Origin")
        if self.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in self.origins else origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
