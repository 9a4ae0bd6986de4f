"""The proposals service with 100,000 proposals: moderation queue and public list (first page and a page
1,000 items deep), full-text search, and intake against the registration intake in the same run.

Run by hand (needs `wrk`: apt-get install -y wrk), on this machine's local Postgres and RabbitMQ:

    .venv/bin/python -m bench.proposals_bench [--proposals 100000] [--requests 300] [--seconds 10]

Reads are timed one request at a time from one client (latency, not throughput): p50/p99 in ms.
Intake: wrk with 64 connections, POST /v1/proposals and POST /v1/registrations alternating, medians.
Prints JSON on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from contextlib import ExitStack

import asyncpg
import httpx

from bench.registration_throughput import _provisioned, _stop, register_lua, run_wrk, start, wait_until_up
from shared.auth import mint_token
from shared.db import asyncpg_dsn
from shared.settings import ServiceSettings
from tests.support.infra import service_environment
from tests.support.smtp import free_port

JWT_SECRET = "bench-secret-that-is-at-least-32-bytes"

PROPOSAL_LUA = """
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local body = string.format('{"working_group_id":"sprachfoerderung","district_id":"innenstadt-ost","title":"Vorschlag %d aus Lauf %s","body":"Ein offenes Sprachcafe jeden Mittwoch im Stadtteiltreff, Nummer %d-%d.","language":"de","author_email":"bench-%s-%d-%d@example.org","privacy_consent":true}', counter, RUN, tid, counter, RUN, tid, counter)
  return wrk.format("POST", "/v1/proposals", {["Content-Type"]="application/json"}, body)
