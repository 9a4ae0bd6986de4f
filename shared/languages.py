"""The languages residents are served in: one table, the only place a language is declared.

Everything else is derived from it: the pydantic type of the events' and requests' ``language`` fields
(a language code as a string, one of the table's keys), the language switch of the pages (each name in
itself) and the text direction of pages and mails. Adding a language is one line here plus its catalog,
``shared/locale/<code>/LC_MESSAGES/messages.po`` (see the README, "Translations"); a test checks that
the table and the catalogs name the same languages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal


@dataclass(frozen=True)
class Spoken:
    """One language: its name in itself and the direction its text runs in."""

    name: str
    direction: Literal["ltr", "rtl"] = "ltr"


TABLE: dict[str, Spoken] = {
    "de": Spoken("Deutsch"),
    "en": Spoken("English"),
    "tr": Spoken("Türkçe"),
    "ru": Spoken("Русский"),
    "ar": Spoken("العربية", "rtl"),
    "uk": Spoken("Українська"),
}

LANGUAGES: tuple[str, ...] = tuple(TABLE)

if TYPE_CHECKING:
    # A type checker cannot read a Literal built at run time; to it a language is a string.
    Language = str
else:
    # Literal["de", "en", ...]: validated against the table, in JSON a string (an enum in the schemas).
    Language = Literal[LANGUAGES]


def direction(code: str) -> Literal["ltr", "rtl"]:
    """The text direction of a language (left to right for one not in the table)."""
    spoken = TABLE.get(code)
    return spoken.direction if spoken is not None else "ltr"
