"""Input types for public endpoints: strict, trimmed, free of control characters.

Whatever a person types may end up in a mail, a CSV cell or an HTML page. Control characters (CR/LF
above all: header injection, CVE-2024-6923) are refused here, at the edge; templates escape the rest.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StrictBool, StringConstraints


def _no_control_characters(value: str) -> str:
    if value is None:  # an optional query parameter left out
        return value
    if value.isascii() and value.isprintable():
        return value  # printable ASCII holds no control or format character: no need to look at each
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in ("\u200c", "\u200d"):
            raise ValueError("must not contain control characters")
    return value


# Bidirectional overrides and isolates reorder what a reader sees (Trojan Source, CVE-2021-42574).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _no_control_characters_multiline(value: str) -> str:
    for ch in value:
        if ch in "\n\t":
            continue
        if unicodedata.category(ch) in ("Cc", "Cs", "Co") or ch in BIDI_CONTROLS:
            raise ValueError("must not contain control characters")
    return value.replace("\r\n", "\n")


def _ascii_local_part(value: str) -> str:
    """The mail relay cannot deliver to a non-ASCII local part (no SMTPUTF8): refuse it at intake, so
    nobody waits for a mail that never comes."""
    local, _, _ = str(value).rpartition("@")
    if not local.isascii():
        raise ValueError("the part before @ must use ASCII letters only")
    return value


def _normalise(value: str) -> str:
    return unicodedata.normalize("NFC", value)


# For a text query parameter (``Annotated[str | None, Query(...), NO_CONTROL_CHARACTERS]``): a NUL, which
# Postgres refuses in text, or any other control character is a 422 naming the parameter, not a 500.
NO_CONTROL_CHARACTERS = AfterValidator(_no_control_characters)


def single_line(max_length: int, min_length: int = 1) -> object:
    """A one-line text field: trimmed, NFC-normalised, no control characters at all."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_normalise),
        AfterValidator(_no_control_characters),
    ]


def multi_line(max_length: int, min_length: int = 1) -> object:
    """A text body: line breaks and tabs allowed, other control characters refused."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_normalise),
        AfterValidator(_no_control_characters_multiline),
    ]


Email = Annotated[
    EmailStr,
    StringConstraints(max_length=254),
    AfterValidator(_no_control_characters),
    AfterValidator(_ascii_local_part),
]


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error (API.md), strings are not coerced from numbers."""

    model_config = ConfigDict(extra="forbid", strict=False, str_strip_whitespace=True)


def _consent_given(value: bool) -> bool:
    if value is not True:
        raise ValueError("consent to the privacy notice is required")
    return value


# Consent to the privacy notice: only the JSON value true ("yes", 1 or "on" are not consent).
Consent = Annotated[StrictBool, AfterValidator(_consent_given)]
# Honeypot: invisible in the city's form; a person leaves it empty, a bot fills it.
Honeypot = Annotated[str | None, Field(default=None, max_length=500)]
