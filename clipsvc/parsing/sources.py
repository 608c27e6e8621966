"""The strings a JSON body carries -> validated items, whichever API's body it was: a text, base64 of an image, a
data: URI or an allow-listed http(s) URL (handed to `fetch`). The same validators as the multipart endpoint
(`items.checked_image`, `items.checked_text`) do the work. Pure: no Flask globals, no model.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ..errors import ApiError, Code
from .fetch import fetch_all
from .items import ImageItem, Item, ItemRules, TextItem, checked_image, checked_text, image_too_large

_DATA_URI = re.compile(r"data:(?:image/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    """One well-formed JSON item before decoding: its id, its kind (`text`, `img_blob` or `img_uri`), the field
    path that error messages name, the string it carries, and its position in its list (an error's `index`)."""

    id: str
    kind: str
    field: str
    value: str
    index: int | None = None


def decode_sources(sources: list[Source], rules: ItemRules, inline: str) -> list[Item]:
    """Every item's shape was checked before any URL is fetched; then the URLs are fetched together. `inline`:
    how the caller's API carries an image itself (named when fetching is off). An item's error carries its index."""
    urls = {s.field: s.value for s in sources if s.kind == "img_uri" and _is_url(s.value)}
    try:
        fetched = fetch_all(urls, rules.settings, inline) if urls else {}
    except ApiError as exc:
        exc.index = next((s.index for s in sources if s.field == exc.field), None)
        raise
    items = []
    for source in sources:
        try:
            items.append(_item(source, fetched, rules))
        except ApiError as exc:
            exc.index = source.index
            raise
    return items


def image_source(item_id: str, field: str, value: str, index: int | None = None) -> Source:
    """An image given as one string: a data: URI or an http(s) URL (`img_uri`), else base64 (`img_blob`)."""
    uri = _is_url(value) or value[:5].lower() == "data:"
    return Source(item_id, "img_uri" if uri else "img_blob", field, value, index)


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
