"""Every `error.code` a client can see: its HTTP status, when it happens, and which endpoints answer it.

The one list the OpenAPI document is built from. The ApiError subclasses' own default codes are added from
the classes themselves, and tests/test_openapi.py checks that every `error_code` in clipsvc/ is here.
"""

from __future__ import annotations

from .errors import ApiError
from .parsing.form import MAX_FORM_MEMORY_BYTES

# code -> (HTTP status, when). The one list of what clients can see in `error.code`.
ERRORS: dict[str, tuple[int, str]] = {
    "empty_request": (400, "no `image-<id>` / `text-<id>` part at all (also a form body that cannot be parsed)"),
    "unknown_key": (400, "a form key other than `image-<id>` / `text-<id>` (`field` is the key)"),
    "duplicate_key": (400, "the same form key twice"),
    "too_many_items": (400, "more items (images + texts, all lists of the request together) than CLIP_MAX_ITEMS"),
    "image_not_a_file": (400, "`image-<id>` sent as a plain text value instead of a file part (also any `image-<id>` "
                              "in a urlencoded body: images need multipart/form-data)"),
    "empty_file": (400, "a zero-byte image"),
    "unsupported_image": (400, "not an image in a supported format (identified by content, never by name)"),
    "invalid_image": (400, "a truncated or corrupt image"),
    "too_many_pixels": (400, "more pixels than CLIP_MAX_IMAGE_PIXELS (read from the header, before decoding)"),
    "empty_text": (400, "nothing left of a text after removing characters outside printable ASCII"),
    "text_too_long": (400, "more words than CLIP_MAX_TEXT_WORDS (or a text file part over 64 KiB)"),
    "invalid_request_id": (400, "a request_id / X-Request-ID header that is not 1-128 of A-Z a-z 0-9 . _ : -"),
    "invalid_encoding": (400, "?encoding= other than float or base64"),
    "invalid_json": (400, "JSON endpoints: the body is not valid JSON"),
    "invalid_items": (400, "JSON endpoints: not a non-empty list of items (/rank: not an object with two lists)"),
    "invalid_item": (400, "JSON endpoints: an item without exactly one of text, img_blob, img_uri, or not a string"),
    "invalid_base64": (400, "JSON endpoints: img_blob (or a data: URI's payload) is not valid base64"),
    "invalid_uri": (400, "JSON endpoints: img_uri is neither a data: URI nor an http(s) URL"),
    "url_fetch_disabled": (400, "img_uri is an http(s) URL and CLIP_FETCH_ALLOW_HOSTS is not set"),
    "url_host_not_allowed": (400, "img_uri's host is not in CLIP_FETCH_ALLOW_HOSTS"),
    "url_address_forbidden": (400, "img_uri's host resolves to a private, loopback or otherwise forbidden address"),
    "url_redirect_refused": (400, "img_uri redirected to another host, from https to http, or more than 3 times"),
    "url_fetch_failed": (400, "fetching img_uri failed (connection, timeout, or a non-200 status)"),
    "bad_request": (400, "gunicorn could not parse the HTTP request itself (malformed request line or headers)"),
    "forbidden": (403, "gunicorn: a PROXY-protocol or TLS request it refuses"),
    "not_found": (404, "unknown path"),
    "method_not_allowed": (405, "a method the path does not serve, e.g. GET /syte_test/clip (see the Allow header)"),
    "request_too_large": (413, "the body is over CLIP_MAX_REQUEST_MB (refused from Content-Length, unread)"),
    "image_too_large": (413, "one image is over CLIP_MAX_IMAGE_MB"),
    "form_too_large": (413, "more form parts or fields than 2 x CLIP_MAX_ITEMS + 16, or a text part (a urlencoded "
                            f"body: the whole body) over {MAX_FORM_MEMORY_BYTES} bytes"),
    "url_too_large": (413, "the image fetched from img_uri is over CLIP_MAX_IMAGE_MB"),
    "uri_too_long": (414, "gunicorn: the request line is too long"),
    "unsupported_media_type": (415, "the body is neither multipart/form-data nor application/x-www-form-urlencoded "
                                    "(/encode, /rank: not application/json)"),
    "expectation_failed": (417, "gunicorn: an Expect header other than 100-continue"),
    "request_header_fields_too_large": (431, "gunicorn: too many or too large headers"),
    "internal_server_error": (500, "a bug: the details go to the log only"),
    "not_implemented": (501, "gunicorn: a Transfer-Encoding it does not support"),
    "model_not_ready": (503, "this worker has no model loaded (yet)"),
    "request_timeout": (408, "the request line and headers (CLIP_HEADER_TIMEOUT_S) or the body (CLIP_CLIENT_TIMEOUT_S, "
                             "then CLIP_CLIENT_MIN_RATE bytes a second) came too slowly; the connection is closed"),
    "worker_timeout": (503, "a forward pass ran past CLIP_WORKER_TIMEOUT; the worker is replaced"),
    "inference_timeout": (503, "the request waited for the model longer than CLIP_WORKER_TIMEOUT (overload)"),
}

# Codes any operation can answer: from the request-id hook, the router, gunicorn and the last-resort handler.
COMMON = ("invalid_request_id", "bad_request", "request_timeout", "method_not_allowed", "uri_too_long",
          "request_header_fields_too_large", "internal_server_error", "not_implemented")
IMAGE_CODES = ("empty_file", "unsupported_image", "invalid_image", "too_many_pixels", "image_too_large")
TEXT_CODES = ("empty_text", "text_too_long")
POST_CODES = ("too_many_items", "request_too_large", "unsupported_media_type", "model_not_ready", "worker_timeout",
              "inference_timeout")
MULTIPART_CODES = ("empty_request", "unknown_key", "duplicate_key", "image_not_a_file", "form_too_large",
                   "invalid_encoding", *IMAGE_CODES, *TEXT_CODES, *POST_CODES)
URL_CODES = ("url_fetch_disabled", "url_host_not_allowed", "url_address_forbidden", "url_redirect_refused",
             "url_fetch_failed", "url_too_large")
RANK_CODES = ("invalid_json", "invalid_items", "invalid_item", "invalid_base64", "invalid_uri", *URL_CODES,
              *IMAGE_CODES, *TEXT_CODES, *POST_CODES)
ENCODE_CODES = ("invalid_encoding", *RANK_CODES)


def error_catalogue() -> dict[str, tuple[int, str]]:
    """ERRORS plus the default code of every ApiError subclass, read from the classes."""
    catalogue = dict(ERRORS)
    pending = list(ApiError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        catalogue.setdefault(cls.error_code, (cls.code, f"{cls.__name__}: {(cls.description or '').strip()}"))
    return catalogue
