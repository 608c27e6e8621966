"""The parsing layer alone: werkzeug structures in, validated items or our errors out; no app, no model."""

import io

import pytest
from conftest import image_bytes
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from clipsvc.errors import ApiError
from clipsvc.parsing.form import URLENCODED, FormParser, parse_form, require_form
from clipsvc.parsing.items import ItemRules
from clipsvc.settings import Settings

RULES = ItemRules(Settings(max_items=4, max_image_mb=0.01, max_request_mb=1))


def upload(data: bytes, name: str = "x.jpg") -> FileStorage:
    return FileStorage(io.BytesIO(data), filename=name)


def test_pairs_and_order():
    files = MultiDict([("image-b", upload(image_bytes())), ("image-a", upload(image_bytes("PNG")))])
    form = MultiDict([("text-a", "a cat"), ("text-c", "a dog")])
    parsed = parse_form(form, files, RULES)
    assert [i.id for i in parsed.images] == ["b", "a"]
    assert [t.text for t in parsed.texts] == ["a cat", "a dog"]
    assert parsed.pair_ids == ["a"]
    assert parsed.ids == ["b", "a", "c"]


def test_text_sent_as_a_file_is_read():
    parsed = parse_form(MultiDict(), MultiDict([("text-1", upload(b"a caption\n", "c.txt"))]), RULES)
    assert parsed.texts[0].text == "a caption"


@pytest.mark.parametrize("form, files, status, code, field", [
    ({}, {}, 400, "empty_request", None),
    ({"caption": "x"}, {}, 400, "unknown_key", "caption"),
    ({"text-": "x"}, {}, 400, "unknown_key", "text-"),
    ({"text-a b": "x"}, {}, 400, "unknown_key", "text-a b"),
    ({"text-é": "x"}, {}, 400, "unknown_key", "text-é"),
    ({"text-" + "a" * 65: "x"}, {}, 400, "unknown_key", "text-" + "a" * 65),
    ({"t" * 1000: "x"}, {}, 400, "unknown_key", "t" * 80 + "..."),
    ({"image-1": "not a file"}, {}, 400, "image_not_a_file", "image-1"),
    ({"text-1": "🚀🚀"}, {}, 400, "empty_text", "text-1"),
    ({"text-1": "w " * 51}, {}, 400, "text_too_long", "text-1"),
    ({}, {"image-1": b""}, 400, "empty_file", "image-1"),
    ({}, {"image-1": b"hello"}, 400, "unsupported_image", "image-1"),
    ({}, {"image-1": b"\0" * 20000}, 413, "image_too_large", "image-1"),
    ({f"text-{i}": "x" for i in range(5)}, {}, 400, "too_many_items", None),
])
def test_rejections(form, files, status, code, field):
    files = MultiDict({k: upload(v) for k, v in files.items()})
    with pytest.raises(ApiError) as caught:
        parse_form(MultiDict(form), files, RULES)
    assert (caught.value.code, caught.value.error.id) == (status, code)
    assert caught.value.field == field


def test_duplicate_keys_are_refused():
    form = MultiDict([("text-1", "a"), ("text-1", "b")])
    with pytest.raises(ApiError) as caught:
        parse_form(form, MultiDict(), RULES)
    assert caught.value.error.id == "duplicate_key" and caught.value.field == "text-1"


def test_same_key_as_text_and_file_is_a_duplicate():
    with pytest.raises(ApiError, match="more than once"):
        parse_form(MultiDict([("text-1", "a")]), MultiDict([("text-1", upload(b"b"))]), RULES)


@pytest.mark.parametrize("mimetype", ["application/json", "text/plain", "", "application/x-url-encoded", "text/html"])
def test_only_forms_are_accepted(mimetype):
    with pytest.raises(ApiError) as caught:
        require_form(mimetype)
    assert caught.value.code == 415
    assert "multipart/form-data" in caught.value.description and URLENCODED in caught.value.description


@pytest.mark.parametrize("mimetype", ["multipart/form-data", URLENCODED])
def test_both_form_types_are_accepted(mimetype):
    require_form(mimetype)


def parse_urlencoded(body: bytes, content_length: int | None = -1, memory: int = 100, parts: int = 4) -> MultiDict:
    """FormParser on a urlencoded body; content_length -1 declares the body's own length, None none (chunked)."""
    parser = FormParser(max_form_memory_size=memory, max_form_parts=parts)
    declared = len(body) if content_length == -1 else content_length
    _, form, files = parser.parse(io.BytesIO(body), URLENCODED, declared)
    assert not files
    return form


@pytest.mark.parametrize("body, content_length, expected", [
    (b"text-1=a+dog&text-2=caf%C3%A9", -1, [("text-1", "a dog"), ("text-2", "café")]),
    (b"text-1=a dog", None, [("text-1", "a dog")]),  # chunked: no Content-Length
    (b"text-1=" + b"a" * 93, -1, [("text-1", "a" * 93)]),  # exactly the memory limit
    (b"a=1&b=2&c=3&d=4", -1, [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),  # exactly the parts limit
    (b"text-1=\xffdog", -1, [("text-1", "\ufffddog")]),  # not UTF-8: replaced, as in multipart text parts
    (b"", -1, []),
])
def test_urlencoded_bodies_within_the_limits_are_parsed(body, content_length, expected):
    assert list(parse_urlencoded(body, content_length).items(multi=True)) == expected


@pytest.mark.parametrize("body, content_length", [
    (b"text-1=" + b"a" * 94, -1),  # one byte over the memory limit, declared
    (b"text-1=" + b"a" * 94, None),  # the same, chunked: read one byte past the limit, then refused
    (b"x", 10_000),  # refused from the declared length alone, unread
    (b"a=1&b=2&c=3&d=4&e=5", -1),  # one field over the parts limit
    (b"&&&&", -1),
])
def test_urlencoded_bodies_over_the_limits_are_refused(body, content_length):
    with pytest.raises(RequestEntityTooLarge):
        parse_urlencoded(body, content_length)


def test_multipart_goes_to_werkzeug_unchanged():
    body = b'--b\r\nContent-Disposition: form-data; name="text-1"\r\n\r\na dog\r\n--b--\r\n'
    _, form, _ = FormParser(max_form_memory_size=100, max_form_parts=4).parse(
        io.BytesIO(body), "multipart/form-data", len(body), {"boundary": "b"})
    assert form["text-1"] == "a dog"
