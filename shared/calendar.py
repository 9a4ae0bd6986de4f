"""Calendar entries (RFC 5545) for a registration's meetings: one VEVENT per dated meeting.

The one builder behind the calendar attached to mails (notification) and the calendar download on the
registration's page (registration). The UID is stable per registration and meeting, so a calendar
program updates its entry when a later file carries the same UID with a higher SEQUENCE
(``meeting.sequence``, raised on every change). Times are written in UTC. The entry's title is in the
person's language (the catalogs' context ``calendar``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from icalendar import Calendar, Event

from shared import i18n

UID_DOMAIN = "mitwirkung.kaiserslautern.de"
DEFAULT_DURATION = timedelta(hours=2)


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC)


def event_uid(registration_id: str, meeting_number: int) -> str:
    return f"{registration_id}-meeting-{meeting_number}@{UID_DOMAIN}"


def build_calendar(
    registration_id: str,
    title: str,
    meetings: Iterable[Mapping[str, Any]],
    method: str = "PUBLISH",
    *,
    language: str,
) -> bytes | None:
    """The iCalendar file of the dated meetings, or None when none has a date; its texts in ``language``
    (German if it has no catalog). ``method`` CANCEL marks every entry cancelled; otherwise a meeting
    marked ``cancelled`` is."""
    catalog = i18n.translations(language)
    summary = str(catalog.pgettext("calendar", "Working group %(working_group)s – meeting %(number)s"))
    cal = Calendar()
    cal.add("prodid", "-//Stadt Kaiserslautern//Mitwirkung//DE")
    cal.add("version", "2.0")
    cal.add("method", method)
    count = 0
    for meeting in meetings:
        starts = _dt(meeting.get("starts_at"))
        if starts is None:
            continue
        ends = _dt(meeting.get("ends_at")) or starts + DEFAULT_DURATION
        vevent = Event()
        vevent.add("uid", event_uid(registration_id, int(meeting["number"])))
        vevent.add("sequence", int(meeting.get("sequence", 0)))
        vevent.add("dtstamp", datetime.now(UTC))
        vevent.add("dtstart", starts)
        vevent.add("dtend", ends)
        vevent.add("summary", summary % {"working_group": title, "number": meeting["number"]})
        location = ", ".join(p for p in (meeting.get("venue"), meeting.get("address")) if p)
        if location:
            vevent.add("location", location)
        cancelled = method == "CANCEL" or bool(meeting.get("cancelled"))
        vevent.add("status", "CANCELLED" if cancelled else "CONFIRMED")
        cal.add_component(vevent)
        count += 1
    return cal.to_ical() if count else None
