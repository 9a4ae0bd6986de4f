"""Mail templates: jinja2 files per language, HTML autoescaped, German as the fallback.

``templates/<language>/<template>.subject.j2``, ``.txt.j2`` and ``.html.j2`` make one mail; the HTML
parts extend ``templates/_layout.html.j2``, which sets ``lang`` and ``dir`` (``rtl`` for Arabic) and adds
the footer. Adding a language is adding its folder.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

from shared.observability import get_logger

log = get_logger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
BERLIN = ZoneInfo("Europe/Berlin")
RTL_LANGUAGES = frozenset({"ar"})
FALLBACK_LANGUAGE = "de"


@dataclass(frozen=True)
class RenderedMail:
    language: str
    subject: str
    text: str
    html: str


def _format_datetime(value: Any, language: str = "de") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    # The full date and a short time ("Mittwoch, 6. März 2019, 18:00"), in Berlin time.
    local = value.astimezone(BERLIN)
    return f"{format_date(local, format='full', locale=language)}, {format_time(local, format='short', locale=language)}"


def _one_line(value: Any) -> str:
    """For subjects: whatever a person typed must not break the header line."""
    return " ".join(str(value).split())


class TemplateRenderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.directory = directory
        self.env = Environment(
            loader=FileSystemLoader(str(directory)),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["datetime"] = _format_datetime
        self.env.filters["one_line"] = _one_line

    def languages(self) -> list[str]:
        return sorted(p.name for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith("_"))

    @functools.lru_cache(maxsize=512)  # noqa: B019 (one renderer per process; templates are files)
    def has_template(self, language: str, template: str) -> bool:
        folder = self.directory / language
        return all((folder / f"{template}.{part}.j2").exists() for part in ("subject", "txt", "html"))

    def resolve_language(self, language: str, template: str) -> str:
        if self.has_template(language, template):
            return language
        log.warning(
            "no template in the recipient's language; using German", language=language, template=template
        )
        return FALLBACK_LANGUAGE

    def render(
        self, template: str, language: str, context: dict[str, Any], footer: dict[str, str]
    ) -> RenderedMail:
        language = self.resolve_language(language, template)
        ctx = {
            **context,
            "lang": language,
            "dir": "rtl" if language in RTL_LANGUAGES else "ltr",
            "footer": footer,
        }
        try:
            subject = self.env.get_template(f"{language}/{template}.subject.j2").render(ctx)
            text = self.env.get_template(f"{language}/{template}.txt.j2").render(ctx)
            html = self.env.get_template(f"{language}/{template}.html.j2").render(ctx)
        except TemplateNotFound as exc:
            raise LookupError(f"template {template} is incomplete for {language}: {exc}") from exc
        return RenderedMail(language=language, subject=_one_line(subject), text=text, html=html)
