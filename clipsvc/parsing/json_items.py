"""BentoML's JSON bodies, declared once as models: /encode's list of items ({"text"}, {"img_blob"}, {"img_uri":
"data:..." or a URL}) and /rank's {"queries", "candidates"}. The models check the shape; `sources` decodes the
items with the same validators as the multipart endpoint. Pure: no Flask globals, no model.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, RootModel
from typing_extensions import TypedDict  # pydantic reads its fields' Annotated metadata on any Python

from ..errors import ApiError, Code
from ..settings import MAX_TEXT_CHARS, env_var
from .items import Item, ItemRules, check_item_count
from .shapes import STRICT, Flaw, Strict, checked, one_of, sole_key, wrong_body
from .sources import Source, decode_sources

ITEM_KEYS = ("text", "img_blob", "img_uri")
ITEM_SHAPE = "an object with exactly one of text, img_blob or img_uri"
ITEMS_SHAPE = 'a non-empty JSON list of items like {"text": "a dog"} or {"img_blob": "<base64>"}'
RANK_SHAPE = 'an object {"queries": [items], "candidates": [items]}'
INLINE_IMAGE = "as img_blob (base64) or as a data: URI in img_uri"  # with URL fetching off, what to send instead


class TextItem(TypedDict):
    __pydantic_config__ = STRICT
    text: Annotated[str, Field(description=f"At most {{max_text_words}} words and {MAX_TEXT_CHARS} characters; "
                                           "characters outside printable ASCII are removed",
                               json_schema_extra={"maxLength": MAX_TEXT_CHARS})]


class BlobItem(TypedDict):
    __pydantic_config__ = STRICT
    img_blob: Annotated[str, Field(description="An image file in base64 (standard or URL-safe alphabet, padding "
                                               "optional), at most {max_image_mb:g} MB decoded",
                                   json_schema_extra={"contentEncoding": "base64", "maxLength": "{base64_limit}"})]


class UriItem(TypedDict):
    __pydantic_config__ = STRICT
    img_uri: Annotated[str, Field(description="A `data:[image/...];base64,<data>` URI. `http(s)://` URLs are refused "
                                  f"(`url_fetch_disabled`) unless the operator sets {env_var('fetch_allow_hosts')}; "
                                  "then the host must be allowed (`url_host_not_allowed`) and public "
                                  "(`url_address_forbidden`), redirects are followed within the same host only, at "
                                  "most 3 and never from https to http (`url_redirect_refused`), other failures give "
                                  "`url_fetch_failed` and an image over {max_image_mb:g} MB `url_too_large` (413).",
                                  json_schema_extra={"pattern": "^(data:|https?://)"})]


JsonItem = one_of({"text": TextItem, "img_blob": BlobItem, "img_uri": UriItem},
                  lambda value: sole_key(value, ITEM_KEYS), "Exactly one of text, img_blob or img_uri")


class Items(RootModel[list[JsonItem]]):
    root: list[JsonItem] = Field(min_length=1, description="At most {max_items} items",
                                 json_schema_extra={"maxItems": "{max_items}"})


class RankRequest(Strict):
    """Queries and candidates together: at most {max_items} items"""

    model_config = ConfigDict(extra="ignore")
    queries: Items
    candidates: Items


def parse_items(items: object, field: str, rules: ItemRules) -> list[Item]:
    """A non-empty JSON list of items (`field`: its path in the body, "" for /encode's); each item's id is its
    field path, e.g. `[0]`."""
    if isinstance(items, list):  # counted before pydantic reads a single item
        check_item_count(len(items), rules)
    checked_items = checked(Items, items, lambda flaws: _refusal(flaws[0], items, ITEMS_SHAPE, field))
    return decode_sources(_sources(checked_items, field), rules, INLINE_IMAGE)


def parse_rank(body: object, rules: ItemRules) -> tuple[list[Item], list[Item]]:
    """/rank's `{"queries": [...], "candidates": [...]}`: both lists counted together before anything is read."""
    if isinstance(body, dict):
        check_item_count(sum(len(x) for x in (body.get("queries"), body.get("candidates")) if isinstance(x, list)),
                         rules)
    rank = checked(RankRequest, body, lambda flaws: _refusal(flaws[0], body, RANK_SHAPE))
    queries = _sources(rank.queries, "queries")
    items = decode_sources(queries + _sources(rank.candidates, "candidates"), rules, INLINE_IMAGE)
    return items[:len(queries)], items[len(queries):]


def _sources(items: Items, field: str) -> list[Source]:
    sources = []
    for i, item in enumerate(items.root):
        ((key, value),) = item.items()  # an object of one key
        sources.append(Source(f"{field}[{i}]", key, f"{field}[{i}].{key}", value, i))
    return sources


def _refusal(flaw: Flaw, body: object, shape: str, field: str = "") -> ApiError:
    """The body itself, a list of items, an item, or an item's value, by where pydantic found the flaw."""
    path = flaw.path(field)
    if not path:
        return ApiError(Code.INVALID_ITEMS, wrong_body(body, shape))
    if flaw.index is None:
        return ApiError(Code.INVALID_ITEMS, f"{path} must be {ITEMS_SHAPE}", field=path)
    what = ITEM_SHAPE if isinstance(flaw.key, int) else "a string"
    return ApiError(Code.INVALID_ITEM, f"{path} must be {what}", field=path, index=flaw.index)
