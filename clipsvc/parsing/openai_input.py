"""OpenAI's embeddings request, declared once as a model, -> validated items, so the `openai` SDKs and what is
built on them work unchanged.

`input` is a string, a list of strings, or a list that mixes strings with `{"text": ...}` and `{"image": ...}`
objects (the shape multimodal embedding APIs use); an image is a data: URI, an http(s) URL (fetched only for
allow-listed hosts, as `img_uri`) or bare base64. The same validators as every other endpoint do the work
(`sources`, `items`). Pure: no Flask globals, no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypedDict  # pydantic reads its fields' Annotated metadata on any Python

from ..errors import ApiError, Code
from .form import FIELD_ECHO
from .items import Item, ItemRules, check_item_count
from .options import ENCODINGS, vector_encoding
from .shapes import STRICT, Flaw, Strict, checked, one_of, sole_key, wrong_body
from .sources import Source, decode_sources, image_source

BODY_SHAPE = 'an object {"model": ..., "input": ...}'
INPUT_SHAPE = ('a string or a non-empty list of strings, {"text": ...} or {"image": "<data: URI, URL or base64>"} '
               'objects')
INLINE_IMAGE = 'as {"image": "<base64>"} or {"image": "data:image/png;base64,..."}'  # with URL fetching off


class TextInput(TypedDict):
    __pydantic_config__ = STRICT
    text: str


class ImageInput(TypedDict):
    __pydantic_config__ = STRICT
    image: Annotated[str, Field(description="data: URI, base64 or URL")]


InputItem = one_of({"string": str, "text": TextInput, "image": ImageInput},
                   lambda value: "string" if isinstance(value, str) else sole_key(value, ("text", "image")),
                   'A string, {"text": ...} or {"image": ...}')
Input = one_of({"string": str, "list": Annotated[list[InputItem], Field(min_length=1)]},
               lambda value: "string" if isinstance(value, str) else "list" if isinstance(value, list) else None,
               "A text, or a list of texts and images")


class EmbeddingsRequest(Strict):
    """OpenAI's embeddings request; `model` may be left out."""

    model: str | None = None
    input: Input
    encoding_format: Literal[ENCODINGS] | None = Field(None, json_schema_extra={"default": ENCODINGS[0]})
    # A float, so that 512.0 is 512 as before; JSON Schema's integer is any number without a fraction.
    dimensions: float | None = Field(None, description="Only the model's own size is accepted",
                                     json_schema_extra={"anyOf": [{"type": "integer"}, {"type": "null"}]})
    user: str | None = None


PARAMETERS = tuple(EmbeddingsRequest.model_fields)


@dataclass(frozen=True)
class ParsedEmbeddings:
    """What a checked request asks for: its items, in order, and how to write the vectors."""

    items: list[Item]
    encoding_format: str


def parse_embeddings_request(body: object, rules: ItemRules, served: str,
                             dimensions: int) -> ParsedEmbeddings:
    """The whole JSON body: its shape first (every field's and item's), then the items themselves.

    `served` is the name of the model this server serves, `dimensions` its vectors' size: a request may
    name either, or leave them out, but not ask for another (OpenAI answers another model's name with 404).
    """
    if isinstance(body, dict) and isinstance(body.get("input"), list):  # counted before pydantic reads an item
        check_item_count(len(body["input"]), rules)
    asked = checked(EmbeddingsRequest, body, lambda flaws: _refusal(flaws, body, served, dimensions))
    _check_options(body, set(), served, dimensions)
    if isinstance(asked.input, str):
        sources = [Source("input", "text", "input", asked.input)]
    else:
        sources = [_source(item, i) for i, item in enumerate(asked.input)]
    return ParsedEmbeddings(decode_sources(sources, rules, INLINE_IMAGE), vector_encoding(asked.encoding_format))


def check_model(model: object, served: str) -> None:
    """The one model a server serves is named by its directory (/meta's `model`, GET /v1/models' id)."""
    if not isinstance(model, str):
        raise ApiError(Code.INVALID_INPUT, f"model must be a string: {served!r}", field="model")
    if model != served:
        raise ApiError(Code.MODEL_NOT_FOUND, f"The model {model[:FIELD_ECHO]!r} does not exist here; this server "
                                             f"serves {served!r} (GET /v1/models)", field="model")


def _source(item: str | TextInput | ImageInput, i: int) -> Source:
    field = f"input[{i}]"
    if isinstance(item, str):
        return Source(field, "text", field, item, i)
    if "text" in item:
        return Source(field, "text", f"{field}.text", item["text"], i)
    return image_source(field, f"{field}.image", item["image"], i)


def _refusal(flaws: list[Flaw], body: object, served: str, dimensions: int) -> ApiError:
    """Unknown parameters first (the first by name), then the options, each by its own check, then `input`."""
    unknown = sorted(str(flaw.key) for flaw in flaws if flaw.kind == "extra_forbidden")
    if unknown:
        return ApiError(Code.UNKNOWN_PARAMETER, f"Unrecognized request argument supplied: {unknown[0]}; this "
                                               f"endpoint takes {', '.join(PARAMETERS)}", field=unknown[0])
    if not flaws[0].loc:
        return ApiError(Code.INVALID_INPUT, wrong_body(body, BODY_SHAPE))
    _check_options(body, {flaw.loc[0] for flaw in flaws}, served, dimensions)
    flaw = flaws[0]  # in `input`: the options passed
    if flaw.index is None:
        return ApiError(Code.INVALID_INPUT, f"input must be {INPUT_SHAPE}", field="input")
    value = body["input"]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value) or all(
            isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
        return ApiError(Code.TOKEN_IDS_UNSUPPORTED, "input is token ids; CLIP reads its own tokens, not OpenAI's: "
                                                    "send the texts themselves", field="input")
    path = flaw.path()
    what = 'a string, {"text": ...} or {"image": ...}' if isinstance(flaw.key, int) else "a string"
    return ApiError(Code.INVALID_INPUT, f"{path} must be {what}", field=path, index=flaw.index)


def _check_options(body: dict, flawed: set, served: str, dimensions: int) -> None:
    """The options in the order they are read, whether the model found them `flawed` (their type) or not (their
    value may still be refused: another model's name, another size)."""
    if body.get("model") is not None:
        check_model(body["model"], served)
    if "encoding_format" in flawed:
        vector_encoding(body["encoding_format"], "encoding_format")  # raises: neither float nor base64
    if "dimensions" in flawed or body.get("dimensions", dimensions) not in (None, dimensions):
        raise _dimensions(body["dimensions"], dimensions)
    if "user" in flawed:
        raise ApiError(Code.INVALID_INPUT, "user must be a string", field="user")


def _dimensions(asked: object, dimensions: int) -> ApiError:
    return ApiError(Code.INVALID_DIMENSIONS, f"dimensions={asked!r}: this model's vectors have {dimensions} "
                                             "dimensions, and CLIP vectors cannot be shortened; leave it out",
                    field="dimensions")
