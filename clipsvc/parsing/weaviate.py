"""Weaviate's multi2vec-clip body (POST /vectorize as JSON) -> validated items, so Weaviate can use this service
as its CLIP inference container unchanged.

The body is declared once, as a pydantic model that both validates it and is its OpenAPI schema. Weaviate's Go
client leaves an empty list out (`omitempty`); its 2023 client wrote it as `null`: missing, `null` and `[]` are
the same. The strings are decoded as every JSON body's are (`sources`). Pure: no Flask, no model.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ConfigDict, Field

from ..errors import ApiError, Code
from ..settings import MAX_TEXT_CHARS
from .items import ImageItem, ItemRules, TextItem, check_item_count
from .shapes import Flaw, Strict, checked, wrong_body
from .sources import Source, decode_sources, image_source

BODY_SHAPE = 'an object {"texts": ["a dog"], "images": ["<base64>"]} (either list may be left out)'
INLINE_IMAGE = 'as base64 in "images"'  # with URL fetching off, what to send instead


class WeaviateVectorizeRequest(Strict):
    """What Weaviate's multi2vec-clip module posts: texts and base64 images, either list missing or null when
    empty; at most {max_items} of them together. Other keys are ignored, as Weaviate's reference container does.
    Nothing asked: two empty lists."""

    model_config = ConfigDict(extra="ignore")

    texts: list[str] | None = Field(None, description=f"Texts, each at most {{max_text_words}} words and "
                                                      f"{MAX_TEXT_CHARS} characters, as every text here")
    images: list[str] | None = Field(None, description="Image files in base64 (no data: prefix needed), each at "
                                                       "most {max_image_mb:g} MB decoded")


@dataclass(frozen=True)
class WeaviateItems:
    """The request's texts and images, each list in the order sent (the answer keeps them apart)."""

    texts: list[TextItem]
    images: list[ImageItem]


def parse_vectorize(body: object, rules: ItemRules) -> WeaviateItems:
    """The shape first, then both lists counted together, then every item checked and decoded."""
    asked = checked(WeaviateVectorizeRequest, body, lambda flaws: _refusal(flaws[0], body))
    texts, images = asked.texts or [], asked.images or []
    check_item_count(len(texts) + len(images), rules)
    sources = [Source(f"texts[{i}]", "text", f"texts[{i}]", text, i) for i, text in enumerate(texts)]
    sources += [image_source(f"images[{i}]", f"images[{i}]", image, i) for i, image in enumerate(images)]
    items = decode_sources(sources, rules, INLINE_IMAGE)
    return WeaviateItems(items[:len(texts)], items[len(texts):])


def _refusal(flaw: Flaw, body: object) -> ApiError:
    """The body itself, one of its lists, or one item in a list, by where pydantic found the flaw."""
    path = flaw.path()
    if not path:
        return ApiError(Code.INVALID_ITEMS, wrong_body(body, BODY_SHAPE))
    if flaw.index is None:
        return ApiError(Code.INVALID_ITEMS, f"{path} must be a list of strings (or null, or left out)", field=path)
    what = "a text" if path.startswith("texts") else "an image file in base64"
    return ApiError(Code.INVALID_ITEM, f"{path} must be a string: {what}", field=path, index=flaw.index)
