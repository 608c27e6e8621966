"""The CLIP Truss's predict (POST /v1/models/model:predict, and the paths Baseten's hosted models answer on),
so its clients only change the base URL: zero-shot labels for one image."""

from __future__ import annotations

import numpy as np
from flask import Blueprint

from ..errors import SOURCE_CODES, Code, error_body
from ..parsing.truss import parse_predict
from ..server.logs import note_items
from .context import EMBEDDING_CODES, answers, declare_error_shape, get_encoder, item_rules, json_body
from .scoring import embed_items, rank

bp = Blueprint("truss", __name__)
# The Truss's clients have no error contract of their own: errors keep ours, even on its path under /v1.
declare_error_shape(error_body, blueprint=bp.name)
# Truss's own server, and the paths Baseten's hosted models answer on.
TRUSS_PATHS = ("/v1/models/model:predict", "/predict", "/model_versions/<version>/predict",
               "/production/predict")


@answers(Code.INVALID_JSON, Code.INVALID_ITEMS, Code.INVALID_ITEM, Code.INVALID_PIXELS, *SOURCE_CODES,
         *EMBEDDING_CODES)
def predict(version: str | None = None) -> dict:
    """Zero-shot labels: the softmax over the labels of logit_scale x cosine, as /rank computes it. The body is read
    as JSON whatever its Content-Type says (`curl -d` sends a form type)."""
    encoder = get_encoder()
    image, labels = parse_predict(json_body(any_type=True), item_rules(encoder))
    note_items(1, len(labels))
    rows = embed_items(encoder, [image, *labels]).rows
    probabilities, _ = rank(rows[:1], rows[1:], encoder.facts.logit_scale)
    return labels_body([label.id for label in labels], probabilities[0])


def labels_body(labels: list[str], probabilities: np.ndarray) -> dict:
    """The CLIP Truss's answer: each label, in the order sent, with its zero-shot probability."""
    return {label: float(p) for label, p in zip(labels, probabilities, strict=True)}


for number, path in enumerate(TRUSS_PATHS):
    bp.add_url_rule(path, f"predict_{number}", predict, methods=["POST"])
