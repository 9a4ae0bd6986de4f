"""The pages after the meetings: the published minutes (public, in the reader's language; the minutes
themselves stay in the language they were written in) and the attendance list for a clipboard (staff, sorted
by name, with a signature column).

The minutes' Markdown is rendered by markdown-it-py with raw HTML off, no images, and links only to http
and https addresses (anything else stays text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markupsafe import Markup

from shared import i18n
from shared.pages import Frame, environment

MINUTES = "/v1/working-groups/{wg}/meetings/{number}/minutes"

_env = environment(Path(__file__).resolve().parent / "templates")
_MINUTES = _env.get_template("minutes.html.j2")
_ATTENDANCE = _env.get_template("attendance.html.j2")


def _headings_below_the_title(state: StateCore) -> None:
    """The page's title is its one ``h1``: the minutes' headings start at ``h2``."""
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    md.validateLink = lambda url: url.strip().lower().startswith(("https://", "http://"))  # type: ignore[method-assign]
    md.core.ruler.push("headings_below_the_title", _headings_below_the_title)
    return md


_MD = _markdown()


def render_markdown(text: str) -> Markup:
    """Safe HTML of the minutes' Markdown: whatever was typed as HTML is shown as text."""
    return Markup(_MD.render(text))


def minutes_link(wg_id: str, number: int) -> str:
    return MINUTES.format(wg=wg_id, number=number)


def minutes_page(frame: Frame, minutes: dict[str, Any], meeting: Any, versions: list[int]) -> str:
    title = frame.pgettext(
        "page",
        "Minutes of %(working_group)s, meeting %(number)s",
        working_group=minutes["working_group"]["title"],
        number=minutes["meeting"],
    )
    when = i18n.format_datetime(meeting.starts_at, frame.language) if meeting.starts_at else ""
    base = minutes_link(minutes["working_group"]["id"], minutes["meeting"])
    return frame.render(
        title,
        _MINUTES,
        minutes=minutes,
        summary=render_markdown(minutes["summary_md"]),
        when=when,
        iso=meeting.starts_at.astimezone(i18n.BERLIN).isoformat() if meeting.starts_at else "",
        older=[
            {"version": v, "href": f"{base}?version={v}&lang={frame.language}"}
            for v in reversed(versions)
            if v != minutes["version"]
        ],
        newest=versions[-1] if versions else minutes["version"],
    )


def attendance_page(frame: Frame, data: dict[str, Any]) -> str:
    """The list for a clipboard at the door (staff; printed): name, organisation, code, present, signature."""
    title = frame.pgettext(
        "page",
        "Attendance list: %(working_group)s, meeting %(number)s",
        working_group=data["working_group"]["title"],
        number=data["meeting"]["number"],
    )
    return frame.render(title, _ATTENDANCE, data=data)
