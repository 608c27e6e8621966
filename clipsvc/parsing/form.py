"""A form (multipart or urlencoded) -> validated images and texts. Pure: no Flask globals, no model."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from typing import IO

from PIL import Image
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.wsgi import LimitedStream

from ..errors import ApiError, Code
from ..settings import MAX_TEXT_CHARS, env_var
from .items import ImageItem, ItemRules, ParsedRequest, TextItem, check_item_count, checked_image, checked_text

ID_PATTERN = "[A-Za-z0-9_-]{1,64}"  # the <id> of image-<id> / text-<id>; the OpenAPI document quotes it
ID_RULE = "1-64 letters, digits, '_' or '-'"  # the same, in words
KEY_PATTERN = re.compile(rf"(image|text)-({ID_PATTERN})")
FIELD_ECHO = 80  # unknown keys and values are echoed back in errors, shortened
MULTIPART, URLENCODED = "multipart/form-data", "application/x-www-form-urlencoded"
FORM_TYPES = (MULTIPART, URLENCODED)  # what POST /syte_test/clip accepts; urlencoded carries texts only


def require_form(mimetype: str) -> None:
    """Multipart (images and texts) or urlencoded (texts only); anything else is a 415 naming both."""
    if mimetype not in FORM_TYPES:
        shown = mimetype or "none"
        raise ApiError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type is {shown}; send {MULTIPART} with image-<id> files and text-<id> fields "
            f"(curl -F image-1=@photo.jpg -F text-1='a caption'), or {URLENCODED} with text-<id> fields only "
            "(curl -d 'text-1=a caption')",
            field="Content-Type",
        )


PART_HEADROOM = 16  # parts read beyond two per allowed item, so that unknown keys among them are still reported


def parts_limit(max_items: int) -> int:
    """The most parts (urlencoded: fields) the parser reads of one form; past them it stops reading."""
    return 2 * max_items + PART_HEADROOM


class FormParser(FormDataParser):
    """werkzeug's parser, its limits held on multipart and urlencoded bodies alike, the part count as the item limit.

    Past `parts_limit(max_items)` parts a form is refused as too many items, whatever the count: the answer a form
    just over CLIP_MAX_ITEMS gets. werkzeug's own count is left off (it raises what a field over the memory limit
    raises); the parts are counted as they are read (MultipartCounter), before the parser stores them. werkzeug 3.1
    applies neither limit to urlencoded bodies, which would be read whole and split into millions of fields: here
    one over `max_form_memory_size` bytes is refused with RequestEntityTooLarge, one with too many fields as too
    many items, before it is parsed.
    """

    def __init__(self, max_items: int, **options) -> None:
        super().__init__(**options)  # max_form_parts stays None: this parser counts the parts itself
        self.max_items = max_items
        self.max_parts = parts_limit(max_items)

    def parse(self, stream: IO[bytes], mimetype: str, content_length: int | None,
              options: dict[str, str] | None = None) -> tuple:
        boundary = (options or {}).get("boundary", "")
        body: IO[bytes] = stream
        if mimetype == URLENCODED:
            body = io.BytesIO(self._bounded_body(stream, content_length))
        elif mimetype == MULTIPART and boundary:
            body = MultipartCounter(stream, boundary.encode("ascii", "replace"), self.max_parts, self.too_many_parts)
        _, form, files = super().parse(body, mimetype, content_length, options)
        return stream, form, files

    def too_many_parts(self) -> ApiError:
        """The item limit's answer, for a form whose parts alone are more than it allows."""
        return ApiError(Code.TOO_MANY_ITEMS, f"The form has more than {self.max_parts} parts; the limit is "
                                             f"{self.max_items} items ({env_var('max_items')})")

    def _bounded_body(self, stream: IO[bytes], content_length: int | None) -> bytes:
        limit = self.max_form_memory_size
        if limit is None:
            body = stream.read()
        elif content_length is not None and content_length > limit:
            raise RequestEntityTooLarge()  # from the header, unread
        else:  # read one byte past the limit to tell a body of exactly `limit` bytes from a longer (chunked) one
            body = LimitedStream(stream, limit + 1, is_max=True).read()
            if len(body) > limit:
                raise RequestEntityTooLarge()
        if body.count(b"&") + 1 > self.max_parts:
            raise self.too_many_parts()
        # Bytes that are not UTF-8 become U+FFFD, as in multipart text parts; werkzeug would drop the whole form.
        return body.decode("utf-8", "replace").encode()


