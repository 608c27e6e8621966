"""Other CLIP servers' HTTP APIs, so their clients only change the base URL: BentoML's image vectorizer
(POST /vectorize) and the CLIP Truss (POST /v1/models/model:predict, and Baseten's /predict paths).

Each route is a thin adapter: the same parsing, encoder, scoring and serialisation as every other endpoint.
"""

from __future__ import annotations

from flask import Blueprint, request

from ..parsing.items import image_item
from ..parsing.truss import parse_predict
from ..server.logs import note_items
from .extensions import get_encoder, item_rules
from .json_api import json_body
from .scoring import embed_items, rank
from .serialize import labels_body, vector_body

bp = Blueprint("compat", __name__)
# Truss's own server, and the paths Baseten's hosted models answer on.
TRUSS_PATHS = ("/v1/models/model:predict", "/predict", "/model_versions/<version>/predict",
               "/production/predict")


@bp.post("/vectorize")
def vectorize() -> dict:
    """The raw image as the body, whatever its Content-Type says (the content decides, as everywhere)."""
    encoder = get_encoder()
    rules = item_rules(encoder)
    image = image_item("body", request.stream.read(rules.settings.max_image_bytes + 1), rules)
    note_items(1, 0)
    return vector_body(encoder.encode_images([image])[0])


def predict(version: str | None = None) -> dict:
    """Zero-shot labels: the softmax over the labels of logit_scale x cosine, as /rank computes it."""
    encoder = get_encoder()
    image, labels = parse_predict(json_body(any_type=True), item_rules(encoder))
    note_items(1, len(labels))
    rows = embed_items(encoder, [image, *labels])
    probabilities, _ = rank(rows[:1], rows[1:], encoder.info.logit_scale)
    return labels_body([label.id for label in labels], probabilities[0])


for number, path in enumerate(TRUSS_PATHS):
    bp.add_url_rule(path, f"predict_{number}", predict, methods=["POST"])
