"""A resident's calendar, as a calendar program builds it from the .ics parts of their mails."""

from __future__ import annotations

from dataclasses import dataclass

from icalendar import Calendar

from tests.support.smtp import ReceivedMail


@dataclass(frozen=True)
class Entry:
    sequence: int
    status: str  # CONFIRMED or CANCELLED
    method: str


def calendar_parts(mail: ReceivedMail) -> list[Calendar]:
    return [
        Calendar.from_ical(part.get_payload(decode=True))
        for part in mail.message.walk()
        if part.get_content_type() == "text/calendar"
    ]


def calendar_of(mails: list[ReceivedMail]) -> dict[str, Entry]:
    """Apply every part in the order the mails arrived (iTIP): an update replaces an entry unless it carries
    a lower SEQUENCE than the one it has; ``METHOD:CANCEL`` cancels it."""
    entries: dict[str, Entry] = {}
    for mail in mails:
        for cal in calendar_parts(mail):
            method = str(cal.get("METHOD", "PUBLISH"))
            for event in cal.walk("VEVENT"):
                uid = str(event["UID"])
                sequence = int(event.get("SEQUENCE", 0))
                current = entries.get(uid)
                if current is not None and sequence < current.sequence:
                    continue
                status = "CANCELLED" if method == "CANCEL" else str(event.get("STATUS", "CONFIRMED"))
                entries[uid] = Entry(sequence, status, method)
    return entries
