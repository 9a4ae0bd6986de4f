"""Translations: one gettext catalog per language, shared by the mails and the registration pages.

``shared/locale/<language>/LC_MESSAGES/messages.po`` is what a translator edits (Poedit, Weblate);
``shared/locale/messages.pot`` is the template extracted from the sources (``babel.cfg``). The
catalogs are compiled in memory on first use, so neither a clone nor an install needs a ``.mo`` step;
fuzzy entries are left out, as ``pybabel compile`` would. A language is its catalog plus its line in
``shared.languages.TABLE`` (name, text direction): adding one is ``pybabel init -l <code>`` and that
line (see the README).
"""

from __future__ import annotations

import functools
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import BaseLoader, Environment, StrictUndefined, nodes, select_autoescape
from jinja2.ext import InternationalizationExtension

from shared.languages import direction

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
FALLBACK_LANGUAGE = "de"
BERLIN = ZoneInfo("Europe/Berlin")  # the city's time zone: dates in mails, pages and the catalog seed


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def languages() -> list[str]:
    """The languages that have a catalog."""
    return sorted(_catalog_languages())


@functools.cache
def _catalog_languages() -> frozenset[str]:
    # The catalogs ship with the code: looked up once, not with a file system call per mail.
    return frozenset(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def resolve(language: str) -> str:
    """The language itself if it has a catalog, else the fallback (German)."""
    return language if language in _catalog_languages() else FALLBACK_LANGUAGE


def text_direction(language: str) -> str:
    return direction(language)


@functools.cache
def translations(language: str) -> Translations:
    """The compiled catalog of a language (of the fallback if it has none)."""
    with catalog_path(resolve(language)).open("rb") as po:
        catalog = read_po(po, locale=resolve(language))
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


def format_datetime(value: Any, language: str = FALLBACK_LANGUAGE) -> str:
    """The full date and a short time in Berlin time ("Mittwoch, 6. März 2019, 18:00"), as mails and
    pages show a meeting."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _format_datetime_text(value, language)
    return _format_datetime(value, language)


@functools.lru_cache(maxsize=4096)
def _format_datetime_text(value: str, language: str) -> str:
    # Cached: every mail of a working group shows the same meetings, and Babel's formatting was a tenth
    # of the cost of rendering a mail.
    return _format_datetime(datetime.fromisoformat(value), language)


def _format_datetime(value: datetime, language: str) -> str:
    local = value.astimezone(BERLIN)
    language = resolve(language)
    return f"{format_date(local, format='full', locale=language)}, {format_time(local, format='short', locale=language)}"


def format_time_of_day(value: Any, language: str = FALLBACK_LANGUAGE) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_time(value.astimezone(BERLIN), format="short", locale=resolve(language))


def gettext_callables(language: str) -> dict[str, Any]:
    """What the templates' ``{% trans %}`` blocks call, passed with each render (one environment serves
    all languages)."""
    t = translations(language)
    return {"gettext": t.gettext, "ngettext": t.ngettext, "pgettext": t.pgettext, "npgettext": t.npgettext}


class _TranslatedAtCompileTime(InternationalizationExtension):
    """``{% trans %}`` for an environment of one language: a sentence without a plural is looked up in the
    catalog once, when the template is compiled, and becomes a constant of the compiled template (with
    its placeholders filled in and escaped at render time, exactly as the runtime lookup would do).
    Plural forms are still looked up when rendering (the count is known only then)."""

    def _make_node(  # type: ignore[override]
        self,
        singular: str,
        plural: str | None,
        context: str | None,
        variables: dict[str, nodes.Expr],
        plural_expr: nodes.Expr | None,
        vars_referenced: bool,
        num_called_num: bool,
    ) -> nodes.Output:
        language = getattr(self.environment, "compile_time_language", None)
        if language is None or plural_expr is not None:
            return super()._make_node(
                singular, plural, context, variables, plural_expr, vars_referenced, num_called_num
            )
        if not vars_referenced:
            singular = singular.replace("%%", "%")
        catalog = translations(language)
        text = catalog.pgettext(context, singular) if context is not None else catalog.gettext(singular)
        node: nodes.Expr = nodes.MarkSafeIfAutoescape(nodes.Const(text))
        if variables:
            node = nodes.Mod(
                node, nodes.Dict([nodes.Pair(nodes.Const(key), value) for key, value in variables.items()])
            )
        return nodes.Output([node])


def template_environment(
    loader: BaseLoader, *, html_suffix: str = "html.j2", language: str | None = None
) -> Environment:
    """A Jinja environment with the i18n extension; templates whose names end in ``html_suffix`` are
    autoescaped, and every value in a translated sentence is escaped with them. With ``language``, the
    environment serves that language alone and translates its sentences when it compiles a template
    (a mail is rendered for every recipient: the lookups would otherwise be half of its rendering)."""
    env = Environment(
        loader=loader,
        extensions=[_TranslatedAtCompileTime],
        autoescape=select_autoescape(enabled_extensions=(html_suffix,), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # The templates ship with the code: no file system check for a newer version on every render.
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True
    if language is not None:
        env.compile_time_language = resolve(language)  # type: ignore[attr-defined]
    return env
