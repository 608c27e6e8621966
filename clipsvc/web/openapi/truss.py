"""The CLIP Truss's predict operations (web.truss), one per path it answers on, and their request schema."""

from __future__ import annotations

from ...settings import Settings
from ..truss import TRUSS_PATHS
from .parts import (
    EXAMPLE_PNG,
    Declared,
    error_responses,
    json_content,
    ok,
    openapi_path,
    operation,
    ref,
    rule_parameters,
)


def paths(settings: Settings, codes: Declared) -> dict:
    found = {}
    for number, rule in enumerate(TRUSS_PATHS):
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
             **error_responses(codes[f"truss.predict_{number}"])},
            requestBody={"required": True, "content": json_content(ref("PredictRequest"), {
                "image_url": f"data:image/png;base64,{EXAMPLE_PNG}", "labels": ["small cat", "not cat", "big cat"]})},
        )}
        parameters = rule_parameters(rule)
        if parameters:
            item["parameters"] = parameters
        found[openapi_path(rule)] = item
    return found


def components(settings: Settings) -> dict:
    labels = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"}}
    pixel = {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number", "minimum": 0, "maximum": 255}}
    return {"schemas": {"PredictRequest": {
        "type": "object", "required": ["labels"], "properties": {
            "labels": labels, "image_url": {"type": "string"},
            "image": {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": pixel}}},
        "oneOf": [{"required": ["image_url"]}, {"required": ["image"]}]}}}
