"""BentoML-style JSON items ({"text"}, {"img_blob"}, {"img_uri": "data:..." or a URL}) -> validated items.

The same validators as the multipart endpoint (`items.checked_image`, `items.checked_text`) do the work; this
module only unwraps JSON (and hands allow-listed URLs to `fetch`). Pure: no Flask globals, no model.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ..errors import ApiError, Code
from .fetch import fetch_all
from .items import ImageItem, Item, ItemRules, TextItem, check_item_count, checked_image, checked_text, image_too_large

ITEM_KEYS = ("text", "img_blob", "img_uri")
ITEMS_SHAPE = 'a non-empty JSON list of items like {"text": "a dog"} or {"img_blob": "<base64>"}'
RANK_SHAPE = 'an object {"queries": [items], "candidates": [items]}'
INLINE_IMAGE = "as img_blob (base64) or as a data: URI in img_uri"  # with URL fetching off, what to send instead
_DATA_URI = re.compile(r"data:(?:image/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)", re.DOTALL | re.IGNORECASE)


def parse_rank(body: object, rules: ItemRules) -> tuple[list[Item], list[Item]]:
    """/rank's `{"queries": [...], "candidates": [...]}`: both lists counted together before anything is decoded."""
    if not isinstance(body, dict):
        raise ApiError(Code.INVALID_ITEMS, wrong_body(body, RANK_SHAPE))
    lists = [body.get("queries"), body.get("candidates")]
    check_item_count(sum(len(x) for x in lists if isinstance(x, list)), rules)
    return parse_items(lists[0], "queries", rules), parse_items(lists[1], "candidates", rules)


def wrong_body(body: object, expected: str) -> str:
    """The message for a body that is valid JSON but not the shape an endpoint takes: what it is, what to send."""
    return f"The body is {_json_kind(body)}: valid JSON, but not what this endpoint takes; send {expected}"


def _json_kind(value: object) -> str:
    if value is None or isinstance(value, bool):
        return f"JSON {'null' if value is None else str(value).lower()}"
    if isinstance(value, list):
        return "a JSON list" if value else "an empty JSON list"
    kinds = {str: "a JSON string", dict: "a JSON object"}
    return kinds.get(type(value), "a JSON number")


@dataclass(frozen=True)
class Source:
    """One well-formed JSON item before decoding: its id, its kind (`text`, `img_blob` or `img_uri`), the field
    path that error messages name, and the string it carries."""

    id: str
    kind: str
    field: str
    value: str


def parse_items(items: object, field: str, rules: ItemRules) -> list[Item]:
    """A non-empty JSON list of items; each item's id is its field path, e.g. `queries[0]`."""
    if not isinstance(items, list) or not items:
        message = f"{field} must be {ITEMS_SHAPE}" if field else wrong_body(items, ITEMS_SHAPE)
        raise ApiError(Code.INVALID_ITEMS, message, field=field or None)
    check_item_count(len(items), rules)
    return decode_sources([_source(item, f"{field}[{i}]") for i, item in enumerate(items)], rules, INLINE_IMAGE)


def decode_sources(sources: list[Source], rules: ItemRules, inline: str) -> list[Item]:
    """Every item's shape was checked before any URL is fetched; then the URLs are fetched together. `inline`:
    how the caller's API carries an image itself (named when fetching is off)."""
    urls = {s.field: s.value for s in sources if s.kind == "img_uri" and _is_url(s.value)}
    fetched = fetch_all(urls, rules.settings, inline) if urls else {}
    return [_item(source, fetched, rules) for source in sources]


def image_source(item_id: str, field: str, value: str) -> Source:
    """An image given as one string: a data: URI or an http(s) URL (`img_uri`), else base64 (`img_blob`)."""
    uri = _is_url(value) or value[:5].lower() == "data:"
    return Source(item_id, "img_uri" if uri else "img_blob", field, value)


def keyed_string(item: object, field: str, keys: tuple[str, ...], code: Code) -> tuple[str, str, str] | None:
    """(key, field path, string) of an object with exactly one of `keys`; None for anything else; `code` when
    its value is not a string."""
    if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in keys:
        return None
    ((key, value),) = item.items()
    if not isinstance(value, str):
        raise ApiError(code, f"{field}.{key} must be a string", field=f"{field}.{key}")
    return key, f"{field}.{key}", value


def _source(item: object, field: str) -> Source:
    keyed = keyed_string(item, field, ITEM_KEYS, Code.INVALID_ITEM)
    if keyed is None:
        raise ApiError(Code.INVALID_ITEM, f"{field} must be an object with exactly one of text, img_blob or "
                                          "img_uri", field=field)
    key, name, value = keyed
    return Source(field, key, name, value)


def _item(source: Source, fetched: dict[str, bytes], rules: ItemRules) -> Item:
    if source.kind == "text":
        return TextItem(source.id, checked_text(source.field, source.value, rules))
    if source.field in fetched:
        data = fetched[source.field]
    elif source.kind == "img_blob":
        data = _base64(source.field, source.value, rules)
    else:
        data = _data_uri(source.field, source.value, rules)
    return ImageItem(source.id, checked_image(source.field, data, rules))


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
