"""The five working groups of the city's announcement of 26 Feb 2019 (``shared/seed`` in the docs).

Each has its first meeting as announced (Europe/Berlin) and a second meeting whose date is not yet set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.i18n import BERLIN


@dataclass(frozen=True)
class SeedMeeting:
    starts_at: datetime | None
    venue: str
    address: str


@dataclass(frozen=True)
class SeedWorkingGroup:
    id: str
    title: str
    first: SeedMeeting


def _at(month: int, day: int, hour: int) -> datetime:
    return datetime(2019, month, day, hour, 0, tzinfo=BERLIN)


WORKING_GROUPS: tuple[SeedWorkingGroup, ...] = (
    SeedWorkingGroup(
        "bildung-beruf-arbeit",
        "Bildung, Beruf, Arbeit, Übergang in Arbeit, Selbständigkeit",
        SeedMeeting(_at(3, 13, 14), "Agentur für Arbeit (BIZ)", "Kaiserslautern"),
    ),
    SeedWorkingGroup(
        "sprachfoerderung",
        "Sprachförderung",
        SeedMeeting(_at(3, 6, 18), "Berufsbildende Schule I (blauer Salon)", "Kaiserslautern"),
    ),
    SeedWorkingGroup(
        "begegnung-toleranz-sicherheit",
        "Begegnung, Toleranz, Sicherheit, Integrationsprobleme",
        SeedMeeting(_at(3, 20, 17), "Villa Jaenisch", "Kaiserslautern"),
    ),
    SeedWorkingGroup(
        "ehrenamt-partizipation",
        "Ehrenamt, Partizipation",
        SeedMeeting(_at(3, 12, 17), "P90", "Pariser Straße 90, Kaiserslautern"),
    ),
    SeedWorkingGroup(
        "wohnbedarfe-wohnraumversorgung",
        "Wohnbedarfe und Wohnraumversorgung",
        SeedMeeting(
            _at(3, 7, 17),
            "Rathaus, Sitzungszimmer im 20. OG",
            "Willy-Brandt-Platz 1, 67657 Kaiserslautern",
        ),
    ),
)
