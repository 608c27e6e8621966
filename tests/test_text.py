import pytest

from clipsvc.parsing.texts import TextRejected, clean_text, validate_text


@pytest.mark.parametrize("raw, cleaned", [
    ("Man staring at the moon", "Man staring at the moon"),
    ("  tabs\tand\nnewlines  ", "tabs and newlines"),
    ("café crème", "caf crme"),
    ("emoji 🚀 rocket", "emoji rocket"),
    ("nul\x00byte and \x07bell", "nulbyte and bell"),
    ("non\u00a0breaking space", "non breaking space"),
])
def test_clean_text_keeps_printable_ascii(raw, cleaned):
    assert clean_text(raw) == cleaned


@pytest.mark.parametrize("raw, code", [
    ("", "empty_text"),
    ("   \n\t ", "empty_text"),
    ("日本語のテキスト", "empty_text"),
    (" ".join(["word"] * 51), "text_too_long"),
])
def test_rejected_texts(raw, code):
    with pytest.raises(TextRejected) as caught:
        validate_text(raw, max_words=50)
    assert caught.value.error.id == code


def test_fifty_words_are_accepted():
    assert validate_text(" ".join(["word"] * 50), max_words=50).count("word") == 50
