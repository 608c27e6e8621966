"""Other CLIP servers' operations: BentoML's image vectorizer and the CLIP Truss's predict paths."""

from __future__ import annotations

from ...errors import PREDICT_CODES, VECTORIZE_CODES
from ...parsing.images import SUPPORTED_LIST
from ...settings import Settings
from ..compat import TRUSS_PATHS
from .parts import EXAMPLE_PNG, error_responses, json_content, ok, openapi_path, operation, ref, rule_parameters


def compat_paths(settings: Settings) -> dict:
    vectorize = {"post": operation(
        "compat", "Embed one image sent as the raw body (BentoML's image vectorizer)",
        f"The body is the image file itself ({SUPPORTED_LIST}, at most {settings.max_image_mb:g} MB), whatever its "
        "Content-Type says: the content decides. The answer is the image's unit vector, as every endpoint here "
        "returns (the seed's example shows an unnormalised feature; cosines are then plain dot products).",
        {"200": ok("The image's unit vector", json_content(
            {"type": "object", "required": ["vector"], "additionalProperties": False,
             "properties": {"vector": {"type": "array", "items": {"type": "number"}}}},
            {"vector": [0.0213, -0.0071, 0.0342]})),
         **error_responses(VECTORIZE_CODES)},
        requestBody={"required": True, "content": {"image/*": {"schema": {"type": "string", "format": "binary"}},
                                                   "application/octet-stream": {"schema": {
                                                       "type": "string", "format": "binary"}}}},
    )}
    paths = {"/vectorize": vectorize}
    for rule in TRUSS_PATHS:
        item = {"post": operation(
            "compat", "Zero-shot labels for one image (the CLIP Truss's predict)",
            "`labels` (unique strings) and exactly one of `image_url` (an http(s) URL on the operator's allow-list, "
            "or a data: URI) or `image` (rows of [r, g, b] values from 0 to 255, at most "
            f"{settings.max_image_pixels} pixels). The answer maps each label, in order, to the softmax over the "
            "labels of the model's logit_scale times the cosine (as /rank). The body is read as JSON whatever its "
            "Content-Type says (`curl -d` sends a form type).",
            {"200": ok("Each label's probability", json_content(
                {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
                {"small cat": 0.12, "not cat": 0.03, "big cat": 0.85})),
             **error_responses(PREDICT_CODES)},
            requestBody={"required": True, "content": json_content(ref("PredictRequest"), {
                "image_url": f"data:image/png;base64,{EXAMPLE_PNG}", "labels": ["small cat", "not cat", "big cat"]})},
        )}
        parameters = rule_parameters(rule)
        if parameters:
            item["parameters"] = parameters
        paths[openapi_path(rule)] = item
    return paths


def compat_components() -> dict:
    labels = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"}}
    pixel = {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number", "minimum": 0, "maximum": 255}}
    return {"schemas": {"PredictRequest": {
        "type": "object", "required": ["labels"], "properties": {
            "labels": labels, "image_url": {"type": "string"},
            "image": {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": pixel}}},
        "oneOf": [{"required": ["image_url"]}, {"required": ["image"]}]}}}
