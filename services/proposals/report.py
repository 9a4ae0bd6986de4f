"""The report for the city council: per working group and per district, counts by status and outcome,
then every published proposal with its outcome and public statements. Built from rows, formatted as
JSON, CSV (safe for spreadsheets) or Markdown (safe for the council's papers: residents' text is escaped,
never markup). Pure functions: the queries are in ``repository``."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from services.proposals.domain import OUTCOMES, STATUSES
from shared.csvsafe import csv_cell, spreadsheet_csv

NO_DISTRICT = "—"


def _empty_counts() -> dict[str, dict[str, int]]:
    return {"by_status": dict.fromkeys(STATUSES, 0), "by_outcome": dict.fromkeys(OUTCOMES, 0)}


def _add(counts: dict[str, dict[str, int]], status: str, outcome: str | None, n: int) -> None:
    counts["by_status"][status] = counts["by_status"].get(status, 0) + n
    if outcome:
        counts["by_outcome"][outcome] = counts["by_outcome"].get(outcome, 0) + n


def build_report(
    *,
    working_groups: Sequence[Any],
    districts: Sequence[Any],
    counts: Iterable[Any],
    published: Iterable[Any],
    generated_at: datetime,
    measures: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    district_names = {d.id: d.name for d in districts}
    groups: dict[str, dict[str, Any]] = {
        wg.id: {"id": wg.id, "title": wg.title, "counts": _empty_counts(), "districts": {}, "proposals": []}
        for wg in working_groups
    }
    by_district: dict[str | None, dict[str, Any]] = {}
    totals = _empty_counts()
    for row in counts:
        group = groups.setdefault(
            row.working_group_id,
            {
                "id": row.working_group_id,
                "title": row.working_group_id,
                "counts": _empty_counts(),
                "districts": {},
                "proposals": [],
            },
        )
        _add(totals, row.status, row.outcome, row.count)
        _add(group["counts"], row.status, row.outcome, row.count)
        cell = group["districts"].setdefault(row.district_id, _empty_counts())
        _add(cell, row.status, row.outcome, row.count)
        overall = by_district.setdefault(
            row.district_id,
            {
                "id": row.district_id,
                "name": district_names.get(row.district_id, NO_DISTRICT),
                "counts": _empty_counts(),
            },
        )
        _add(overall["counts"], row.status, row.outcome, row.count)
    for p in published:
        groups[p.working_group_id]["proposals"].append(
            {
                "id": str(p.id),
                "title": p.title,
                "body": p.body,
                "district": {"id": p.district_id, "name": p.district_name} if p.district_id else None,
                "published_at": p.published_at.isoformat() if p.published_at else None,
                "public_statement": p.public_statement,
                "merged_duplicates": p.merged_duplicates,
                "outcome": p.outcome,
                "outcome_statement": p.outcome_statement,
            }
        )
    order = {d.id: i for i, d in enumerate(districts)}
    return {
        "generated_at": generated_at.isoformat(),
        "totals": totals,
        "working_groups": [
            {
                **g,
                "districts": [
                    {
                        "id": d_id,
                        "name": district_names.get(d_id, NO_DISTRICT) if d_id else NO_DISTRICT,
                        "counts": c,
                    }
                    for d_id, c in sorted(g["districts"].items(), key=lambda kv: order.get(kv[0], len(order)))
                ],
            }
            for g in groups.values()
        ],
        "districts": sorted(by_district.values(), key=lambda d: order.get(d["id"], len(order))),
        # A section per measure (as in open data: public facts only): the council's decision, the timeline.
        "measures": list(measures),
    }


# --- CSV -----------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "working_group",
    "district",
    "title",
    "body",
    "published_at",
    "public_statement",
    "merged_duplicates",
    "outcome",
    "outcome_statement",
    "id",
)


def to_csv(report: dict[str, Any]) -> str:
    """Every published proposal, one row each, with its working group and district."""
    rows: list[list[Any]] = [list(CSV_COLUMNS)]
    for group in report["working_groups"]:
        for p in group["proposals"]:
            values = {
                **p,
                "working_group": group["title"],
                "district": p["district"]["name"] if p["district"] else "",
            }
            rows.append([csv_cell(values.get(c)) for c in CSV_COLUMNS])
    return spreadsheet_csv(rows)


def counts_to_csv(report: dict[str, Any]) -> str:
    """The counts per working group × district, one row each."""
    return spreadsheet_csv(
        [
            ["working_group", "district", *STATUSES, *OUTCOMES],
            *(
                [
                    csv_cell(group["title"]),
                    csv_cell(d["name"]),
                    *(d["counts"]["by_status"][s] for s in STATUSES),
                    *(d["counts"]["by_outcome"][o] for o in OUTCOMES),
                ]
                for group in report["working_groups"]
                for d in group["districts"]
            ),
        ]
    )


MEASURE_CSV_COLUMNS = (
    "working_group",
    "district",
    "title",
    "description",
    "status",
    "council_decision",
    "council_decided_on",
    "council_reference",
    "council_statement",
    "timeline",
    "proposal_ids",
    "id",
)


def measures_to_csv(report: dict[str, Any]) -> str:
    """Every measure, one row each; the timeline as one line per entry in its cell."""
    rows: list[list[Any]] = [list(MEASURE_CSV_COLUMNS)]
    for m in report.get("measures", []):
        values = {
            **m,
            "timeline": "\n".join(f"{e['on']} {e['status']}: {e['public_statement']}" for e in m["timeline"]),
            "proposal_ids": " ".join(m["proposal_ids"]),
        }
        rows.append([csv_cell(values.get(c)) for c in MEASURE_CSV_COLUMNS])
    return spreadsheet_csv(rows)


# --- Markdown ------------------------------------------------------------------------------------------

_MD_INLINE = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")
_MD_LINE_START = re.compile(r"^(\s*)(\d+)([.)])", re.MULTILINE)

STATUS_LABELS = {
    "submitted": "eingereicht",
    "published": "veröffentlicht",
    "rejected": "abgelehnt",
    "changes_requested": "Änderung erbeten",
    "duplicate": "Duplikat",
    "withdrawn": "zurückgezogen",
}
OUTCOME_LABELS = {
    "adopted": "angenommen",
    "partially_adopted": "teilweise angenommen",
    "not_adopted": "nicht angenommen",
}


def md_escape(text: str | None) -> str:
    """Residents' text as literal Markdown: no markup, no HTML, no links, no list or heading syntax."""
    if not text:
        return ""
    escaped = html.escape(text, quote=False)  # & < > never become HTML
    escaped = _MD_INLINE.sub(r"\\\1", escaped)
    return _MD_LINE_START.sub(r"\1\2\\\3", escaped)


