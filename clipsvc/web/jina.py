"""POST /post: clip-as-service over HTTP (jina's gateway API), so its `clip_client.Client("http://...")` works
unchanged. The answer is web.envelope's, shared with BentoML's /encode and /rank, which take the same envelope."""

from __future__ import annotations

from flask import Blueprint

from .context import answers, json_body
from .envelope import ENVELOPE_CODES, answer_envelope

bp = Blueprint("jina", __name__)


@bp.post("/post")
@answers(*ENVELOPE_CODES)
def post() -> dict:
    """Read as JSON whatever its Content-Type says (`curl -d` sends a form type)."""
    return answer_envelope(json_body(any_type=True))
