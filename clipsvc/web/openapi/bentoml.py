"""BentoML's operations (web.bentoml): POST /encode and /rank with their JSON items, and POST /vectorize."""

from __future__ import annotations

from ...parsing.images import SUPPORTED_LIST
from ...parsing.json_items import Items, RankRequest
from ...settings import Settings
from .jina import envelope_body, envelope_ok
from .parts import EXAMPLE_PNG, Routes, error_responses, json_content, merge, model_schemas, ok, operation, ref
from .weaviate import vectorize_errors, with_weaviate_answer, with_weaviate_body


def paths(settings: Settings, routes: Routes) -> dict:
    return {
        "/encode": {"post": operation(
            "embeddings", "Embed a list of items (BentoML's /encode)",
            "One unit vector per item, in order. (clip-as-service's envelope: as POST /post with /encode.)",
            {"200": envelope_ok(ok("One vector per item", json_content(
                {"type": "array", "items": ref("Vector")}, [[0.0213, -0.0071, 0.0342], [0.0105, 0.0342, -0.0118]]))),
             **error_responses(routes.codes["bentoml.encode"])},
            query=("encoding",), requestBody=envelope_body({"required": True, "content": json_content(
                ref("Items"), ENCODE_EXAMPLE)}, ENCODE_EXAMPLE),
        )},
        "/rank": {"post": operation(
            "embeddings", "Rank candidates against each query (BentoML's /rank)",
            "Per query, the softmax over the candidates of the cosines times the model's logit_scale "
            f"(CLIP's zero-shot rule), and the cosines. Queries and candidates count together against "
            f"the limit of {settings.max_items} items. (clip-as-service's envelope: as POST /post with /rank.)",
            {"200": envelope_ok(ok("Probabilities and cosines, one row per query, one column per candidate",
                                   json_content(ref("RankResponse"), {"probabilities": [[0.996, 0.004]],
                                                                      "cosine_similarities": [[0.2298, 0.1687]]}))),
             **error_responses(routes.codes["bentoml.rank_candidates"])},
            requestBody=envelope_body({"required": True, "content": json_content(ref("RankRequest"))}, RANK_EXAMPLE),
        )},
        "/vectorize": {"post": operation(
            "compat", "Embed one image sent as the raw body (BentoML's image vectorizer), or Weaviate's JSON",
            f"The body is the image file itself ({SUPPORTED_LIST}, at most {settings.max_image_mb:g} MB), whatever "
            "its Content-Type says: the content decides. The answer is the image's unit vector, as every endpoint "
            "here returns (the seed's example shows an unnormalised feature; cosines are then plain dot products). "
            "A JSON body (application/json, or no Content-Type and a body starting with `{`) is Weaviate's "
            "multi2vec-clip request instead: texts and base64 images in, their unit vectors out, errors as "
            '`{"error": "<message>"}`.',
            {"200": with_weaviate_answer(ok("The image's unit vector (Weaviate's JSON: its vectors)", json_content(
                {"type": "object", "required": ["vector"], "additionalProperties": False,
                 "properties": {"vector": {"type": "array", "items": {"type": "number"}}}},
                {"vector": [0.0213, -0.0071, 0.0342]}))),
             **vectorize_errors(routes.codes["bentoml.vectorize"])},
            requestBody=with_weaviate_body({"required": True, "content": {
                "image/*": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}),
        )},
    }


def components(settings: Settings, routes: Routes) -> dict:
    """The request bodies from their models (parsing.json_items); the answer's schema here."""
    return merge(model_schemas(settings, Items, RankRequest), {"schemas": {
        "RankResponse": {"type": "object", "required": ["probabilities", "cosine_similarities"], "properties": {
            "probabilities": {"type": "array", "items": {"type": "array", "items": {
                "type": "number", "minimum": 0, "maximum": 1}}},
            "cosine_similarities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}},
    }})


RANK_EXAMPLE = {"queries": [{"img_blob": EXAMPLE_PNG}],
                "candidates": [{"text": "picture of a dog"}, {"text": "picture of a cat"}]}
ENCODE_EXAMPLE = [{"text": "picture of a dog"}, {"img_blob": EXAMPLE_PNG},
                  {"img_uri": f"data:image/png;base64,{EXAMPLE_PNG}"}]
