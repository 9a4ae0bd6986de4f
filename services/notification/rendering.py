"""Mail templates: one per mail kind and part, every sentence from the language's gettext catalog.

``templates/<template>.subject.j2``, ``.txt.j2`` and ``.html.j2`` make one mail; the HTML parts extend
``templates/_layout.html.j2`` (``lang``, ``dir`` — ``rtl`` for Arabic — and the footer), the text parts
include ``templates/_footer.txt.j2``. The sentences live in ``shared/locale`` (see ``shared.i18n``);
a language without a catalog gets German.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, TemplateNotFound

from services.notification.mail import one_line
from shared import i18n
from shared.observability import get_logger

log = get_logger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
FALLBACK_LANGUAGE = i18n.FALLBACK_LANGUAGE
PARTS = ("subject", "txt", "html")


@dataclass(frozen=True)
class RenderedMail:
    language: str
    subject: str
    text: str
    html: str


def _format_datetime(value: Any, language: str = "de") -> str:
    return i18n.format_datetime(value, language)


class TemplateRenderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.directory = directory
        self._loader = FileSystemLoader(str(directory))
        # One environment per language (see ``i18n.template_environment``), made on first use.
        self._environments: dict[str, Environment] = {}

    def environment(self, language: str) -> Environment:
        env = self._environments.get(language)
        if env is None:
            env = i18n.template_environment(self._loader, language=language)
            env.filters["datetime"] = _format_datetime
            env.filters["one_line"] = lambda value: one_line(str(value))
            self._environments[language] = env
        return env

    def languages(self) -> list[str]:
        return i18n.languages()

    def resolve_language(self, language: str) -> str:
        resolved = i18n.resolve(language)
        if resolved != language:
            log.warning("no catalog in the recipient's language; using German", language=language)
        return resolved

    def render(
        self, template: str, language: str, context: dict[str, Any], footer: dict[str, str]
    ) -> RenderedMail:
        language = self.resolve_language(language)
        env = self.environment(language)
        ctx = {
            **context,
            **i18n.gettext_callables(language),
            "lang": language,
            "dir": i18n.text_direction(language),
            "footer": footer,
        }
        try:
            subject, text, html = (env.get_template(f"{template}.{part}.j2").render(ctx) for part in PARTS)
        except TemplateNotFound as exc:
            raise LookupError(f"template {template} is incomplete: {exc}") from exc
        return RenderedMail(language=language, subject=one_line(subject), text=text, html=html)
