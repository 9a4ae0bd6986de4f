"""The gettext catalogs: complete in every language, and in step with the templates and pages.

A sentence added to a template without a translation, an empty or fuzzy entry, a translation that
drops or renames a placeholder, or a catalog not updated after a template changed fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po
from pydantic import ValidationError

from shared import i18n, languages
from shared.events import Recipient
from shared.languages import LANGUAGES
from shared.pages import LANGUAGE_NAMES

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def load(path: Path) -> Catalog:
    with path.open("rb") as po:
        return read_po(po)


def keys(catalog: Catalog) -> set[tuple[str | None, str]]:
    return {(m.context, str(m.id)) for m in catalog if m.id}


def test_every_language_has_a_catalog() -> None:
    assert set(i18n.languages()) == set(LANGUAGES)


def test_the_table_of_languages_is_the_single_source() -> None:
    """A language is declared once, in ``shared.languages.TABLE``: the type of the ``language`` fields,
    the allowed values in the contracts, the language switch, the text direction and the catalogs on
    disk all follow it."""
    codes = list(languages.TABLE)
    assert list(LANGUAGES) == codes
    assert list(get_args(languages.Language)) == codes
    assert sorted(i18n.languages()) == sorted(codes)
    assert list(LANGUAGE_NAMES) == codes
    assert all(LANGUAGE_NAMES[code] == spoken.name for code, spoken in languages.TABLE.items())
    assert [code for code in codes if i18n.text_direction(code) == "rtl"] == ["ar"]
    schema = Recipient.model_json_schema()["properties"]["language"]
    assert schema["enum"] == codes and schema["type"] == "string"
    assert Recipient.model_validate({"email": "a@example.org", "name": "", "language": "uk"}).language == "uk"
    with pytest.raises(ValidationError):
        Recipient.model_validate({"email": "a@example.org", "name": "", "language": "fr"})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_entry_is_translated_and_keeps_its_placeholders(lang: str) -> None:
    catalog = load(i18n.catalog_path(lang))
    assert str(catalog.locale) == lang
    problems = []
    for message in catalog:
        if not message.id:
            continue
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        if not str(message.string).strip():
            problems.append(f"untranslated or empty: {message.id!r}")
        elif sorted(PLACEHOLDER.findall(str(message.string))) != sorted(PLACEHOLDER.findall(str(message.id))):
            problems.append(f"placeholders differ: {message.id!r} -> {message.string!r}")
    problems += [f"obsolete: {key!r}" for key in catalog.obsolete]
    assert problems == []


def test_catalogs_are_in_step_with_the_templates_and_pages(tmp_path: Path) -> None:
    """Extract the sentences again (as a translator's `pybabel extract` would) and compare."""
    extracted = tmp_path / "messages.pot"
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-o", str(extracted), "--no-location",
         "--sort-output", "--omit-header", str(ROOT)]
    )  # fmt: skip
    wanted = keys(load(extracted))
    assert len(wanted) > 100
    assert keys(load(i18n.LOCALE_DIR / "messages.pot")) == wanted, "run pybabel extract (README)"
    for lang in LANGUAGES:
        assert keys(load(i18n.catalog_path(lang))) == wanted, f"run pybabel update for {lang} (README)"


def test_a_language_without_a_catalog_reads_german() -> None:
    assert i18n.translations("de").gettext("Kind regards") == "Mit freundlichen Grüßen"
    assert i18n.translations("fr").gettext("Kind regards") == "Mit freundlichen Grüßen"  # fallback
