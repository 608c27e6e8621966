"""BentoML-style JSON items ({"text"}, {"img_blob"}, {"img_uri": "data:..." or a URL}) -> validated items.

The same validators as the multipart endpoint (`items.image_item`, `items.text_item`) do the work; this
module only unwraps JSON (and hands allow-listed URLs to `fetch`). Pure: no Flask globals, no model.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import ApiError, Code
from .fetch import fetch_all
from .items import ImageItem, Item, ItemRules, TextItem, check_item_count, image_item, image_too_large, text_item

ITEM_KEYS = ("text", "img_blob", "img_uri")
_DATA_URI = re.compile(r"data:(?:image/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)", re.DOTALL | re.IGNORECASE)


def parse_rank(body: object, rules: ItemRules) -> tuple[list[Item], list[Item]]:
    """/rank's `{"queries": [...], "candidates": [...]}`: both lists counted together before anything is decoded."""
    if not isinstance(body, dict):
        raise ApiError(Code.INVALID_ITEMS, 'The body must be an object {"queries": [...], "candidates": [...]}')
    lists = [body.get("queries"), body.get("candidates")]
    check_item_count(sum(len(x) for x in lists if isinstance(x, list)), rules)
    return parse_items(lists[0], "queries", rules), parse_items(lists[1], "candidates", rules)


def parse_items(items: object, field: str, rules: ItemRules) -> list[Item]:
    """A non-empty JSON list of items; each item's id is its field path, e.g. `queries[0]`."""
    if not isinstance(items, list) or not items:
        raise ApiError(Code.INVALID_ITEMS, f"{field or 'The body'} must be a non-empty JSON list of items like "
                                           '{"text": "a dog"} or {"img_blob": "<base64>"}', field=field or None)
    check_item_count(len(items), rules)
    sources = [_source(item, f"{field}[{i}]") for i, item in enumerate(items)]
    # Every item's shape is checked before any URL is fetched; then the URLs are fetched together.
    urls = {name: value for _, key, name, value in sources if key == "img_uri" and _is_url(value)}
    fetched = fetch_all(urls, rules.settings) if urls else {}
    return [_item(source, fetched, rules) for source in sources]


def _source(item: object, field: str) -> tuple[str, str, str, str]:
    """(item id, key, field path, value) of a well-formed item."""
    if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ITEM_KEYS:
        raise ApiError(Code.INVALID_ITEM, f"{field} must be an object with exactly one of text, img_blob or "
                                          "img_uri", field=field)
    (key, value), name = next(iter(item.items())), f"{field}.{next(iter(item))}"
    if not isinstance(value, str):
        raise ApiError(Code.INVALID_ITEM, f"{name} must be a string", field=name)
    return field, key, name, value


def _item(source: tuple[str, str, str, str], fetched: dict[str, bytes], rules: ItemRules) -> Item:
    field, key, name, value = source
    if key == "text":
        return TextItem(field, text_item(name, value, rules))
    if name in fetched:
        data = fetched[name]
    elif key == "img_blob":
        data = _base64(name, value, rules)
    else:
        data = _data_uri(name, value, rules)
    return ImageItem(field, image_item(name, data, rules))


def _is_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def _base64(field: str, value: str, rules: ItemRules) -> bytes:
    if len(value) * 3 // 4 > rules.settings.max_image_bytes + 3:  # refuse before decoding
        raise image_too_large(field, rules.settings)
    compact = "".join(value.split())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_" if "-" in compact
                                or "_" in compact else None, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(Code.INVALID_BASE64, f"{field} is not valid base64", field=field) from None


def _data_uri(field: str, value: str, rules: ItemRules) -> bytes:
    match = _DATA_URI.fullmatch(value.strip())
    if match is None:
        raise ApiError(Code.INVALID_URI, f"{field} must be a data URI such as data:image/png;base64,<data> or, "
                                         "where the operator allows it, an http(s) URL", field=field)
    return _base64(field, match["data"], rules)
