"""Calendar entries attached to the mails of confirmed participants (built by ``shared.calendar``, the
same builder as the calendar download on the registration's page). A cancelled meeting is sent with
``METHOD:CANCEL``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.calendar import build_calendar, event_uid

__all__ = ["CALENDAR_TEMPLATES", "CalendarPart", "calendar_for", "event_uid"]

CALENDAR_TEMPLATES = frozenset(
    {"registration_confirmed", "registration_promoted", "meeting_rescheduled", "meeting_cancelled"}
)


@dataclass(frozen=True)
class CalendarPart:
    data: bytes
    method: str


def calendar_for(template: str, context: dict[str, Any], recipient_email: str) -> CalendarPart | None:
    if template not in CALENDAR_TEMPLATES:
        return None
    meetings = context.get("meetings") or ([context["meeting"]] if context.get("meeting") else [])
    method = "CANCEL" if template == "meeting_cancelled" else "PUBLISH"
    title = context.get("working_group", {}).get("title", "")
    data = build_calendar(str(context.get("registration_id", "")), title, meetings, method)
    return CalendarPart(data, method) if data is not None else None
