"""Text cleaning: the user's rules (7-bit printable ASCII, at most N words) before tokenising."""

from __future__ import annotations

import re

from ..errors import Code, Rejected
from ..settings import env_var

_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_WHITESPACE = re.compile(r"\s+")


class TextRejected(Rejected):
    """The text breaks a rule; the message says which and how to fix it."""


def clean_text(raw: str) -> str:
    """Keep printable ASCII only (tabs and newlines become spaces) and collapse runs of spaces."""
    spaced = _WHITESPACE.sub(" ", raw)
    return _WHITESPACE.sub(" ", _NOT_PRINTABLE_ASCII.sub("", spaced)).strip()


def validate_text(raw: str, max_words: int) -> str:
    """The cleaned text, or TextRejected when nothing usable is left or it is too long."""
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
