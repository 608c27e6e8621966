"""What parsing produces, whatever carried the request (a form, JSON): validated images and texts by id.

The validators here are the only ones: multipart files, urlencoded fields, base64 and fetched URLs all end
in `checked_image` (bytes -> a decoded picture) / `checked_text` (-> the cleaned str), against one `ItemRules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from ..errors import ApiError, Code, Rejected
from ..settings import Settings, env_var
from .images import decode_image
from .texts import validate_text


@dataclass(frozen=True)
class ItemRules:
    """What every item is checked against: the operator's limits, and the model's input size (`min_side`): a
    larger image is decoded or reduced to no less than twice that on its short side (None: full size)."""

    settings: Settings
    min_side: int | None = None


@dataclass(frozen=True)
class ImageItem:
    id: str
    image: Image.Image


@dataclass(frozen=True)
class TextItem:
    id: str
    text: str


Item = ImageItem | TextItem


@dataclass(frozen=True)
class ParsedRequest:
    """What a form asks for: images and texts, each list in the order sent (a form parser keeps files and fields
    apart, so `ids` lists image ids first)."""

    images: list[ImageItem] = field(default_factory=list)
    texts: list[TextItem] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """Every id, first appearance first (images before texts of the same request)."""
        return list(dict.fromkeys([i.id for i in self.images] + [t.id for t in self.texts]))

    @property
    def pair_ids(self) -> list[str]:
        texts = {t.id for t in self.texts}
        return [i.id for i in self.images if i.id in texts]


def count_kinds(items: list[Item]) -> tuple[int, int]:
    """(images, texts) among `items`, for the request's log line and counters."""
    images = sum(isinstance(item, ImageItem) for item in items)
    return images, len(items) - images


def check_item_count(count: int, rules: ItemRules) -> None:
    """Refused before anything is decoded: every list of a request counts together."""
    limit = rules.settings.max_items
    if count > limit:
        raise ApiError(Code.TOO_MANY_ITEMS,
                       f"The request has {count} items; the limit is {limit} ({env_var('max_items')})")


def checked_image(field: str, data: bytes, rules: ItemRules) -> Image.Image:
    """The one image validator: the decoded RGB picture, whatever carried the bytes (multipart file, base64 in
    JSON, a fetched URL)."""
    settings = rules.settings
    if len(data) > settings.max_image_bytes:
        raise image_too_large(field, settings)
    try:
        return decode_image(data, settings.max_image_pixels, rules.min_side)
    except Rejected as exc:
        raise exc.at(field) from None


def image_too_large(field: str, settings: Settings) -> ApiError:
    return ApiError(Code.IMAGE_TOO_LARGE, f"{field} is larger than {settings.max_image_mb:g} MB "
                    f"({env_var('max_image_mb')}); send a smaller file", field=field)


def checked_text(field: str, value: str, rules: ItemRules) -> str:
    """The one text validator: the cleaned text, whatever carried the text."""
    try:
        return validate_text(value, rules.settings.max_text_words)
    except Rejected as exc:
        raise exc.at(field) from None
