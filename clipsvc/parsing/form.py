"""A form (multipart or urlencoded) -> validated images and texts. Pure: no Flask globals, no model."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from PIL import Image
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.wsgi import LimitedStream

from ..errors import InvalidInput, PayloadTooLarge, UnsupportedContentType
from ..settings import Settings
from .images import ImageRejected, decode_image
from .texts import TextRejected, validate_text

ID_PATTERN = "[A-Za-z0-9_-]{1,64}"  # the <id> of image-<id> / text-<id>; the OpenAPI document quotes it
KEY_PATTERN = re.compile(rf"(image|text)-({ID_PATTERN})")
MAX_TEXT_FILE_BYTES = 64 * 1024  # a text sent as a file part: generous for 50 words
_FIELD_ECHO = 80  # unknown keys are echoed back in errors, shortened
MULTIPART, URLENCODED = "multipart/form-data", "application/x-www-form-urlencoded"
MAX_FORM_MEMORY_BYTES = 500_000  # one multipart text part, or a whole urlencoded body (Flask's default)
FORM_TYPES = (MULTIPART, URLENCODED)  # what POST /syte_test/clip accepts; urlencoded carries texts only


@dataclass(frozen=True)
class ImageItem:
    id: str
    image: Image.Image


@dataclass(frozen=True)
class TextItem:
    id: str
    text: str


@dataclass(frozen=True)
class ParsedRequest:
    """What a request asks for; ids keep the order in which the client sent them."""

    images: list[ImageItem] = field(default_factory=list)
    texts: list[TextItem] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """Every id, first appearance first (images before texts of the same request)."""
        return list(dict.fromkeys([i.id for i in self.images] + [t.id for t in self.texts]))

    @property
    def pair_ids(self) -> list[str]:
        texts = {t.id for t in self.texts}
        return [i.id for i in self.images if i.id in texts]


def vector_encoding(value: str | None) -> str:
    """The `?encoding=` query parameter: float (default) or base64."""
    if value is None:
        return "float"
    if value in ("float", "base64"):
        return value
    raise InvalidInput(f"encoding={value[:_FIELD_ECHO]!r} is not supported; use float or base64",
                       field="encoding", error_code="invalid_encoding")


def require_form(mimetype: str) -> None:
    """Multipart (images and texts) or urlencoded (texts only); anything else is a 415 naming both."""
    if mimetype not in FORM_TYPES:
        shown = mimetype or "none"
        raise UnsupportedContentType(
            f"Content-Type is {shown}; send {MULTIPART} with image-<id> files and text-<id> fields "
            f"(curl -F image-1=@photo.jpg -F text-1='a caption'), or {URLENCODED} with text-<id> fields only "
            "(curl -d 'text-1=a caption')",
            field="Content-Type",
        )


class FormParser(FormDataParser):
    """werkzeug's parser, with its multipart limits on urlencoded bodies too: werkzeug reads those whole.

    werkzeug 3.1 applies neither limit to urlencoded bodies, so one of up to CLIP_MAX_REQUEST_MB would be read and
    split into millions of fields. Here a body over `max_form_memory_size` bytes, or with more than
    `max_form_parts` fields, is refused with RequestEntityTooLarge before it is parsed, as multipart parts are.
    """

    def parse(self, stream: IO[bytes], mimetype: str, content_length: int | None,
              options: dict[str, str] | None = None) -> tuple:
        if mimetype == URLENCODED:
            stream = io.BytesIO(self._bounded_body(stream, content_length))
        return super().parse(stream, mimetype, content_length, options)

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
        if self.max_form_parts is not None and body.count(b"&") + 1 > self.max_form_parts:
            raise RequestEntityTooLarge()
        # Bytes that are not UTF-8 become U+FFFD, as in multipart text parts; werkzeug would drop the whole form.
        return body.decode("utf-8", "replace").encode()


def parse_form(form: MultiDict, files: MultiDict, settings: Settings, min_side: int | None = None) -> ParsedRequest:
    """Validate every part, decode images and clean texts; the first problem found is raised.

    `min_side` is the model's input size: images need not be decoded much larger than that.
    """
    parts = list(_parts(form, files))
    if not parts:
        raise InvalidInput(
            "The request has no image-<id> or text-<id> parts; send at least one "
            "(a form body that cannot be parsed ends here too)",
            error_code="empty_request",
        )
    seen: set[str] = set()
    for key, _ in parts:
        _check_key(key, seen)
    check_item_count(len(parts), settings)
    parsed = ParsedRequest()
    for key, value in parts:
        kind, item_id = KEY_PATTERN.fullmatch(key).groups()
        if kind == "image":
            parsed.images.append(ImageItem(item_id, _image(key, value, settings, min_side)))
        else:
            parsed.texts.append(TextItem(item_id, _text(key, value, settings)))
    return parsed


def check_item_count(count: int, settings: Settings) -> None:
    if count > settings.max_items:
        raise InvalidInput(
            f"The request has {count} items; the limit is {settings.max_items} (CLIP_MAX_ITEMS)",
            error_code="too_many_items",
        )


def _parts(form: MultiDict, files: MultiDict) -> Iterable[tuple[str, str | FileStorage]]:
    yield from form.items(multi=True)
    yield from files.items(multi=True)


def _check_key(key: str, seen: set[str]) -> None:
    shown = key if len(key) <= _FIELD_ECHO else key[:_FIELD_ECHO] + "..."
    if KEY_PATTERN.fullmatch(key) is None:
        raise InvalidInput(
            f"Unknown form key {shown!r}; keys are image-<id> (a file) or text-<id> (a text), "
            "where <id> is 1-64 letters, digits, '_' or '-'",
            field=shown,
            error_code="unknown_key",
        )
    if key in seen:
        raise InvalidInput(f"{key} is sent more than once; each key must be unique", field=key,
                           error_code="duplicate_key")
    seen.add(key)


def _image(key: str, value: str | FileStorage, settings: Settings, min_side: int | None) -> Image.Image:
    if not isinstance(value, FileStorage):
        raise InvalidInput(
            f"{key} must be a file part of a {MULTIPART} body, not a text value (curl -F {key}=@photo.jpg); "
            f"an {URLENCODED} body carries texts only",
            field=key,
            error_code="image_not_a_file",
        )
    return image_item(key, value.stream.read(settings.max_image_bytes + 1), settings, min_side)


def image_item(field: str, data: bytes, settings: Settings, min_side: int | None) -> Image.Image:
    """The one image validator, whatever carried the bytes (multipart file, base64 in JSON)."""
    if len(data) > settings.max_image_bytes:
        raise PayloadTooLarge(
            f"{field} is larger than {settings.max_image_mb:g} MB (CLIP_MAX_IMAGE_MB); send a smaller file",
            field=field,
            error_code="image_too_large",
        )
    try:
        return decode_image(data, settings.max_image_pixels, min_side)
    except ImageRejected as exc:
        raise InvalidInput(f"{field} {exc}", field=field, error_code=exc.code) from None


def _text(key: str, value: str | FileStorage, settings: Settings) -> str:
    if isinstance(value, FileStorage):  # curl -F text-1=@caption.txt: accept the file's text
        data = value.stream.read(MAX_TEXT_FILE_BYTES + 1)
        if len(data) > MAX_TEXT_FILE_BYTES:
            raise InvalidInput(f"{key} is a file larger than {MAX_TEXT_FILE_BYTES} bytes; send a short text",
                               field=key, error_code="text_too_long")
        value = data.decode("utf-8", errors="replace")
    return text_item(key, value, settings)


def text_item(field: str, value: str, settings: Settings) -> str:
    """The one text validator, whatever carried the text."""
    try:
        return validate_text(value, settings.max_text_words)
    except TextRejected as exc:
        raise InvalidInput(f"{field} {exc}", field=field, error_code=exc.code) from None