def _md_paragraphs(text: str | None) -> str:
    """Keep the author's line breaks (hard breaks), blank lines between paragraphs."""
    return "\n".join(line + "  " if line.strip() else "" for line in md_escape(text).split("\n")).strip()


def _md_cell(text: str) -> str:
    return md_escape(text).replace("\n", " ")


def _counts_table(rows: list[tuple[str, dict[str, dict[str, int]]]]) -> list[str]:
    head = ["Bereich", *(STATUS_LABELS[s] for s in STATUSES), *(OUTCOME_LABELS[o] for o in OUTCOMES)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, counts in rows:
        values = [*(counts["by_status"][s] for s in STATUSES), *(counts["by_outcome"][o] for o in OUTCOMES)]
        lines.append("| " + " | ".join([_md_cell(label), *map(str, values)]) + " |")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    out = [
        "# Vorschläge der Bürgerinnen und Bürger — Bericht für den Stadtrat",
        "",
        f"Stand: {report['generated_at']}",
        "",
        "## Übersicht nach Stadtteil",
        "",
        *_counts_table([(d["name"] or NO_DISTRICT, d["counts"]) for d in report["districts"]]),
        "",
    ]
    for group in report["working_groups"]:
        out += [f"## Arbeitskreis {_md_cell(group['title'])}", ""]
        out += _counts_table(
            [
                ("Gesamt", group["counts"]),
                *((d["name"] or NO_DISTRICT, d["counts"]) for d in group["districts"]),
            ]
        )
        out.append("")
        if not group["proposals"]:
            out += ["Keine veröffentlichten Vorschläge.", ""]
        for p in group["proposals"]:
            district = p["district"]["name"] if p["district"] else NO_DISTRICT
            outcome = OUTCOME_LABELS.get(p["outcome"] or "", "noch nicht entschieden")
            out += [
                f"### {_md_cell(p['title'])}",
                "",
                f"- Stadtteil: {_md_cell(district)}",
                f"- Ergebnis: {outcome}",
            ]
            if p["merged_duplicates"]:
                out.append(f"- Gleichlautende Vorschläge zusammengeführt: {p['merged_duplicates']}")
            out += ["", _md_paragraphs(p["body"]), ""]
            if p["public_statement"]:
                out += ["**Stellungnahme der Moderation:**", "", _md_paragraphs(p["public_statement"]), ""]
            if p["outcome_statement"]:
                out += ["**Begründung des Ergebnisses:**", "", _md_paragraphs(p["outcome_statement"]), ""]
    out += _measures_markdown(report.get("measures", []))
    return "\n".join(out).rstrip() + "\n"


MEASURE_STATUS_LABELS = {
    "proposed": "dem Stadtrat vorgeschlagen",
    "planned": "geplant",
    "in_progress": "in Umsetzung",
    "done": "umgesetzt",
    "dropped": "eingestellt",
}
DECISION_LABELS = {"adopted": "beschlossen", "amended": "mit Änderungen beschlossen", "rejected": "abgelehnt"}


def _measures_markdown(measures: Sequence[dict[str, Any]]) -> list[str]:
    if not measures:
        return []
    out = ["## Maßnahmen", ""]
    for m in measures:
        decision = DECISION_LABELS.get(m["council_decision"] or "", "noch nicht entschieden")
        out += [
            f"### Maßnahme: {_md_cell(m['title'])}",
            "",
            f"- Arbeitskreis: {_md_cell(m['working_group'])}",
            f"- Stadtteil: {_md_cell(m['district'] or NO_DISTRICT)}",
            f"- Stand: {MEASURE_STATUS_LABELS.get(m['status'], m['status'])}",
            f"- Beschluss des Stadtrats: {decision}",
        ]
        if m["council_decision"]:
            out.append(f"- Drucksache {_md_cell(m['council_reference'])} vom {m['council_decided_on']}")
        out += ["", _md_paragraphs(m["description"]), ""]
        if m["council_statement"]:
            out += ["**Begründung des Stadtrats:**", "", _md_paragraphs(m["council_statement"]), ""]
        if m["timeline"]:
            out += ["**Umsetzung:**", ""]
            out += [
                f"- {e['on']} ({MEASURE_STATUS_LABELS.get(e['status'], e['status'])}): "
                f"{_md_cell(e['public_statement'])}"
                for e in m["timeline"]
            ]
            out.append("")
    return out
