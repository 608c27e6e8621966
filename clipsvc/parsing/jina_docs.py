"""clip-as-service's request envelope (jina's HTTP gateway), declared once as a model, -> validated items. Pure:
no Flask globals, no model.

`{"data": [documents], "exec_endpoint" (or "execEndpoint"): "/" | "/encode" | "/rank", "parameters": {...}}`;
`data` may also be `{"docs": [...]}`, as jina accepts. A document (docarray's JSON: every field present, unset
ones null) is an image when it has `blob` (base64 of the file) or `uri` (an http(s) URL or a data: URI), the blob
first, else a text; for /rank it has `matches`, documents ranked against it. Every document and match counts
against the item limit before anything is read; the items then go through `sources.decode_sources`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, SkipValidation

from ..errors import ApiError, Code
from .items import Item, ItemRules, check_item_count
from .shapes import Flaw, checked, one_of, wrong_body
from .sources import Source, decode_sources

ENDPOINTS = ("/", "/encode", "/rank")
BODY_SHAPE = 'an object {"data": [documents], "exec_endpoint": "/encode"}'
DATA_SHAPE = 'a non-empty list of documents like {"text": "a dog"} or {"uri": "data:image/png;base64,..."}'
INLINE_IMAGE = "as blob (base64) or as a data: URI in uri"  # with URL fetching off, what to send instead
ENVELOPE_NOTE = ("clip-as-service's client (`clip_client.Client(\"http://...\")`) posts its envelope, an object with "
                 "`data`, here when this document lists the path; any other body is BentoML's.")
SOURCES = (("blob", "img_blob"), ("uri", "img_uri"), ("text", "text"))  # as clip-as-service reads them


class CasDocument(BaseModel):
    """A docarray document; unset fields may be null or left out"""

    model_config = ConfigDict(strict=True, extra="allow",
                              json_schema_extra={"anyOf": [{"required": [key]} for key in ("text", "blob", "uri")]})
    id: str | None = None
    text: str | None = None
    mime_type: SkipValidation[str | None] = None  # echoed, not read
    blob: str | None = Field(None, description="An image file in base64")
    uri: str | None = Field(None, description="An image as a data: URI, or an http(s) URL where allowed")
    # Read by /rank only (Matches, in the parser); any other endpoint echoes them untouched.
    matches: SkipValidation[list[CasDocument] | None] = Field(
        None, description="/rank: the documents to rank against this one")


Documents = Annotated[list[CasDocument], Field(min_length=1, json_schema_extra={"maxItems": "{max_items}"})]


class Matches(RootModel[list[CasDocument]]):
    root: list[CasDocument] = Field(min_length=1)


class DocumentList(BaseModel):
    docs: Documents


Data = one_of({"list": Documents, "object": DocumentList},
              lambda value: "list" if isinstance(value, list) else "object" if isinstance(value, dict) else None,
              "A list of documents, or an object with them in `docs`")


class CasRequest(BaseModel):
    """clip-as-service's envelope."""

    model_config = ConfigDict(strict=True, json_schema_extra={"description": ENVELOPE_NOTE})
    data: Data
    # Read only by POST /post (/encode and /rank are the path posted to), so checked there, by the parser.
    exec_endpoint: SkipValidation[Literal[ENDPOINTS] | None] = Field(None, json_schema_extra={"default": "/"})
    execEndpoint: SkipValidation[Literal[ENDPOINTS] | None] = None  # noqa: N815 - jina's name
    parameters: Annotated[dict | None, BeforeValidator(lambda value: value or None)] = None  # jina: falsy is none
    header: SkipValidation[dict | None] = None  # jina's; not read here


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
    if not is_envelope(body):
        raise _invalid(wrong_body(body, BODY_SHAPE) if not isinstance(body, dict) else
                       f"The body must be {BODY_SHAPE}", None)
    sent = body.get("exec_endpoint", body.get("execEndpoint"))
    endpoint = endpoint or (sent if sent is not None else "/")
    if endpoint not in ENDPOINTS:
        raise _invalid(f"exec_endpoint must be one of {', '.join(ENDPOINTS)}", "exec_endpoint")
    ranking = endpoint == "/rank"
    check_item_count(_count(body["data"], ranking), rules)  # before pydantic reads a single document
    envelope = checked(CasRequest, body, lambda flaws: _refusal(flaws, body["data"], ranking))
    data = envelope.data.docs if isinstance(envelope.data, DocumentList) else envelope.data
    docs = body["data"]["docs"] if isinstance(body["data"], dict) else body["data"]  # as sent, to answer them
    matches = [_matches(doc, i) for i, doc in enumerate(docs)] if ranking else [[] for _ in docs]
    sources = []
    for i, (doc, sent) in enumerate(zip(data, docs, strict=True)):
        sources.append(_source(doc, sent, f"data[{i}]", i))
        sources += [_source(match, sent["matches"][j], f"data[{i}].matches[{j}]", i)
                    for j, match in enumerate(matches[i])]
    return Envelope(endpoint, envelope.parameters or {}, docs, decode_sources(sources, rules, INLINE_IMAGE))


