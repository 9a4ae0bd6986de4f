"""The public measure list and one measure with 20 years of monthly progress (240 entries), with 5,000
measures in the table: p50/p99 latency of one client, one request at a time (the issue asks p99 < 30 ms).

Run by hand, on this machine's local Postgres and RabbitMQ (it starts registration, for the catalog, and
proposals as processes of their own):

    .venv/bin/python -m bench.measures_bench [--measures 5000] [--requests 300]

Prints JSON on its last line. A figure taken while others load the machine is noisy: say so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from contextlib import ExitStack

import asyncpg
import httpx

from bench.proposals_bench import analyze, cursor_at_depth, timed, wait_for_catalog
from bench.registration_throughput import _provisioned, _stop, start, wait_until_up
from shared.db import asyncpg_dsn
from tests.support.infra import service_environment
from tests.support.smtp import free_port

JWT_SECRET = "bench-secret-that-is-at-least-32-bytes"
LONG_MEASURE = "00000000-0000-4000-8000-00000000b240"


async def seed(database_url: str, count: int, entries: int) -> None:
    """``count`` measures over the working groups and districts (every third decided, every second with
    a progress entry), each linking one proposal, and one measure with ``entries`` monthly entries."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            """
            INSERT INTO proposals.proposals (id, working_group_id, title, body, language, status, version,
                                             published_at, outcome, outcome_at)
            SELECT gen_random_uuid(), wg.id, 'Vorschlag für ' || wg.title, 'Ein angenommener Vorschlag.',
                   'de', 'published', 1, now(), 'adopted', now()
            FROM proposals.working_groups wg
            """
        )
        await conn.execute(
            """
            INSERT INTO proposals.measures (id, working_group_id, district_id, title, description, status,
                                            decision, decided_on, reference, decision_statement, created_at)
            SELECT CASE WHEN i = 1 THEN $2::uuid ELSE gen_random_uuid() END,
                   wg.ids[1 + i % array_length(wg.ids, 1)], d.ids[1 + (i / 5) % array_length(d.ids, 1)],
                   'Maßnahme ' || i || ': Sprachcafé und Beratung im Stadtteil',
                   'Beschreibung der Maßnahme ' || i || ', mit Zielen, Trägern und Zeitplan für die Umsetzung.',
                   CASE WHEN i % 2 = 0 THEN 'in_progress' ELSE 'proposed' END,
                   CASE WHEN i % 3 = 0 THEN 'adopted' END, CASE WHEN i % 3 = 0 THEN date '2027-03-15' END,
                   CASE WHEN i % 3 = 0 THEN lpad(i::text, 4, '0') || '/2027' END,
                   CASE WHEN i % 3 = 0 THEN 'Der Stadtrat stimmt zu.' END,
                   now() - (i || ' minutes')::interval
            FROM generate_series(1, $1) AS i,
                 (SELECT array_agg(id ORDER BY id) AS ids FROM proposals.working_groups) AS wg,
                 (SELECT array_agg(id ORDER BY id) AS ids FROM proposals.districts) AS d
            """,
            count,
            LONG_MEASURE,
        )
        await conn.execute(
            """
            INSERT INTO proposals.measure_proposals (measure_id, proposal_id)
            SELECT m.id, p.id FROM proposals.measures m
            JOIN proposals.proposals p ON p.working_group_id = m.working_group_id AND p.outcome = 'adopted'
            """
        )
        await conn.execute(
            """
            INSERT INTO proposals.measure_progress (measure_id, status, "on", public_statement)
            SELECT id, 'in_progress', date '2027-01-01', 'Begonnen.' FROM proposals.measures
            WHERE status = 'in_progress'
            """
        )
        await conn.execute(
            """
            INSERT INTO proposals.measure_progress (measure_id, status, "on", public_statement)
            SELECT $1::uuid, CASE WHEN n = 1 THEN 'planned' ELSE 'in_progress' END,
                   date '2027-01-01' + (n || ' months')::interval,
                   'Monatsbericht ' || n || ': zwei Standorte geöffnet, 40 Teilnehmende, nächste Schritte.'
            FROM generate_series(1, $2) AS n
            """,
            LONG_MEASURE,
            entries,
        )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--measures", type=int, default=5000)
    parser.add_argument("--entries", type=int, default=240)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with ExitStack() as stack:
        infra = stack.enter_context(_provisioned())
        ports = {"registration": free_port(), "proposals": free_port()}
        base_env = {**os.environ, **service_environment(), "AMQP_URL": infra.amqp_url, "LOG_LEVEL": "WARNING",
                    "STAFF_JWT_SECRET": JWT_SECRET}  # fmt: skip
        for name, port in ports.items():
            prefix = name.upper()
            service = start(
                [sys.executable, "-m", "shared.cli", "serve", name],
                {**base_env, f"{prefix}_DATABASE_URL": infra.database_url(name), f"{prefix}_PORT": str(port),
                 f"{prefix}_RATE_LIMIT_PER_MINUTE": "0"},
            )  # fmt: skip
            stack.callback(_stop, service)
            wait_until_up(f"http://127.0.0.1:{port}/readyz")
        db = infra.database_url("proposals")
        asyncio.run(wait_for_catalog(db))
        started = time.monotonic()
        asyncio.run(seed(db, args.measures, args.entries))
        asyncio.run(analyze(infra.migrator_url("proposals")))
        results: dict = {"measures": args.measures, "entries_of_long_measure": args.entries,
                         "seeded_in_s": round(time.monotonic() - started, 1), "reads": {}}  # fmt: skip
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['proposals']}", timeout=10) as client:
            reads = {
                "list_first_page": ("/v1/measures", {}, {}),
                "list_by_group": ("/v1/measures", {"working_group_id": "sprachfoerderung"}, {}),
                "list_by_status": ("/v1/measures", {"status": "in_progress"}, {}),
                "list_search_accent_free": ("/v1/measures", {"q": "Sprachcafe"}, {}),
                "list_1000_deep": (
                    "/v1/measures",
                    {"cursor": cursor_at_depth(client, "/v1/measures", {}, {}, 1000)},
                    {},
                ),
                "measure_240_entries_json": (f"/v1/measures/{LONG_MEASURE}", {}, {}),
                "measure_240_entries_html": (f"/v1/measures/{LONG_MEASURE}", {}, {"Accept": "text/html"}),
            }
            for name, (url, params, headers) in reads.items():
                for _ in range(20):
                    client.get(url, params=params, headers=headers)  # warm-up
                if name.endswith("_html"):
                    results["reads"][name] = _timed_page(client, url, headers, args.requests)
                else:
                    results["reads"][name] = timed(client, url, params, headers, args.requests)
        results["read_p99_max_ms"] = max(r["p99_ms"] for r in results["reads"].values())
        print(json.dumps(results))


def _timed_page(client: httpx.Client, url: str, headers: dict, n: int) -> dict:
    latencies = []
    for _ in range(n):
        began = time.perf_counter()
        answer = client.get(url, headers=headers)
        latencies.append((time.perf_counter() - began) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{url}: {answer.status_code}")
    latencies.sort()
    return {
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "p99_ms": round(latencies[int(n * 0.99) - 1], 2),
    }


if __name__ == "__main__":
    main()
