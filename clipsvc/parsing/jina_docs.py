"""clip-as-service's request envelope (jina's HTTP gateway) -> validated items. Pure: no Flask globals, no model.

`{"data": [documents], "exec_endpoint" (or "execEndpoint"): "/" | "/encode" | "/rank", "parameters": {...}}`;
`data` may also be `{"docs": [...]}`, as jina accepts. A document (docarray's JSON: every field present, unset
ones null) is an image when it has `blob` (base64 of the file) or `uri` (an http(s) URL or a data: URI), the blob
first, else a text; for /rank it has `matches`, documents ranked against it. Every document and match counts
against the item limit before anything is decoded; the items then go through `json_items.decode_sources`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..errors import ApiError, Code
from .items import Item, ItemRules, check_item_count
from .json_items import Source, decode_sources, wrong_body

ENDPOINTS = ("/", "/encode", "/rank")
BODY_SHAPE = 'an object {"data": [documents], "exec_endpoint": "/encode"}'
INLINE_IMAGE = "as blob (base64) or as a data: URI in uri"  # with URL fetching off, what to send instead


@dataclass(frozen=True)
class Envelope:
    """A checked request: its endpoint, parameters, documents (as sent, each with an id) and their items, in
    order: each document followed, for /rank, by its matches."""

    endpoint: str
    parameters: dict
    docs: list[dict]
    items: list[Item]


def is_envelope(body: object) -> bool:
    """clip-as-service's envelope is an object with `data`; BentoML's bodies are a list or queries/candidates."""
    return isinstance(body, dict) and "data" in body


def parse_envelope(body: object, rules: ItemRules, endpoint: str | None = None) -> Envelope:
    """`endpoint` is the path posted to (/encode, /rank), or None for /post, where the body names it."""
    if not isinstance(body, dict):
        raise _invalid(wrong_body(body, BODY_SHAPE), None)
    if not is_envelope(body):
        raise _invalid(f"The body must be {BODY_SHAPE}", None)
    sent = body.get("exec_endpoint", body.get("execEndpoint"))
    endpoint = endpoint or (sent if sent is not None else "/")
    if endpoint not in ENDPOINTS:
        raise _invalid(f"exec_endpoint must be one of {', '.join(ENDPOINTS)}", "exec_endpoint")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _invalid("parameters must be an object", "parameters")
    data = body["data"]
    docs = data.get("docs") if isinstance(data, dict) else data
    if not isinstance(docs, list) or not docs or not all(isinstance(doc, dict) for doc in docs):
        raise _invalid("data must be a non-empty list of documents like {\"text\": \"a dog\"} or "
                       "{\"uri\": \"data:image/png;base64,...\"}", "data")
    ranking = endpoint == "/rank"
    docs = [_with_matches(doc, f"data[{i}]") if ranking else doc for i, doc in enumerate(docs)]
    check_item_count(len(docs) + sum(len(doc["matches"]) for doc in docs if ranking), rules)
    sources = []
    for i, doc in enumerate(docs):
        sources.append(_source(doc, f"data[{i}]"))
        sources += [_source(m, f"data[{i}].matches[{j}]") for j, m in enumerate(doc["matches"] if ranking else ())]
    return Envelope(endpoint, parameters, docs, decode_sources(sources, rules, INLINE_IMAGE))


def _with_matches(doc: dict, field: str) -> dict:
    matches = doc.get("matches")
    if not isinstance(matches, list) or not matches or not all(isinstance(m, dict) for m in matches):
        raise ApiError(Code.INVALID_DOCUMENT, f"{field}.matches must be a non-empty list of documents to rank",
                       field=f"{field}.matches")
    return doc


def _source(doc: dict, field: str) -> Source:
    """The blob first, then the uri (as clip-as-service reads them), then the text."""
    if doc.get("id") is None:
        doc["id"] = uuid.uuid4().hex  # docarray gives every document an id; the client matches answers by it
    elif not isinstance(doc["id"], str):
        raise ApiError(Code.INVALID_DOCUMENT, f"{field}.id must be a string", field=f"{field}.id")
    for key, kind in (("blob", "img_blob"), ("uri", "img_uri"), ("text", "text")):
        value = doc.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ApiError(Code.INVALID_DOCUMENT, f"{field}.{key} must be a string", field=f"{field}.{key}")
        return Source(doc["id"], kind, f"{field}.{key}", value)
    raise ApiError(Code.INVALID_DOCUMENT, f"{field} must have a text, a blob (base64 of an image) or a uri (an "
                                          "http(s) URL or a data: URI); tensors are not accepted", field=field)


def _invalid(message: str, field: str | None) -> ApiError:
    return ApiError(Code.INVALID_DOCUMENTS, message, field=field)
