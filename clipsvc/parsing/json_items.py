"""BentoML-style JSON items ({"text"}, {"img_blob"}, {"img_uri": "data:..." or a URL}) -> validated items.

The same validators as the multipart endpoint (`parsing.image_item`, `parsing.text_item`) do the work;
this module only unwraps JSON (and hands allow-listed URLs to `fetch`). Pure: no Flask globals, no model.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import InvalidInput, PayloadTooLarge
from ..settings import Settings
from .fetch import fetch_all
from .form import ImageItem, TextItem, check_item_count, image_item, text_item

ITEM_KEYS = ("text", "img_blob", "img_uri")
_DATA_URI = re.compile(r"data:(?:image/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)", re.DOTALL | re.IGNORECASE)

Item = ImageItem | TextItem


def parse_items(items: object, field: str, settings: Settings, min_side: int | None = None) -> list[Item]:
    """A non-empty JSON list of items; each item's id is its field path, e.g. `queries[0]`."""
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{field or 'The body'} must be a non-empty JSON list of items like "
                           '{"text": "a dog"} or {"img_blob": "<base64>"}', field=field or None,
                           error_code="invalid_items")
    check_item_count(len(items), settings)
    sources = [_source(item, f"{field}[{i}]") for i, item in enumerate(items)]
    # Every item's shape is checked before any URL is fetched; then the URLs are fetched together.
    urls = {name: value for _, key, name, value in sources if key == "img_uri" and _is_url(value)}
    fetched = fetch_all(urls, settings) if urls else {}
    return [_item(source, fetched, settings, min_side) for source in sources]


def _source(item: object, field: str) -> tuple[str, str, str, str]:
    """(item id, key, field path, value) of a well-formed item."""
    if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ITEM_KEYS:
        raise InvalidInput(f"{field} must be an object with exactly one of text, img_blob or img_uri",
                           field=field, error_code="invalid_item")
    (key, value), name = next(iter(item.items())), f"{field}.{next(iter(item))}"
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=name, error_code="invalid_item")
    return field, key, name, value


def _item(source: tuple[str, str, str, str], fetched: dict[str, bytes], settings: Settings,
          min_side: int | None) -> Item:
    field, key, name, value = source
    if key == "text":
        return TextItem(field, text_item(name, value, settings))
    if name in fetched:
        data = fetched[name]
    elif key == "img_blob":
        data = _base64(name, value, settings)
    else:
        data = _data_uri(name, value, settings)
    return ImageItem(field, image_item(name, data, settings, min_side))


def _is_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def _base64(field: str, value: str, settings: Settings) -> bytes:
    if len(value) * 3 // 4 > settings.max_image_bytes + 3:  # refuse before decoding
        raise PayloadTooLarge(f"{field} is larger than {settings.max_image_mb:g} MB (CLIP_MAX_IMAGE_MB)",
                              field=field, error_code="image_too_large")
    compact = "".join(value.split())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_" if "-" in compact
                                or "_" in compact else None, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not valid base64", field=field, error_code="invalid_base64") from None


def _data_uri(field: str, value: str, settings: Settings) -> bytes:
    match = _DATA_URI.fullmatch(value.strip())
    if match is None:
        raise InvalidInput(f"{field} must be a data URI such as data:image/png;base64,<data> or, where the "
                           "operator allows it, an http(s) URL", field=field, error_code="invalid_uri")
    return _base64(field, match["data"], settings)
