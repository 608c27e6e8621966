"""Every error a client can see, declared once: its code, HTTP status and meaning, and the one type raised.

Code raises errors by name (`ApiError(Code.TOO_MANY_ITEMS, message, field=...)`); the status comes from
this table, and the OpenAPI document, docs/api.md's table and tests read it too. The Flask handler that
turns them into JSON is clipsvc.web.errors; gunicorn's own replies use `error_body` too. Which endpoint
answers which codes is declared beside each view (clipsvc.web.context.answers), not here.
"""

from __future__ import annotations

from enum import Enum

from werkzeug.exceptions import HTTPException

from .settings import MAX_FORM_MEMORY_BYTES, MAX_TEXT_CHARS, env_var


class Code(Enum):
    """`error.code` (the member's name in lower case): (HTTP status, when it happens[, seconds to wait before a
    retry])."""

    EMPTY_REQUEST = 400, "no `image-<id>` / `text-<id>` part at all (also a form body that cannot be parsed)"
    UNKNOWN_KEY = 400, ("a form key other than `image-<id>` / `text-<id>` (`field` is the key; \"\" for a part "
                        "without a name)")
    DUPLICATE_KEY = 400, "the same form key twice"
    TOO_MANY_ITEMS = 400, (f"more items (images + texts, all lists of the request together) than "
                           f"{env_var('max_items')} (a form: also more than 2 x {env_var('max_items')} + 16 parts or "
                           "fields, whatever their keys)")
    IMAGE_NOT_A_FILE = 400, ("`image-<id>` sent as a plain text value instead of a file part (also any `image-<id>` "
                             "in a urlencoded body: images need multipart/form-data)")
    EMPTY_FILE = 400, "a zero-byte image"
    UNSUPPORTED_IMAGE = 400, ("not an image in a supported format (identified by content, never by name), or a "
                              "variant of one that the decoder does not implement (e.g. some DDS pixel formats)")
    INVALID_IMAGE = 400, "a truncated or corrupt image"
    TOO_MANY_PIXELS = 400, f"more pixels than {env_var('max_image_pixels')} (read from the header, before decoding)"
    EMPTY_TEXT = 400, "nothing left of a text after removing characters outside printable ASCII"
    TEXT_TOO_LONG = 400, (f"more words than {env_var('max_text_words')}, or more than {MAX_TEXT_CHARS} characters as "
                          "sent (on every API, before the text is cleaned or tokenised)")
    INVALID_ENCODING = 400, "?encoding= (/v1/embeddings: encoding_format) other than float or base64"
    INVALID_JSON = 400, "JSON endpoints: the body is not valid JSON"
    INVALID_ITEMS = 400, ("JSON endpoints: not a non-empty list of items, e.g. a body of JSON null (/rank: not an "
                          "object with two lists; Truss predict: not an object, no unique `labels` list, or not "
                          "exactly one of `image`, `image_url`; Weaviate's JSON on /vectorize: not an object whose "
                          "`texts`, `images` are lists)")
    INVALID_ITEM = 400, ("JSON endpoints: an item without exactly one of text, img_blob, img_uri, or not a string "
                         "(Weaviate's: an entry of `texts` or `images`)")
    INVALID_BASE64 = 400, "JSON endpoints: img_blob (or a data: URI's payload) is not valid base64"
    INVALID_PIXELS = 400, "Truss predict: `image` is not an H x W x 3 list of numbers from 0 to 255"
    INVALID_URI = 400, "JSON endpoints: img_uri is neither a data: URI nor an http(s) URL"
    INVALID_DOCUMENTS = 400, ("clip-as-service (POST /post, or its envelope on /encode, /rank): the body is not an "
                              "object with `data`, `data` is not a non-empty list of documents, exec_endpoint is not "
                              "/, /encode or /rank, or parameters is not an object")
    INVALID_DOCUMENT = 400, ("clip-as-service: a document with no text, blob or uri (or one, or its id, that is not "
                             "a string), or, for /rank, without a non-empty list of matches")
    URL_FETCH_DISABLED = 400, f"img_uri is an http(s) URL and {env_var('fetch_allow_hosts')} is not set"
    URL_HOST_NOT_ALLOWED = 400, f"img_uri's host is not in {env_var('fetch_allow_hosts')}"
    URL_ADDRESS_FORBIDDEN = 400, "img_uri's host resolves to a private, loopback or otherwise forbidden address"
    URL_REDIRECT_REFUSED = 400, "img_uri redirected to another host, from https to http, or more than 3 times"
    URL_FETCH_FAILED = 400, "fetching img_uri failed (connection, timeout, or a non-200 status)"
    INVALID_INPUT = 400, ("/v1/embeddings: the body is not an object, or `input` is missing, empty or not a string / "
                          "a list of strings and {text} / {image} objects (also `model` or `user` not a string)")
    UNKNOWN_PARAMETER = 400, "/v1/embeddings: a body key other than model, input, encoding_format, dimensions, user"
    TOKEN_IDS_UNSUPPORTED = 400, "/v1/embeddings: `input` is token ids (CLIP reads its own tokens; send the texts)"
    INVALID_DIMENSIONS = 400, "/v1/embeddings: `dimensions` other than the model's size (CLIP vectors cannot be cut)"
    BAD_REQUEST = 400, "gunicorn could not parse the HTTP request itself (malformed request line or headers)"
    UNAUTHORIZED = 401, (f"{env_var('api_keys')} or {env_var('api_keys_from_file')} is set and the request has no "
                         "`Authorization: Bearer <key>` with one of its keys (see the WWW-Authenticate header)")
    FORBIDDEN = 403, "gunicorn: a PROXY-protocol or TLS request it refuses"
    NOT_FOUND = 404, "unknown path"
    MODEL_NOT_FOUND = 404, "/v1: `model` names a model this server does not serve (GET /v1/models lists it)"
    METHOD_NOT_ALLOWED = 405, "a method the path does not serve, e.g. GET /syte_test/clip (see the Allow header)"
    REQUEST_TIMEOUT = 408, (f"the request line and headers ({env_var('header_timeout_s')}) or the body "
                            f"({env_var('client_timeout_s')}, then {env_var('client_min_rate')} bytes a second) "
                            "came too slowly; the connection is closed")
    REQUEST_TOO_LARGE = 413, (f"the body is over {env_var('max_request_mb')} (refused from Content-Length, unread; a "
                              "chunked body as soon as it passes the limit)")
    IMAGE_TOO_LARGE = 413, f"one image is over {env_var('max_image_mb')}"
    FORM_TOO_LARGE = 413, f"a text part (a urlencoded body: the whole body) over {MAX_FORM_MEMORY_BYTES} bytes"
    URL_TOO_LARGE = 413, f"the image fetched from img_uri is over {env_var('max_image_mb')}"
    URI_TOO_LONG = 414, "gunicorn: the request line is too long"
    UNSUPPORTED_MEDIA_TYPE = 415, ("the body is neither multipart/form-data nor application/x-www-form-urlencoded "
                                   "(/encode, /rank: not application/json)")
    EXPECTATION_FAILED = 417, "gunicorn: an Expect header other than 100-continue"
    REQUEST_HEADER_FIELDS_TOO_LARGE = 431, "gunicorn: too many or too large headers"
    INTERNAL_SERVER_ERROR = 500, "a bug: the details go to the log only"
    NOT_IMPLEMENTED = 501, "gunicorn: a Transfer-Encoding it does not support"
    MODEL_NOT_READY = 503, "this worker has no model loaded (yet)", 5
    WORKER_TIMEOUT = 503, f"a forward pass ran past {env_var('worker_timeout')}; the worker is replaced", 5
    INFERENCE_TIMEOUT = 503, (f"the request waited for the model longer than {env_var('worker_timeout')} "
                              "(overload)"), 2

    def __init__(self, status: int, meaning: str, retry_after: int | None = None):
        self.status = status
        self.meaning = meaning
        self.retry_after = retry_after  # seconds, for the Retry-After header: a worker loading, or overload

    @property
    def headers(self) -> dict[str, str]:
        """The headers every reply of this code carries, from Flask or from gunicorn's own writer."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after else {}

    @property
    def id(self) -> str:
        """What clients see in `error.code`."""
        return self.name.lower()


# Codes any operation can answer: from the router, gunicorn and the last-resort handler. (A request id the service
# cannot echo is replaced, not refused: clipsvc.server.request_id.)
COMMON = (Code.BAD_REQUEST, Code.REQUEST_TIMEOUT, Code.METHOD_NOT_ALLOWED, Code.URI_TOO_LONG,
          Code.REQUEST_HEADER_FIELDS_TOO_LARGE, Code.INTERNAL_SERVER_ERROR, Code.NOT_IMPLEMENTED)
# Groups by kind of input, whichever endpoint carries it: an image, a text, an image URL, a JSON item's source.
IMAGE_CODES = (Code.EMPTY_FILE, Code.UNSUPPORTED_IMAGE, Code.INVALID_IMAGE, Code.TOO_MANY_PIXELS, Code.IMAGE_TOO_LARGE)
TEXT_CODES = (Code.EMPTY_TEXT, Code.TEXT_TOO_LONG)
URL_CODES = (Code.URL_FETCH_DISABLED, Code.URL_HOST_NOT_ALLOWED, Code.URL_ADDRESS_FORBIDDEN, Code.URL_REDIRECT_REFUSED,
             Code.URL_FETCH_FAILED, Code.URL_TOO_LARGE)
# What decoding JSON items can refuse (parsing.sources.decode_sources), whichever API's body carried them.
SOURCE_CODES = (Code.INVALID_BASE64, Code.INVALID_URI, *URL_CODES, *IMAGE_CODES, *TEXT_CODES)

WORKER_TIMEOUT_MESSAGE = (f"A forward pass in this worker ran longer than {env_var('worker_timeout')}; the worker is "
                          "being replaced. Send the request again, with fewer items if it was large.")


class ApiError(HTTPException):
    """The one error type code raises: a `Code`, a message that says what to send instead, the field concerned and,
    when one item of a list failed, its position in that list (`index`: 2 for `candidates[2].img_blob`)."""

    def __init__(self, error: Code, message: str, *, field: str | None = None, index: int | None = None):
        super().__init__(description=message)
        self.code = error.status  # werkzeug's name for the HTTP status
        self.error = error
        self.field = field
        self.index = index


class Rejected(ValueError):
    """A pure validator's refusal (image, text, URL), before the caller names the field: its `error` and message."""

    def __init__(self, message: str, error: Code):
        super().__init__(message)
        self.error = error  # as on ApiError, whose `.code` is werkzeug's HTTP status

    def at(self, field: str) -> ApiError:
        """The client's error, naming the form key or JSON path that carried the value."""
        return ApiError(self.error, f"{field} {self}", field=field)


def error_body(status: int, code: str, message: str, field: str | None = None, index: int | None = None) -> dict:
    """The one error shape every endpoint returns; `index` only when one item of a list failed (clients read it
    rather than parse `field`)."""
    error = {"status": status, "code": code, "message": message, "field": field}
    return {"error": error | {"index": index}} if index is not None else {"error": error}
