"""The CLIP Truss's predict request -> validated items: `{"labels": [...], "image_url": ...}` or
`{"labels": [...], "image": <H×W×3 nested list of 0-255 RGB values>}`. Pure: no Flask globals, no model.

The labels pass the one text validator; `image_url` (an http(s) URL on the allow-list, or a data: URI) the
one image path of JSON items; a nested-list image is bounded by the pixel limit from its outer lengths
before any array is made, then checked for shape and range.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from ..errors import ApiError, Code
from ..settings import env_var
from .items import ImageItem, ItemRules, TextItem, check_item_count
from .shapes import Flaw, checked, wrong_body
from .sources import Source, decode_sources

BODY_SHAPE = ('an object {"labels": [...]} with exactly one of "image_url" (a URL or data: URI) or "image" '
              '(H x W x 3 RGB values)')
INLINE_IMAGE = 'as a data: URI in image_url, or as "image" (H x W x 3 RGB values)'  # with URL fetching off
Pixel = Annotated[list[Annotated[float, Field(ge=0, le=255)]], Field(min_length=3, max_length=3)]


class PredictRequest(BaseModel):
    """The CLIP Truss's predict request"""

    model_config = ConfigDict(strict=True, json_schema_extra={
        "oneOf": [{"required": ["image_url"]}, {"required": ["image"]}]})
    labels: list[str] = Field(min_length=1, description="The labels to score; unique: they key the answer",
                              json_schema_extra={"uniqueItems": True})
    image_url: str | None = Field(None, description="An http(s) URL on the operator's allow-list, or a data: URI")
    # Up to a million numbers: typed here for the document, checked by numpy (pixels_image), ~10x faster.
    image: SkipValidation[Annotated[list[Annotated[list[Pixel], Field(min_length=1)]], Field(min_length=1)] | None] = (
        Field(None, description="Rows of [r, g, b] pixels, values from 0 to 255, at most {max_image_pixels} pixels"))


def parse_predict(body: object, rules: ItemRules) -> tuple[ImageItem, list[TextItem]]:
    """The image and its labels, in the order sent; labels must be unique (they key the answer)."""
    if not isinstance(body, dict):
        raise ApiError(Code.INVALID_ITEMS, wrong_body(body, BODY_SHAPE))
    if ("image" in body) == ("image_url" in body):
        raise ApiError(Code.INVALID_ITEMS, f"The body must be {BODY_SHAPE}")
    asked = checked(PredictRequest, body, _refusal)
    labels = asked.labels
    if len(set(labels)) != len(labels):
        raise ApiError(Code.INVALID_ITEMS, "labels must be unique: they are the keys of the answer", field="labels")
    check_item_count(len(labels) + 1, rules)
    texts = decode_sources([Source(label, "text", f"labels[{i}]", label, i) for i, label in enumerate(labels)],
                           rules, INLINE_IMAGE)
    if "image" in body:
        return ImageItem("image", pixels_image(body["image"], rules)), texts
    if asked.image_url is None:
        raise ApiError(Code.INVALID_ITEM, "image_url must be a string", field="image_url")
    (image,) = decode_sources([Source("image", "img_uri", "image_url", asked.image_url)], rules, INLINE_IMAGE)
    return image, texts


def _refusal(flaws: list[Flaw]) -> ApiError:
    if flaws[0].loc[0] == "image_url":
        return ApiError(Code.INVALID_ITEM, "image_url must be a string", field="image_url")
    return ApiError(Code.INVALID_ITEMS, "labels must be a non-empty list of strings", field="labels")


def pixels_image(value: object, rules: ItemRules) -> Image.Image:
    """An RGB picture from rows of [r, g, b] pixels, refused before conversion when it is too large."""
    if not isinstance(value, list) or not value or not isinstance(value[0], list) or not value[0]:
        raise _bad("image must be a non-empty list of rows, each a list of [r, g, b] pixels")
    height, width = len(value), len(value[0])
    limit = rules.settings.max_image_pixels
    if height * width > limit:
        raise ApiError(Code.TOO_MANY_PIXELS, f"image has {width}x{height} = {width * height} pixels; the limit is "
                                             f"{limit} ({env_var('max_image_pixels')})", field="image")
    try:
        array = np.array(value, dtype=np.float64)
    except (ValueError, TypeError):  # ragged rows or pixels, or something that is not a number
        raise _bad("image must be H x W x 3 numbers: every row as long as the first, every pixel [r, g, b]") from None
    if array.shape != (height, width, 3):
        raise _bad(f"image must be H x W x 3 (rows of [r, g, b] pixels), not {' x '.join(map(str, array.shape))}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise _bad("image values must be numbers from 0 to 255")
    return Image.fromarray(array.round().astype(np.uint8), "RGB")


def _bad(message: str) -> ApiError:
    return ApiError(Code.INVALID_PIXELS, message, field="image")
