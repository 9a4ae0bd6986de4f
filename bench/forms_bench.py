"""The resident forms under load: each form page and the published list (as a browser asks for it)
at 64 connections, and the form POST against the JSON POST of the same endpoint (registration and
proposals), in alternating rounds.

Run by hand (needs `wrk`: apt-get install -y wrk), on this machine's local Postgres and RabbitMQ:

    .venv/bin/python -m bench.forms_bench [--seconds 5] [--rounds 3] [--connections 64] [--proposals 5000]

Pages: wrk with ``Accept: text/html`` (p50/p99 in ms, requests/s; target p99 < 50 ms). Intake: the same
registration or proposal as JSON and as the form sends it (form-encoded, no one-time key, as JSON without
an Idempotency-Key), medians of the rounds; ``form_to_json`` is the ratio of requests/s (target >= 0.9).
On a machine shared with others the figures are noisy. Prints JSON on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from contextlib import ExitStack

from bench.proposals_bench import PROPOSAL_LUA, analyze, seed_proposals, wait_for_catalog
from bench.registration_throughput import REGISTER_LUA, _provisioned, _stop, run_wrk, start, wait_until_up
from tests.support.infra import service_environment
from tests.support.smtp import free_port

PAGE_LUA = """
request = function()
  return wrk.format("GET", PATH, {["Accept"]="text/html,application/xhtml+xml,*/*;q=0.8", ["Accept-Language"]="ar,de;q=0.8"})
end
"""

REGISTER_FORM_LUA = """
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local body = string.format('lang=de&working_group_id=sprachfoerderung&name=Bench+Person+%d&email=bench-form-%s-%d-%d%%40example.org&language=de&participant_type=resident&needs_step_free=yes&privacy_consent=yes&website=', counter, RUN, tid, counter)
  return wrk.format("POST", "/v1/registrations", {["Content-Type"]="application/x-www-form-urlencoded"}, body)
end
"""

PROPOSAL_FORM_LUA = """
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local body = string.format('lang=de&working_group_id=sprachfoerderung&district_id=innenstadt-ost&title=Vorschlag+%d+aus+Lauf+%s&body=Ein+offenes+Sprachcafe+jeden+Mittwoch+im+Stadtteiltreff%%2C+Nummer+%d-%d.&language=de&author_email=bench-form-%s-%d-%d%%40example.org&privacy_consent=yes&website=', counter, RUN, tid, counter, RUN, tid, counter)
  return wrk.format("POST", "/v1/proposals", {["Content-Type"]="application/x-www-form-urlencoded"}, body)
end
"""


def _run(lua: str) -> str:
    return f'RUN = "{uuid.uuid4().hex[:8]}"\n' + lua


def _median(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="JSON and form alternate; medians")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--proposals", type=int, default=5000, help="proposals seeded (6 in 10 published)")
    args = parser.parse_args()

    with ExitStack() as stack:
        infra = stack.enter_context(_provisioned())
        ports = {"registration": free_port(), "proposals": free_port()}
        base_env = {**os.environ, **service_environment(), "AMQP_URL": infra.amqp_url, "LOG_LEVEL": "WARNING"}
        pids = {}
        for name, port in ports.items():
            prefix = name.upper()
            service = start(
                [sys.executable, "-m", "shared.cli", "serve", name],
                {
                    **base_env,
                    f"{prefix}_DATABASE_URL": infra.database_url(name),
                    f"{prefix}_PORT": str(port),
                    f"{prefix}_RATE_LIMIT_PER_MINUTE": "0",
                    "REGISTRATION_OPT_IN_MAILS_PER_HOUR": "0",
                    # One client sends everything: no per-client hourly budgets, no per-mailbox cap.
                    "REGISTRATION_OPT_IN_REQUESTS_PER_CLIENT_PER_HOUR": "0",
                    "PROPOSALS_SUBMISSIONS_PER_CLIENT_PER_HOUR": "0",
                },
            )
            stack.callback(_stop, service)
            pids[name] = service.pid
            wait_until_up(f"http://127.0.0.1:{port}/readyz")
        proposals_db = infra.database_url("proposals")
        asyncio.run(wait_for_catalog(proposals_db))
        asyncio.run(seed_proposals(proposals_db, args.proposals))
        asyncio.run(analyze(infra.migrator_url("proposals")))
        reg = f"http://127.0.0.1:{ports['registration']}"
        prop = f"http://127.0.0.1:{ports['proposals']}"

        pages = {
            "registration_form": (
                reg,
                "/v1/registrations/new?working_group_id=sprachfoerderung",
                "registration",
            ),
            "proposal_form": (prop, "/v1/proposals/new?working_group_id=sprachfoerderung", "proposals"),
            "published_list": (prop, "/v1/proposals", "proposals"),
            "published_list_by_group": (prop, "/v1/proposals?working_group_id=sprachfoerderung", "proposals"),
            "published_search": (prop, "/v1/proposals?q=Sprachcaf%C3%A9", "proposals"),
        }
        results: dict = {"connections": args.connections, "seconds": args.seconds, "pages": {}, "intake": {}}
        for name, (base, path, service_name) in pages.items():
            lua = f'PATH = "{path}"\n' + PAGE_LUA
            run_wrk(base, lua, 2, args.connections)  # warm-up
            results["pages"][name] = run_wrk(
                base, lua, args.seconds, args.connections, server_pid=pids[service_name]
            )
        results["page_p99_max_ms"] = max(r["p99_ms"] for r in results["pages"].values())

        contenders = {
            "registration": (reg, REGISTER_LUA, REGISTER_FORM_LUA, "registration"),
            "proposals": (prop, PROPOSAL_LUA, PROPOSAL_FORM_LUA, "proposals"),
        }
        for name, (base, json_lua, form_lua, service_name) in contenders.items():
            run_wrk(base, _run(json_lua), 2, args.connections)
            run_wrk(base, _run(form_lua), 2, args.connections)
            runs: dict[str, list[dict]] = {"json": [], "form": []}
            for _ in range(args.rounds):
                for kind, lua in (("json", json_lua), ("form", form_lua)):
                    runs[kind].append(
                        run_wrk(
                            base, _run(lua), args.seconds, args.connections, server_pid=pids[service_name]
                        )
                    )
            json_run, form_run = _median(runs["json"]), _median(runs["form"])
            results["intake"][name] = {
                "json": json_run,
                "form": form_run,
                "form_to_json": round(form_run["rps"] / json_run["rps"], 3),
                "ratios_per_round": [
                    round(f["rps"] / j["rps"], 3) for j, f in zip(runs["json"], runs["form"], strict=True)
                ],
            }
        results["note"] = "one run on a 2-core machine shared with other engineers' tests: noisy"
        print(json.dumps(results))


if __name__ == "__main__":
    main()