class MultipartCounter:
    """A multipart body as the parser reads it, its delimiters counted on the way: once there are more than one per
    allowed part (and the closing one), `refusal()` is raised before the parser sees the bytes."""

    def __init__(self, stream: IO[bytes], boundary: bytes, max_parts: int, refusal: Callable[[], Exception]):
        self._stream, self._refusal = stream, refusal
        self._delimiter = b"\r\n--" + boundary
        self._max_delimiters = max_parts + 1
        self._tail = b"\r\n"  # the first delimiter may open the body without a line break
        self.delimiters = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        seen = self._tail + data
        self.delimiters += seen.count(self._delimiter)
        self._tail = seen[1 - len(self._delimiter):]  # too short to hold a whole delimiter: none counted twice
        if self.delimiters > self._max_delimiters:
            raise self._refusal()
        return data


def parse_form(form: MultiDict, files: MultiDict, rules: ItemRules) -> ParsedRequest:
    """Validate every part, decode images and clean texts; the first problem found is raised."""
    parts = list(_parts(form, files))
    if not parts:
        raise ApiError(Code.EMPTY_REQUEST, "The request has no image-<id> or text-<id> parts; send at least one "
                                           "(a form body that cannot be parsed ends here too)")
    seen: set[str] = set()
    for key, _ in parts:
        _check_key(key, seen)
    check_item_count(len(parts), rules)
    parsed = ParsedRequest()
    for key, value in parts:
        kind, item_id = KEY_PATTERN.fullmatch(key).groups()
        if kind == "image":
            parsed.images.append(ImageItem(item_id, _image(key, value, rules)))
        else:
            parsed.texts.append(TextItem(item_id, _text(key, value, rules)))
    return parsed


def _parts(form: MultiDict, files: MultiDict) -> Iterable[tuple[str, str | FileStorage]]:
    yield from form.items(multi=True)
    yield from files.items(multi=True)


def _check_key(key: str | None, seen: set[str]) -> None:
    if not key:  # a multipart part without name= (werkzeug: None), or name="" / a urlencoded "=value"
        raise ApiError(Code.UNKNOWN_KEY, "A form part has no name; name every part image-<id> (a file) or "
                                         f"text-<id> (a text), where <id> is {ID_RULE} (curl -F text-1='a dog'; "
                                         "in Postman, fill in the Key column)", field="")
    shown = key if len(key) <= FIELD_ECHO else key[:FIELD_ECHO] + "..."
    if KEY_PATTERN.fullmatch(key) is None:
        raise ApiError(Code.UNKNOWN_KEY, f"Unknown form key {shown!r}; keys are image-<id> (a file) or text-<id> "
                                         f"(a text), where <id> is {ID_RULE}", field=shown)
    if key in seen:
        raise ApiError(Code.DUPLICATE_KEY, f"{key} is sent more than once; each key must be unique", field=key)
    seen.add(key)


def _image(key: str, value: str | FileStorage, rules: ItemRules) -> Image.Image:
    if not isinstance(value, FileStorage):
        raise ApiError(Code.IMAGE_NOT_A_FILE, f"{key} must be a file part of a {MULTIPART} body, not a text value "
                                              f"(curl -F {key}=@photo.jpg); an {URLENCODED} body carries texts only",
                       field=key)
    return checked_image(key, value.stream.read(rules.settings.max_image_bytes + 1), rules)


def _text(key: str, value: str | FileStorage, rules: ItemRules) -> str:
    if isinstance(value, FileStorage):  # curl -F text-1=@caption.txt: accept the file's text
        # Enough bytes for MAX_TEXT_CHARS characters of UTF-8 and one more: the one text rule then says the rest.
        value = value.stream.read(4 * MAX_TEXT_CHARS + 1).decode("utf-8", errors="replace")
    return checked_text(key, value, rules)
