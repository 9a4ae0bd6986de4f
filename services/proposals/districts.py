"""The default district list: the city's 18 numbered areas (a copy of the reference data, kept in the
package so a deployment needs nothing beside it; ``PROPOSALS_DISTRICTS_FILE`` points at another list)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FILE = Path(__file__).resolve().parent / "data" / "kaiserslautern-districts.csv"


@dataclass(frozen=True)
class DistrictSeed:
    id: str
    number: str
    name: str
    kind: str


def load_districts(path: str | Path | None = None) -> list[DistrictSeed]:
    with open(path or DEFAULT_FILE, encoding="utf-8", newline="") as handle:
        return [
            DistrictSeed(id=row["slug"], number=row["number"], name=row["name"], kind=row["kind"])
            for row in csv.DictReader(handle)
        ]
