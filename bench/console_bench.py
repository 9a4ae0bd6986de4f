"""The staff console's pages with 100,000 proposals: each page's latency as a member of staff sees it
(the console renders it after calling the services' APIs), one request at a time from one client.

Run by hand, on this machine's local Postgres and RabbitMQ (the proposals are seeded straight into the
proposals schema, for this benchmark only):

    .venv/bin/python -m bench.console_bench [--proposals 100000] [--requests 200]

Four processes (registration, notification ingest, proposals, console); the console in development
mode (its development sign-in, an `admin`, so that every page shows everything). Prints JSON on its last
line: p50/p99 in ms per page. On a shared two-core machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from contextlib import ExitStack

import httpx

from bench.proposals_bench import analyze, seed_proposals, wait_for_catalog
from bench.registration_throughput import _provisioned, _stop, start, wait_until_up
from tests.support.infra import service_environment
from tests.support.smtp import free_port

JWT_SECRET = "bench-secret-that-is-at-least-32-bytes"
SERVICES = ("registration", "notification", "proposals", "console")


def timed(client: httpx.Client, path: str, n: int) -> dict:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        answer = client.get(path)
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[max(int(len(latencies) * 0.99) - 1, 0)], 2),
    }


def sign_in(client: httpx.Client) -> None:
    form = client.get("/auth/development")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text[:500]
    done = client.post(
        "/auth/development",
        data={"csrf": csrf.group(1), "name": "Bench Admin", "roles": ["admin"]},
    )
    assert done.status_code == 303, done.text[:500]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proposals", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    args = parser.parse_args()

    with ExitStack() as stack:
        infra = stack.enter_context(_provisioned())
        ports = {name: free_port() for name in SERVICES}
        base_env = {
            **os.environ,
            **service_environment(),
            "AMQP_URL": infra.amqp_url,
            "LOG_LEVEL": "WARNING",
            "STAFF_JWT_SECRET": JWT_SECRET,
        }
        for name, port in ports.items():
            prefix = name.upper()
            env = {
                **base_env,
                f"{prefix}_DATABASE_URL": infra.database_url(name),
                f"{prefix}_PORT": str(port),
            }
            if name == "notification":
                env["NOTIFICATION_ROLE"] = "ingest"
            if name == "console":
                env.update(
                    {
                        "CONSOLE_ENVIRONMENT": "development",
                        "CONSOLE_PUBLIC_URL": f"http://127.0.0.1:{port}",
                        "CONSOLE_REGISTRATION_API_URL": f"http://127.0.0.1:{ports['registration']}",
                        "CONSOLE_NOTIFICATION_API_URL": f"http://127.0.0.1:{ports['notification']}",
                        "CONSOLE_PROPOSALS_API_URL": f"http://127.0.0.1:{ports['proposals']}",
                    }
                )
            process = start([sys.executable, "-m", "shared.cli", "serve", name], env)
            stack.callback(_stop, process)
            wait_until_up(f"http://127.0.0.1:{port}/readyz")
        proposals_db = infra.database_url("proposals")
        asyncio.run(wait_for_catalog(proposals_db))
        started = time.monotonic()
        asyncio.run(seed_proposals(proposals_db, args.proposals))
        asyncio.run(analyze(infra.migrator_url("proposals")))
        seeded_in = round(time.monotonic() - started, 1)

        results: dict = {"proposals": args.proposals, "seeded_in_s": seeded_in, "requests": args.requests}
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['console']}", timeout=30) as client:
            sign_in(client)
            queue = client.get("/moderation")
            first = re.search(r'href="/moderation/([0-9a-f-]{36})"', queue.text)
            assert first, queue.text[:500]
            second_page = re.search(r'href="(/moderation\?[^"]*cursor=[^"]+)"', queue.text)
            assert second_page
            pages = {
                "overview": "/",
                "moderation_queue": "/moderation",
                "moderation_queue_by_group": "/moderation?working_group_id=sprachfoerderung",
                "moderation_queue_next_page": second_page.group(1).replace("&amp;", "&"),
                "moderation_proposal": f"/moderation/{first.group(1)}",
                "moderation_proposal_duplicate_search": f"/moderation/{first.group(1)}?q=Sprachcaf%C3%A9",
                "group": "/groups/sprachfoerderung",
                "check_in": "/groups/sprachfoerderung/meetings/1/check-in",
                "measures": "/measures",
                "mail": "/mail",
                "text_blocks": "/text-blocks",
            }
            results["pages"] = {}
            for name, path in pages.items():
                timed(client, path, 10)  # warm-up
                results["pages"][name] = timed(client, path, args.requests)
            results["p99_max_ms"] = max(r["p99_ms"] for r in results["pages"].values())
        print(json.dumps(results))


if __name__ == "__main__":
    main()
