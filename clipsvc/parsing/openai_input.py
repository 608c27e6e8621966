"""OpenAI's embeddings request -> validated items, so the `openai` SDKs and what is built on them work unchanged.

`input` is a string, a list of strings, or a list that mixes strings with `{"text": ...}` and `{"image": ...}`
objects (the shape multimodal embedding APIs use); an image is a data: URI, an http(s) URL (fetched only
for allow-listed hosts, as `img_uri`) or bare base64. The same validators as every other endpoint do the
work (json_items, items). Pure: no Flask globals, no model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ApiError, Code
from .form import FIELD_ECHO
from .items import Item, ItemRules, check_item_count
from .json_items import Source, decode_sources, image_source, keyed_string, wrong_body
from .options import vector_encoding

PARAMETERS = ("model", "input", "encoding_format", "dimensions", "user")
BODY_SHAPE = 'an object {"model": ..., "input": ...}'
INLINE_IMAGE = 'as {"image": "<base64>"} or {"image": "data:image/png;base64,..."}'  # with URL fetching off


@dataclass(frozen=True)
class EmbeddingsRequest:
    items: list[Item]
    encoding_format: str


def parse_embeddings_request(body: object, rules: ItemRules, served: str, dimensions: int) -> EmbeddingsRequest:
    """The whole JSON body: its options first (cheap), then every item's shape, then the items themselves.

    `served` is the name of the model this server serves, `dimensions` its vectors' size: a request may
    name either, or leave them out, but not ask for another (OpenAI answers another model's name with 404).
    """
    if not isinstance(body, dict):
        raise ApiError(Code.INVALID_INPUT, wrong_body(body, BODY_SHAPE))
    unknown = sorted(set(body) - set(PARAMETERS))
    if unknown:
        raise ApiError(Code.UNKNOWN_PARAMETER, f"Unrecognized request argument supplied: {unknown[0]}; this "
                                               f"endpoint takes {', '.join(PARAMETERS)}", field=unknown[0])
    model, asked, user = body.get("model"), body.get("dimensions"), body.get("user")
    if model is not None:
        check_model(model, served)
    encoding = vector_encoding(body.get("encoding_format"), "encoding_format")
    if asked is not None and (asked != dimensions or isinstance(asked, bool)):
        raise ApiError(Code.INVALID_DIMENSIONS, f"dimensions={asked!r}: this model's vectors have {dimensions} "
                                                "dimensions, and CLIP vectors cannot be shortened; leave it out",
                       field="dimensions")
    if user is not None and not isinstance(user, str):
        raise ApiError(Code.INVALID_INPUT, "user must be a string", field="user")
    return EmbeddingsRequest(parse_input(body.get("input"), rules), encoding)


def check_model(model: object, served: str) -> None:
    """The one model a server serves is named by its directory (/meta's `model`, GET /v1/models' id)."""
    if not isinstance(model, str):
        raise ApiError(Code.INVALID_INPUT, f"model must be a string: {served!r}", field="model")
    if model != served:
        raise ApiError(Code.MODEL_NOT_FOUND, f"The model {model[:FIELD_ECHO]!r} does not exist here; this server "
                                             f"serves {served!r} (GET /v1/models)", field="model")


def parse_input(value: object, rules: ItemRules) -> list[Item]:
    """`input` as items whose ids are their positions (`input[0]`, …), in order."""
    if isinstance(value, str):
        return decode_sources([Source("input", "text", "input", value)], rules, INLINE_IMAGE)
    if not isinstance(value, list) or not value:
        raise ApiError(Code.INVALID_INPUT, "input must be a string or a non-empty list of strings, "
                                           '{"text": ...} or {"image": "<data: URI, URL or base64>"} objects',
                       field="input")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value) or all(
            isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
        raise ApiError(Code.TOKEN_IDS_UNSUPPORTED, "input is token ids; CLIP reads its own tokens, not OpenAI's: "
                                                   "send the texts themselves", field="input")
    check_item_count(len(value), rules)
    return decode_sources([_source(item, f"input[{i}]") for i, item in enumerate(value)], rules, INLINE_IMAGE)


def _source(item: object, field: str) -> Source:
    if isinstance(item, str):
        return Source(field, "text", field, item)
    keyed = keyed_string(item, field, ("text", "image"), Code.INVALID_INPUT)
    if keyed is not None:
        key, name, value = keyed
        return Source(field, "text", name, value) if key == "text" else image_source(field, name, value)
    raise ApiError(Code.INVALID_INPUT, f'{field} must be a string, {{"text": ...}} or {{"image": ...}}', field=field)
