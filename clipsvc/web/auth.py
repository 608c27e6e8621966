"""Optional API keys (CLIP_API_KEYS, CLIP_API_KEYS_FILE): with keys set, every route but the probes, the metrics
and the browser pages needs `Authorization: Bearer <key>`, compared in constant time, never logged or echoed."""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, request

from ..errors import ApiError, Code
from ..settings import Settings

# Open even with keys on: the probes (kubelet, Docker's HEALTHCHECK, Weaviate's), the scraper, and what a browser loads
# before its user can type a key (the pages, their files, the API document). Rules as werkzeug spells them. Every
# other route needs a key, so a route added later is closed until it is listed here.
OPEN_RULES = frozenset({"/livez", "/readyz", "/.well-known/live", "/.well-known/ready", "/metrics", "/openapi.json",
                        "/docs", "/docs/assets/<filename>", "/", "/demo/<path:name>"})
SCHEME = "bearer"  # what /openapi.json declares, so Swagger UI's Authorize button sends it
CHALLENGE = 'Bearer realm="clipsvc"'


class Unauthorized(ApiError):
    """401 with the challenge RFC 6750 asks for; `invalid`: a key was sent, but not an accepted one."""

    def __init__(self, message: str, invalid: bool):
        super().__init__(Code.UNAUTHORIZED, message)
        self.challenge = CHALLENGE + (', error="invalid_token"' if invalid else "")

    def get_headers(self, *args: object, **kwargs: object) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), ("WWW-Authenticate", self.challenge)]


def keys_required(settings: Settings) -> bool:
    return bool(settings.api_keys or settings.api_keys_from_file)


def protected(rule: str) -> bool:
    """Whether the route `rule` needs a key when keys are on."""
    return rule not in OPEN_RULES


def _digest(key: str) -> bytes:
    # Digests have one length, so compare_digest's time says nothing about a key's length either.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeys:
    """The accepted keys, held as digests, and the check every protected request passes."""

    def __init__(self, settings: Settings):
        self._digests = [_digest(key) for key in dict.fromkeys(settings.api_keys + settings.api_keys_from_file)]

    def init_app(self, app: Flask) -> None:
        """After the request-id hook (registered first), so a 401 still carries the client's id."""
        if self._digests:
            app.before_request(self._check)

    def accepts(self, key: str) -> bool:
        """Compared with every key, with no early exit, in constant time per key."""
        given, matched = _digest(key), False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return matched

    def _check(self) -> None:
        # Unknown paths and methods get their own 404/405; a CORS preflight never carries credentials.
        if request.url_rule is None or request.method == "OPTIONS" or not protected(request.url_rule.rule):
            return
        scheme, _, key = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != SCHEME or not key.strip():
            raise Unauthorized("This server needs an API key: send it as the header `Authorization: Bearer <key>`.",
                               invalid=False)
        if not self.accepts(key.strip()):
            raise Unauthorized("The API key sent is not one this server accepts.", invalid=True)
