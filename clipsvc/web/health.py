"""Probes and metadata: liveness never touches the model, readiness says whether it is loaded. Weaviate's
inference-container probes (/.well-known/live, /.well-known/ready) answer the same, as 204."""

from __future__ import annotations

from flask import Blueprint, Response

from .. import __version__
from ..errors import ApiError, Code
from .context import answers, get_encoder, get_settings, loaded_encoder

bp = Blueprint("health", __name__)


@bp.get("/livez")
def livez() -> dict:
    return {"status": "alive"}


@bp.get("/readyz")
@answers(Code.MODEL_NOT_READY)
def readyz() -> dict:
    if loaded_encoder() is None:
        raise ApiError(Code.MODEL_NOT_READY, "The model is not loaded yet")
    return {"status": "ready"}


@bp.get("/.well-known/live")
def weaviate_live() -> Response:
    return Response(status=204)


@bp.get("/.well-known/ready")
@answers(Code.MODEL_NOT_READY)
def weaviate_ready() -> Response:
    """Weaviate polls it at start-up until it answers 2xx."""
    readyz()
    return Response(status=204)


@bp.get("/meta")
@answers(Code.MODEL_NOT_READY)
def meta() -> dict:
    encoder, settings = get_encoder(), get_settings()
    facts, serving = encoder.facts, encoder.serving
    return {
        "model": facts.model_name,
        "model_path": facts.model_path,
        "embedding_dim": facts.embedding_dim,
        "image_size": facts.image_size,
        "max_text_tokens": facts.max_text_tokens,
        "device": serving.device,
        "engine": serving.engine,
        "dtype": serving.dtype,
        "request_threads": settings.request_threads,
        "torch_threads": serving.threads,
        "torch_threads_follow_load": serving.dynamic_threads,
        "packed_weights": serving.packed_weights,
        "precision": serving.precision,
        "precision_cosine": serving.precision_cosine,
        "precision_fallback": serving.precision_fallback,
        "text_cache_size": serving.text_cache_size,
        "batching": serving.batching,
        "max_batch": serving.max_batch,
        "version": __version__,
        "limits": settings.limits(),
    }
