"""The CLIP Truss's predict operations (web.truss), one per path it answers on (read from the app), and their
request schema (parsing.truss)."""

from __future__ import annotations

from ...parsing.truss import PredictRequest
from ...settings import Settings
from .parts import (
    EXAMPLE_PNG,
    Routes,
    error_responses,
    json_content,
    model_schemas,
    ok,
    openapi_path,
    operation,
    ref,
    rule_parameters,
)


def paths(settings: Settings, routes: Routes) -> dict:
    found = {}
    for endpoint, rule in routes.of("truss"):
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
             **error_responses(routes.codes[endpoint])},
            requestBody={"required": True, "content": json_content(ref("PredictRequest"), {
                "image_url": f"data:image/png;base64,{EXAMPLE_PNG}", "labels": ["small cat", "not cat", "big cat"]})},
        )}
        parameters = rule_parameters(rule)
        if parameters:
            item["parameters"] = parameters
        found[openapi_path(rule)] = item
    return found


def components(settings: Settings, routes: Routes) -> dict:
    return model_schemas(settings, PredictRequest)