def _matches(doc: dict, i: int) -> list[CasDocument]:
    """/rank: the documents ranked against `doc`."""
    return checked(Matches, doc.get("matches"), lambda flaws: _refusal(flaws, None, True, f"data[{i}].matches", i)).root


def _count(data: object, ranking: bool) -> int:
    """The documents (and, for /rank, their matches) as sent, whatever else is wrong with them."""
    docs = data.get("docs") if isinstance(data, dict) else data
    if not isinstance(docs, list):
        return 0
    matches = [doc.get("matches") for doc in docs if ranking and isinstance(doc, dict)]
    return len(docs) + sum(len(found) for found in matches if isinstance(found, list))


def _source(doc: CasDocument, sent: dict, field: str, index: int) -> Source:
    """The blob first, then the uri (as clip-as-service reads them), then the text."""
    if doc.id is None:
        sent["id"] = uuid.uuid4().hex  # docarray gives every document an id; the client matches answers by it
    for key, kind in SOURCES:
        value = getattr(doc, key)
        if value:
            return Source(sent["id"], kind, f"{field}.{key}", value, index)
    raise ApiError(Code.INVALID_DOCUMENT, f"{field} must have a text, a blob (base64 of an image) or a uri (an "
                                          "http(s) URL or a data: URI); tensors are not accepted", field=field,
                   index=index)


def _refusal(flaws: list[Flaw], data: object, ranking: bool, prefix: str = "", index: int | None = None) -> ApiError:
    """The first flaw in the order the envelope is read: `parameters`, the list of documents, (for /rank) every
    document's matches, then each document's fields. `prefix`: the path of what was checked, `index` its
    document's position."""
    flaws = [Flaw(tuple(p for n, p in enumerate(f.loc) if not (n == 1 and p == "docs")), f.kind)  # data: {"docs"}
             for f in flaws]
    flaw = min(flaws, key=lambda f: (f.loc[:1] != ("parameters",), len(f.loc) > 2))
    path, index = flaw.path(prefix), index if prefix else flaw.index
    if flaw.loc[:1] == ("parameters",):
        return _invalid("parameters must be an object", "parameters")
    if not prefix and len(flaw.loc) < 3:  # data itself, or one of its documents not an object
        return _invalid(f"data must be {DATA_SHAPE}", "data")
    if ranking and not prefix:  # /rank reads every document's matches before the documents' fields
        for i, doc in enumerate(data["docs"] if isinstance(data, dict) else data):
            _matches(doc, i)
    if prefix and len(flaw.loc) < 2:
        return ApiError(Code.INVALID_DOCUMENT, f"{prefix} must be a non-empty list of documents to rank",
                        field=prefix, index=index)
    what = "a string" if flaw.kind == "string_type" else "a document"
    return ApiError(Code.INVALID_DOCUMENT, f"{path} must be {what}", field=path, index=index)


def _invalid(message: str, field: str | None) -> ApiError:
    return ApiError(Code.INVALID_DOCUMENTS, message, field=field)
