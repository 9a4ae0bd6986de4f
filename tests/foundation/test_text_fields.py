"""The one-line text fields every public body uses: control and format characters are refused, whether
ASCII or not; printable text in any script passes unchanged (the check skips its character-by-character
look for printable ASCII)."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.validation import single_line

LINE = TypeAdapter(single_line(200))


@pytest.mark.parametrize("code", [*range(32), 127])
def test_every_ascii_control_character_is_refused(code: int) -> None:
    with pytest.raises(ValidationError, match="control characters"):
        LINE.validate_python(f"Ayse{chr(code)}Yilmaz")


@pytest.mark.parametrize(
    "character",
    ["\u200b", "\ufeff", "\u202e", "\u2066", "\u0085", "\ue000"],
    ids=["zero-width-space", "bom", "rtl-override", "ltr-isolate", "next-line", "private-use"],
)
def test_non_ascii_control_and_format_characters_are_refused(character: str) -> None:
    with pytest.raises(ValidationError, match="control characters"):
        LINE.validate_python(f"Ayse{character}Yilmaz")


@pytest.mark.parametrize(
    "text",
    ["Ayşe Yılmaz", "O'Brien-Smith (Kaiserslautern) #3 ~ 100%", "محمد علي", "Ольга", "می\u200cخواهم"],
)
def test_printable_text_in_any_script_passes_unchanged(text: str) -> None:
    assert LINE.validate_python(f"  {text} ") == text
