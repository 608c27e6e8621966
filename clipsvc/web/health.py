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
    info = get_encoder().info
    settings = get_settings()
    return {
        "model": info.model_name,
        "model_path": info.model_path,
        "embedding_dim": info.embedding_dim,
        "image_size": info.image_size,
        "max_text_tokens": info.max_text_tokens,
        "device": info.device,
        "dtype": info.dtype,
        "request_threads": settings.request_threads,
        "torch_threads": info.threads,
        "torch_threads_follow_load": info.dynamic_threads,
        "packed_weights": info.packed_weights,
        "precision": info.precision,
        "precision_cosine": info.precision_cosine,
        "precision_fallback": info.precision_fallback,
        "text_cache_size": info.text_cache_size,
        "batching": info.batching,
        "max_batch": info.max_batch,
        "version": __version__,
        "limits": settings.limits(),
    }
