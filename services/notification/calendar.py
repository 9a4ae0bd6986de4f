"""What a mail carries besides its text: calendar entries attached to the mails of confirmed participants (built by ``shared.calendar``, the
same builder as the calendar download on the registration's page). A cancelled meeting is sent with
``METHOD:CANCEL``. The entries' titles are in the mail's language.

A cancelled registration takes its entries out of the resident's calendar: ``METHOD:CANCEL`` with the
UIDs of the confirmation (or promotion) and a SEQUENCE one above the meeting's, so it outranks the last
entry the person was sent. Someone who cancels from the waitlist never had an entry, and gets none.

A confirmation or promotion also carries the person's check-in code as a QR image (``check_in_image``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.calendar import build_calendar, event_uid
from shared.qr import qr_png

__all__ = [
    "CALENDAR_TEMPLATES",
    "CANCEL_TEMPLATES",
    "CHECK_IN_TEMPLATES",
    "CalendarPart",
    "calendar_for",
    "check_in_image",
    "event_uid",
]

CALENDAR_TEMPLATES = frozenset(
    {
        "registration_confirmed",
        "registration_promoted",
        "registration_cancelled",
        "meeting_rescheduled",
        "meeting_cancelled",
    }
)
CANCEL_TEMPLATES = frozenset({"meeting_cancelled", "registration_cancelled"})
# A registration cancelled from these states had calendar entries (an unknown state: assume it had).
HAD_ENTRIES = frozenset({None, "confirmed"})


@dataclass(frozen=True)
class CalendarPart:
    data: bytes
    method: str


def calendar_for(template: str, context: dict[str, Any], language: str) -> CalendarPart | None:
    """The calendar part of a mail in ``language`` (the mail's), or None when the mail carries none."""
    if template not in CALENDAR_TEMPLATES:
        return None
    if template == "registration_cancelled" and context.get("previous_status") not in HAD_ENTRIES:
        return None
    meetings = context.get("meetings") or ([context["meeting"]] if context.get("meeting") else [])
    method = "CANCEL" if template in CANCEL_TEMPLATES else "PUBLISH"
    # The registration's own cancellation changes no meeting: it outranks the meeting's last version.
    sequence_bump = 1 if template == "registration_cancelled" else 0
    title = context.get("working_group", {}).get("title", "")
    if sequence_bump:
        meetings = [{**m, "sequence": int(m.get("sequence", 0)) + sequence_bump} for m in meetings]
    data = build_calendar(str(context.get("registration_id", "")), title, meetings, method, language=language)
    return CalendarPart(data, method) if data is not None else None


# The mails that admit a person to the meetings carry their check-in code's QR as an image (issue 24).
CHECK_IN_TEMPLATES = frozenset({"registration_confirmed", "registration_promoted"})


def check_in_image(template: str, context: dict[str, Any]) -> tuple[str, bytes] | None:
    """``(file name, PNG)`` of the check-in code's QR for a confirmation or promotion, else None."""
    code = context.get("check_in_code")
    if template not in CHECK_IN_TEMPLATES or not isinstance(code, str) or not code:
        return None
    return "check-in-code.png", qr_png(code)
