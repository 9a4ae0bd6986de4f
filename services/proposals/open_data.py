"""Open data: published proposals with their outcomes, measures with their timeline, and attendance counts
per meeting — as flat records for CSV and JSON — and the DCAT-AP.de catalog that describes them.

No personal data at all: the records are built from an explicit list of public columns (never an author's
name or address, a token, an internal note or a moderator's subject); ``tests/proposals`` plants personal
data and scans every field of every set."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import measures_repository as repo
from services.proposals.config import ProposalsSettings
from shared.csvsafe import csv_cell, spreadsheet_csv

DATASETS: dict[str, dict[str, str]] = {
    "proposals": {
        "title": "Vorschläge der Bürgerbeteiligung mit Ergebnis",
        "description": "Veröffentlichte Vorschläge je Arbeitsgruppe und Stadtteil mit den Entscheidungen "
        "der Arbeitsgruppen und den öffentlichen Begründungen, ohne personenbezogene Daten.",
    },
    "measures": {
        "title": "Maßnahmen, Stadtratsbeschlüsse und Umsetzungsstand",
        "description": "Maßnahmen aus angenommenen Vorschlägen mit dem Beschluss des Stadtrats "
        "(Drucksache) und jedem Eintrag zum Umsetzungsstand.",
    },
    "attendance": {
        "title": "Teilnahme an den Sitzungen der Arbeitsgruppen",
        "description": "Anzahlen je Sitzung: angemeldet, anwesend, nicht erschienen, spontan gekommen, "
        "anwesend je Sprache. Keine Namen.",
    },
}
FORMATS = {"csv": "text/csv", "json": "application/json"}


async def dataset(session: AsyncConnection, name: str) -> list[dict[str, Any]]:
    if name == "proposals":
        return [_proposal(r) for r in await repo.open_proposals(session)]
    if name == "measures":
        return await _measures(session)
    return [_attendance(r) for r in await repo.open_attendance(session)]


def _proposal(r: Any) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "working_group_id": r.working_group_id,
        "working_group": r.working_group_title,
        "district_id": r.district_id,
        "district": r.district_name,
        "title": r.title,
        "text": r.body,
        "language": r.language,
        "moderation_statement": r.public_statement,
        "merged_duplicates": r.merged_duplicates,
        "outcome": r.outcome,
        "outcome_statement": r.outcome_statement,
        "published_at": r.published_at.isoformat() if r.published_at else None,
        "outcome_at": r.outcome_at.isoformat() if r.outcome_at else None,
    }


async def _measures(session: AsyncConnection) -> list[dict[str, Any]]:
    timelines: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in await repo.all_progress(session):
        timelines[e.measure_id].append(
            {"status": e.status, "on": e.on.isoformat(), "public_statement": e.public_statement}
        )
    links: dict[Any, list[str]] = defaultdict(list)
    for link in await repo.all_links(session):
        links[link.measure_id].append(str(link.proposal_id))
    return [
        {
            "id": str(m.id),
            "working_group_id": m.working_group_id,
            "working_group": m.working_group_title,
            "district_id": m.district_id,
            "district": m.district_name,
            "title": m.title,
            "description": m.description,
            "status": m.status,
            "council_decision": m.decision,
            "council_decided_on": m.decided_on.isoformat() if m.decided_on else None,
            "council_reference": m.reference,
            "council_statement": m.decision_statement,
            "proposal_ids": links[m.id],
            "timeline": timelines[m.id],
        }
        for m in await repo.open_measures(session)
    ]


def _attendance(r: Any) -> dict[str, Any]:
    return {
        "working_group_id": r.working_group_id,
        "working_group": r.working_group_title,
        "meeting": r.meeting_number,
        "starts_at": r.starts_at.isoformat() if r.starts_at else None,
        "registered": r.registered,
        "present": r.present,
        "no_show": r.no_show,
        "walk_ins": r.walk_ins,
        "present_by_language": dict(r.by_language),
    }


def _cell(value: Any) -> str:
    if isinstance(value, list):
        # A timeline in one cell: "2026-03-01 planned: …" lines; a list of ids: space separated.
        parts = [
            f"{v['on']} {v['status']}: {v['public_statement']}" if isinstance(v, dict) else str(v)
            for v in value
        ]
        return csv_cell(("\n" if value and isinstance(value[0], dict) else " ").join(parts))
    if isinstance(value, dict):
        return csv_cell(" ".join(f"{k}={v}" for k, v in sorted(value.items())))
    return csv_cell(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """One line per record; the header from the first record (an empty set: only the byte order mark)."""
    if not rows:
        return spreadsheet_csv([])
    header = list(rows[0])
    return spreadsheet_csv([header, *([_cell(row[k]) for k in header] for row in rows)])


def catalog(settings: ProposalsSettings) -> dict[str, Any]:
    """The DCAT-AP.de description (JSON-LD): one dcat:Dataset per set, one dcat:Distribution per format,
    the licence (``PROPOSALS_OPEN_DATA_LICENSE``) and the publisher from the settings."""
    base = f"{settings.public_url}/v1/open-data"
    publisher = {
        "@id": settings.open_data_publisher_uri or f"{settings.public_url}/#publisher",
        "@type": "foaf:Organization",
        "foaf:name": settings.open_data_publisher,
    }
    datasets = [
        {
            "@id": f"{base}/{name}",
            "@type": "dcat:Dataset",
            "dct:identifier": f"mitwirkung-{name}",
            "dct:title": {"@value": meta["title"], "@language": "de"},
            "dct:description": {"@value": meta["description"], "@language": "de"},
            "dct:publisher": publisher,
            "dct:license": {"@id": settings.open_data_license},
            "dcatde:contributorID": {"@id": settings.open_data_contributor_id},
            "dcat:theme": {"@id": "http://publications.europa.eu/resource/authority/data-theme/GOVE"},
            "dct:accrualPeriodicity": {
                "@id": "http://publications.europa.eu/resource/authority/frequency/CONT"
            },
            "dcat:distribution": [
                {
                    "@id": f"{base}/{name}.{fmt}#distribution",
                    "@type": "dcat:Distribution",
                    "dct:title": {"@value": f"{meta['title']} ({fmt.upper()})", "@language": "de"},
                    "dcat:accessURL": {"@id": f"{base}/{name}.{fmt}"},
                    "dcat:downloadURL": {"@id": f"{base}/{name}.{fmt}"},
                    "dcat:mediaType": {"@id": f"https://www.iana.org/assignments/media-types/{media}"},
                    "dct:format": {
                        "@id": f"http://publications.europa.eu/resource/authority/file-type/{fmt.upper()}"
                    },
                    "dct:license": {"@id": settings.open_data_license},
                }
                for fmt, media in FORMATS.items()
            ],
        }
        for name, meta in DATASETS.items()
    ]
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "dcatde": "http://dcat-ap.de/def/dcatde/",
            "foaf": "http://xmlns.com/foaf/0.1/",
        },
        "@id": f"{base}/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": {"@value": "Mitwirkung – Integrationskonzept Kaiserslautern", "@language": "de"},
        "dct:description": {
            "@value": "Offene Daten der Bürgerbeteiligung: Vorschläge, Maßnahmen, Teilnahme.",
            "@language": "de",
        },
        "dct:publisher": publisher,
        "dct:license": {"@id": settings.open_data_license},
        "dcat:dataset": datasets,
    }