end
"""

GERMAN = (
    "Sprachcafé Familien Wohnungen Nachbarschaft Begegnung Ehrenamt Schule Kita Ausbildung Beratung "
    "Stadtteiltreff Sportverein Bibliothek Spielplatz Busverbindung Integrationskurs Dolmetscher Frauen "
    "Jugendliche Senioren Arbeitsplätze Patenschaften Feste Gärten Mieten Sicherheit Toleranz Vereine"
).split()
OTHER = (
    "kafe mahalle okul aile dil kurs komşu buluşma дом семья школа язык курсы соседи встреча "
    "bayram bahçe gençler спорт библиотека"
).split()


async def seed_proposals(database_url: str, count: int) -> None:
    """``count`` proposals in every status, spread over the working groups and districts, in one statement."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            """
            INSERT INTO proposals.proposals
                (id, working_group_id, district_id, title, body, language, status, version,
                 created_at, submitted_at, published_at)
            SELECT gen_random_uuid(), wg.ids[1 + i % array_length(wg.ids, 1)],
                   d.ids[1 + (i / 7) % array_length(d.ids, 1)],
                   words.g[1 + i % 28] || ' und ' || words.g[1 + (i / 28) % 28] || ' ' || i,
                   CASE WHEN i % 5 = 0
                        THEN words.o[1 + i % 20] || ' ' || words.o[1 + (i / 20) % 20] || ' için öneri ' || i
                        ELSE 'Wir schlagen vor: mehr ' || words.g[1 + i % 28] || ' für ' || words.g[1 + (i / 3) % 28]
                             || ' im Stadtteil, weil ' || words.g[1 + (i / 11) % 28] || ' fehlen. Nummer ' || i END,
                   CASE WHEN i % 5 = 0 THEN 'tr' ELSE 'de' END,
                   CASE WHEN i % 10 < 6 THEN 'published' WHEN i % 10 < 9 THEN 'submitted' ELSE 'rejected' END,
                   1,
                   now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval,
                   CASE WHEN i % 10 < 6 THEN now() - (i || ' seconds')::interval END
            FROM generate_series(1, $1) AS i,
                 (SELECT array_agg(id ORDER BY id) AS ids FROM proposals.working_groups) AS wg,
                 (SELECT array_agg(id ORDER BY id) AS ids FROM proposals.districts) AS d,
                 (SELECT $2::text[] AS g, $3::text[] AS o) AS words
            """,
            count,
            GERMAN,
            OTHER,
        )
    finally:
        await conn.close()


async def analyze(owner_url: str) -> None:
    """Fresh statistics after the bulk insert, as autovacuum would make them a little later (ANALYZE
    needs the tables' owner, the migrator role)."""
    conn = await asyncpg.connect(asyncpg_dsn(owner_url))
    try:
        await conn.execute(
            "ANALYZE proposals.proposals; ANALYZE proposals.working_groups; ANALYZE proposals.districts"
        )
    finally:
        await conn.close()


async def wait_for_catalog(database_url: str, timeout: float = 60) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM proposals.working_groups") < 5:
            if time.monotonic() > deadline:
                raise RuntimeError("the proposals service never learned the catalog")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def timed(client: httpx.Client, url: str, params: dict, headers: dict, n: int) -> dict:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        answer = client.get(url, params=params, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{url} {params}: {answer.status_code} {answer.text[:200]}")
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "items": len(answer.json().get("items", [])),
    }


def cursor_at_depth(client: httpx.Client, url: str, params: dict, headers: dict, depth: int) -> str:
    cursor = None
    for _ in range(depth // 100):
        page = client.get(
            url, params={**params, "limit": 100, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        cursor = page.json()["next_cursor"]
    assert cursor, "not that many items"
    return cursor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proposals", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per read measurement")
    parser.add_argument("--seconds", type=int, default=10, help="length of one intake run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    with ExitStack() as stack:
        infra = stack.enter_context(_provisioned())
        python = sys.executable
        ports = {"registration": free_port(), "proposals": free_port()}
        base_env = {
            **os.environ,
            **service_environment(),
            "AMQP_URL": infra.amqp_url,
            "LOG_LEVEL": "WARNING",
            "STAFF_JWT_SECRET": JWT_SECRET,
        }
        for name, port in ports.items():
            prefix = name.upper()
            service = start(
                [python, "-m", "shared.cli", "serve", name],
                {
                    **base_env,
                    f"{prefix}_DATABASE_URL": infra.database_url(name),
                    f"{prefix}_PORT": str(port),
                    f"{prefix}_RATE_LIMIT_PER_MINUTE": "0",
                    "REGISTRATION_OPT_IN_MAILS_PER_HOUR": "0",
                    # One client sends everything: no per-client hourly budgets.
                    "REGISTRATION_OPT_IN_REQUESTS_PER_CLIENT_PER_HOUR": "0",
                    "PROPOSALS_SUBMISSIONS_PER_CLIENT_PER_HOUR": "0",
                },
            )
            stack.callback(_stop, service)
            wait_until_up(f"http://127.0.0.1:{port}/readyz")
        proposals_db = infra.database_url("proposals")
        asyncio.run(wait_for_catalog(proposals_db))
        started = time.monotonic()
        asyncio.run(seed_proposals(proposals_db, args.proposals))
        asyncio.run(analyze(infra.migrator_url("proposals")))
        seeded_in = round(time.monotonic() - started, 1)

        base = f"http://127.0.0.1:{ports['proposals']}"
        token = mint_token(ServiceSettings(staff_jwt_secret=JWT_SECRET), "bench", ["moderator"])
        moderator = {"Authorization": f"Bearer {token}"}
        results: dict = {"proposals": args.proposals, "seeded_in_s": seeded_in, "reads": {}}
        with httpx.Client(base_url=base, timeout=10) as client:
            wg = "sprachfoerderung"
            reads = {
                "queue_first_page": ("/v1/moderation/queue", {}, moderator),
                "queue_first_page_by_group": ("/v1/moderation/queue", {"working_group_id": wg}, moderator),
                "public_first_page": ("/v1/proposals", {}, {}),
                "public_first_page_by_group": ("/v1/proposals", {"working_group_id": wg}, {}),
                "public_first_page_by_district": ("/v1/proposals", {"district_id": "betzenberg"}, {}),
            }
            for name, (url, params, headers) in reads.items():
                timed(client, url, params, headers, 20)  # warm-up
                results["reads"][name] = timed(client, url, params, headers, args.requests)
            for name, (url, params, headers) in {
                "queue_1000_deep": ("/v1/moderation/queue", {}, moderator),
                "public_1000_deep": ("/v1/proposals", {}, {}),
                "public_1000_deep_by_group": ("/v1/proposals", {"working_group_id": wg}, {}),
            }.items():
                deep = {**params, "cursor": cursor_at_depth(client, url, params, headers, 1000)}
                timed(client, url, deep, headers, 20)
                results["reads"][name] = timed(client, url, deep, headers, args.requests)
            results["search"] = {}
            for q in ("Sprachcafé", "Familie", "Wohnungen Nachbarschaft", "kafe", "Fahrradweg"):
                timed(client, "/v1/proposals", {"q": q}, {}, 10)
                results["search"][q] = timed(client, "/v1/proposals", {"q": q}, {}, args.requests // 3)
            results["search_p99_max_ms"] = max(r["p99_ms"] for r in results["search"].values())
            results["read_p99_max_ms"] = max(r["p99_ms"] for r in results["reads"].values())

        reg_url, prop_url = f"http://127.0.0.1:{ports['registration']}", base
        proposal_lua = f'RUN = "{uuid.uuid4().hex[:8]}"\n' + PROPOSAL_LUA
        run_wrk(reg_url, register_lua(), 3, args.connections)
        run_wrk(prop_url, proposal_lua, 3, args.connections)
        runs: dict[str, list[dict]] = {"registration": [], "proposals": []}
        for _ in range(args.rounds):
            runs["registration"].append(run_wrk(reg_url, register_lua(), args.seconds, args.connections))
            runs["proposals"].append(run_wrk(prop_url, proposal_lua, args.seconds, args.connections))
        intake = {name: sorted(r, key=lambda x: x["rps"])[len(r) // 2] for name, r in runs.items()}
        intake["ratio"] = round(intake["proposals"]["rps"] / intake["registration"]["rps"], 3)
        intake["ratios_per_round"] = [
            round(p["rps"] / r["rps"], 3)
            for r, p in zip(runs["registration"], runs["proposals"], strict=True)
        ]
        results["intake"] = intake
        print(json.dumps(results))


if __name__ == "__main__":
    main()
