"""Calendar entries (RFC 5545) for confirmed participants: one VEVENT per dated meeting.

The UID is stable per registration and meeting, so a calendar program updates its entry when a later
mail carries the same UID with a higher SEQUENCE (``meeting.sequence``, raised on every change); a
cancelled meeting is sent with ``METHOD:CANCEL``. Times are written in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from icalendar import Calendar, Event

UID_DOMAIN = "mitwirkung.kaiserslautern.de"
DEFAULT_DURATION = timedelta(hours=2)
CALENDAR_TEMPLATES = frozenset(
    {"registration_confirmed", "registration_promoted", "meeting_rescheduled", "meeting_cancelled"}
)


@dataclass(frozen=True)
class CalendarPart:
    data: bytes
    method: str


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC)


def event_uid(registration_id: str, meeting_number: int) -> str:
    return f"{registration_id}-meeting-{meeting_number}@{UID_DOMAIN}"


def calendar_for(template: str, context: dict[str, Any], recipient_email: str) -> CalendarPart | None:
    if template not in CALENDAR_TEMPLATES:
        return None
    registration_id = str(context.get("registration_id", ""))
    meetings = context.get("meetings") or ([context["meeting"]] if context.get("meeting") else [])
    method = "CANCEL" if template == "meeting_cancelled" else "PUBLISH"
    title = context.get("working_group", {}).get("title", "")
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
        vevent.add("summary", f"Arbeitskreis {title} – {meeting['number']}. Termin")
        location = ", ".join(p for p in (meeting.get("venue"), meeting.get("address")) if p)
        if location:
            vevent.add("location", location)
        if method == "CANCEL" or meeting.get("cancelled"):
            vevent.add("status", "CANCELLED")
        else:
            vevent.add("status", "CONFIRMED")
        cal.add_component(vevent)
        count += 1
    if count == 0:
        return None
    return CalendarPart(cal.to_ical(), method)
