"""Weaviate's multi2vec-clip body (POST /vectorize as JSON) -> validated items, so Weaviate can use this service
as its CLIP inference container unchanged.

The body is declared once, as a pydantic model that both validates it and is its OpenAPI schema. Weaviate's Go
client leaves an empty list out (`omitempty`); its 2023 client wrote it as `null`: missing, `null` and `[]` are
the same. The same validators as every other endpoint do the work (json_items, items). Pure: no Flask, no model.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ApiError, Code
from .items import ImageItem, ItemRules, TextItem, check_item_count
from .json_items import Source, decode_sources, image_source, wrong_body

BODY_SHAPE = 'an object {"texts": ["a dog"], "images": ["<base64>"]} (either list may be left out)'
INLINE_IMAGE = 'as base64 in "images"'  # with URL fetching off, what to send instead


class VectorizeRequest(BaseModel):
    """What Weaviate's multi2vec-clip module posts: texts and base64 images, either list missing or null when
    empty. Other keys are ignored, as Weaviate's reference container does."""

    model_config = ConfigDict(strict=True, title="WeaviateVectorizeRequest")

    texts: list[str] | None = Field(None, description="Texts, each held to the same rules as every text here")
    images: list[str] | None = Field(None, description="Image files in base64 (no data: prefix needed)")


@dataclass(frozen=True)
class WeaviateItems:
    """The request's texts and images, each list in the order sent (the answer keeps them apart)."""

    texts: list[TextItem]
    images: list[ImageItem]


def parse_vectorize(body: object, rules: ItemRules) -> WeaviateItems:
    """The shape first (pydantic), then both lists counted together, then every item checked and decoded."""
    try:
        asked = VectorizeRequest.model_validate(body)
    except ValidationError as exc:
        raise _refusal(body, exc) from None
    texts, images = asked.texts or [], asked.images or []
    check_item_count(len(texts) + len(images), rules)
    sources = [Source(f"texts[{i}]", "text", f"texts[{i}]", text) for i, text in enumerate(texts)]
    sources += [image_source(f"images[{i}]", f"images[{i}]", image) for i, image in enumerate(images)]
    items = decode_sources(sources, rules, INLINE_IMAGE)
    return WeaviateItems(items[:len(texts)], items[len(texts):])


def _refusal(body: object, exc: ValidationError) -> ApiError:
    """pydantic's first complaint, in our words: the body, one of its lists, or one item in a list."""
    where = exc.errors()[0]["loc"]
    if not where:
        return ApiError(Code.INVALID_ITEMS, wrong_body(body, BODY_SHAPE))
    name = str(where[0])
    if len(where) == 1:
        return ApiError(Code.INVALID_ITEMS, f"{name} must be a list of strings (or null, or left out)", field=name)
    field = f"{name}[{where[1]}]"
    what = "a text" if name == "texts" else "an image file in base64"
    return ApiError(Code.INVALID_ITEM, f"{field} must be a string: {what}", field=field)
