"""The parsing layer alone: werkzeug structures in, validated items or our errors out; no app, no model."""

import io

import pytest
from conftest import image_bytes
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from clipsvc.errors import ApiError
from clipsvc.parsing.form import URLENCODED, FormParser, parse_form, parts_limit, require_form
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


PARTS = parts_limit(1)  # the parsers below allow one item: 18 parts


def parse_urlencoded(body: bytes, content_length: int | None = -1, memory: int = 100) -> MultiDict:
    """FormParser on a urlencoded body; content_length -1 declares the body's own length, None none (chunked)."""
    parser = FormParser(1, max_form_memory_size=memory)
    declared = len(body) if content_length == -1 else content_length
    _, form, files = parser.parse(io.BytesIO(body), URLENCODED, declared)
    assert not files
    return form


@pytest.mark.parametrize("body, content_length, expected", [
    (b"text-1=a+dog&text-2=caf%C3%A9", -1, [("text-1", "a dog"), ("text-2", "café")]),
    (b"text-1=a dog", None, [("text-1", "a dog")]),  # chunked: no Content-Length
    (b"text-1=" + b"a" * 93, -1, [("text-1", "a" * 93)]),  # exactly the memory limit
    (b"&".join([b"f=1"] * PARTS), -1, [("f", "1")] * PARTS),  # exactly the parts limit
    (b"text-1=\xffdog", -1, [("text-1", "\ufffddog")]),  # not UTF-8: replaced, as in multipart text parts
    (b"", -1, []),
])
def test_urlencoded_bodies_within_the_limits_are_parsed(body, content_length, expected):
    assert list(parse_urlencoded(body, content_length).items(multi=True)) == expected


@pytest.mark.parametrize("body, content_length", [
    (b"text-1=" + b"a" * 94, -1),  # one byte over the memory limit, declared
    (b"text-1=" + b"a" * 94, None),  # the same, chunked: read one byte past the limit, then refused
    (b"x", 10_000),  # refused from the declared length alone, unread
])
def test_urlencoded_bodies_over_the_memory_limit_are_refused(body, content_length):
    with pytest.raises(RequestEntityTooLarge):
        parse_urlencoded(body, content_length)


@pytest.mark.parametrize("body", [b"&".join([b"f=1"] * (PARTS + 1)), b"&" * PARTS], ids=["one over", "empty"])
def test_urlencoded_bodies_over_the_parts_limit_get_the_item_limits_answer(body):
    with pytest.raises(ApiError) as caught:
        parse_urlencoded(body)
    assert caught.value.error.id == "too_many_items" and "CLIP_MAX_ITEMS" in caught.value.description


def multipart(count: int, boundary: bytes = b"b") -> bytes:
    """`count` text parts named text-<i>, then the closing delimiter."""
    parts = b"".join(b'--%s\r\nContent-Disposition: form-data; name="text-%d"\r\n\r\na dog\r\n' % (boundary, i)
                     for i in range(count))
    return parts + b"--%s--\r\n" % boundary


def parse_multipart(body: bytes, boundary: str = "b", stream=None, memory: int = 100_000) -> MultiDict:
    parser = FormParser(1, max_form_memory_size=memory)
    _, form, _ = parser.parse(stream or io.BytesIO(body), "multipart/form-data", len(body), {"boundary": boundary})
    return form


def test_multipart_goes_to_werkzeug_unchanged():
    assert parse_multipart(multipart(1))["text-0"] == "a dog"


@pytest.mark.parametrize("read_size", [1, 3, 7, 65536])
def test_multipart_parts_are_counted_across_reads(read_size):
    """A delimiter split between two reads counts once: the parts limit holds exactly, whatever the reads."""
    class Trickle(io.BytesIO):
        def read(self, size=-1):
            return super().read(min(size, read_size) if size > 0 else read_size)

    body = multipart(PARTS, b"Xy")
    assert len(parse_multipart(body, "Xy", Trickle(body))) == PARTS
    over = multipart(PARTS + 1, b"Xy")
    with pytest.raises(ApiError) as caught:
        parse_multipart(over, "Xy", Trickle(over))
    assert caught.value.error.id == "too_many_items"


def test_a_multipart_field_over_the_memory_limit_is_still_too_large():
    body = b'--b\r\nContent-Disposition: form-data; name="text-1"\r\n\r\n' + b"a" * 200 + b"\r\n--b--\r\n"
    with pytest.raises(RequestEntityTooLarge):
        parse_multipart(body, memory=100)


@pytest.mark.parametrize("boundary", ["", "bé"])
def test_a_multipart_body_without_a_usable_boundary_is_an_empty_form(boundary):
    assert not parse_multipart(multipart(1), boundary)
