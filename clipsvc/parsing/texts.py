"""Text cleaning: the user's rules (7-bit printable ASCII, at most N words) before tokenising."""

from __future__ import annotations

import re

from ..errors import Code, Rejected
from ..settings import MAX_TEXT_CHARS, env_var

_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_WHITESPACE = re.compile(r"\s+")


class TextRejected(Rejected):
    """The text breaks a rule; the message says which and how to fix it."""


def clean_text(raw: str) -> str:
    """Keep printable ASCII only (tabs and newlines become spaces) and collapse runs of spaces."""
    spaced = _WHITESPACE.sub(" ", raw)
    return _WHITESPACE.sub(" ", _NOT_PRINTABLE_ASCII.sub("", spaced)).strip()


def validate_text(raw: str, max_words: int) -> str:
    """The cleaned text, or TextRejected when nothing usable is left or it is too long. The length is checked
    first, on the text as sent: a single word of megabytes would otherwise cost the cleaning and the tokenizer
    seconds of a core, although CLIP reads only its first 77 tokens."""
    if len(raw) > MAX_TEXT_CHARS:
        raise TextRejected(f"has {len(raw)} characters; the limit is {MAX_TEXT_CHARS}, more than the model reads "
                           "(its first 77 tokens); send a shorter text", Code.TEXT_TOO_LONG)
    text = clean_text(raw)
    if not text:
        raise TextRejected(
            "is empty after removing characters outside printable ASCII; send English text",
            Code.EMPTY_TEXT,
        )
    words = len(text.split(" "))
    if words > max_words:
        raise TextRejected(f"has {words} words; the limit is {max_words} ({env_var('max_text_words')})",
                           Code.TEXT_TOO_LONG)
    return text
