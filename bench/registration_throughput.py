"""Registration endpoint against its yardstick, and confirmations racing into one working group.

Run by hand (needs `wrk`: apt-get install -y wrk), on this machine's local Postgres and RabbitMQ:

    .venv/bin/python -m bench.registration_throughput [--seconds 20] [--connections 64]

Prints JSON on its last line: requests/s and p99 of the yardstick (``bench/yardstick_app.py``: FastAPI +
pydantic + raw asyncpg + orjson on uvloop/httptools, two INSERTs in one transaction) and of
POST /v1/registrations (measured in the same run, rounds alternating), their ratio, and the confirmation
rate with the overbooking check against the confirmation yardstick (``POST /v1/registrations/confirm`` of
the same app: raw asyncpg, the service's own seat-deciding database function, its events published from the
service's outbox by the yardstick's relay), also in alternating rounds. A third contender, the same yardstick publishing its events as well (an
outbox row instead of the event row, and the leanest relay in its process: ``BENCH_AMQP_URL`` in
``bench/yardstick_app.py``), gives the ceiling for an intake that must not lose its events
(``publishing_yardstick_cpu_ratio``, ``cpu_ratio_to_publishing_yardstick``). ``outbox_backlog_at_end``: events the relay had not yet published when a
round ended (the relay runs in the service's process; what it has not done is not in the CPU figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx
import psutil

from bench.cpu import CpuTime
from shared.db import asyncpg_dsn
from shared.tokens import hash_token
from tests.support.infra import provision, service_environment
from tests.support.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent

REGISTER_LUA = """
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local body = string.format('{"working_group_id":"sprachfoerderung","name":"Bench Person %d","email":"bench-%s-%d-%d@example.org","language":"de","participant_type":"resident","privacy_consent":true}', counter, RUN, tid, counter)
  return wrk.format("POST", "/v1/registrations", {["Content-Type"]="application/json"}, body)
end
"""

CONFIRM_LUA = """
local tokens = {}
local i = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
init = function(args)
  for line in io.lines(TOKENS) do tokens[#tokens + 1] = line end
end
request = function()
  i = i + 1
  local t = tokens[((i - 1) * THREADS + tid) % #tokens + 1]
  return wrk.format("POST", "/v1/registrations/confirm", {["Content-Type"]="application/json"}, '{"token":"' .. t .. '"}')
end
"""


def register_lua() -> str:
    return f'RUN = "{uuid.uuid4().hex[:8]}"\n' + REGISTER_LUA


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def run_wrk(
    url: str, lua: str, seconds: int, connections: int, threads: int = 2, server_pid: int | None = None
) -> dict:
    """One wrk run. With ``server_pid``, also the server process's CPU time per request (user + system),
    a figure that other load on the machine disturbs far less than requests per second."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
    cpu_before = _cpu_seconds(server_pid)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu = {}
    if server_pid is not None and requests:
        cpu["cpu_ms_per_request"] = round((_cpu_seconds(server_pid) - cpu_before) * 1000 / requests, 3)
    return {
        **cpu,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "requests": requests,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def start(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def make_pending(
    database_url: str, working_group_id: str, count: int, capacity: int = 100
) -> list[str]:
    """Insert pending registrations directly (fast), returning their raw tokens."""
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO registration.working_groups (id, title, capacity) VALUES ($1, 'Bench', $2) "
            "ON CONFLICT DO NOTHING",
            working_group_id,
            capacity,
        )
        await conn.executemany(
            "INSERT INTO registration.registrations (id, working_group_id, status, name, email, email_key, language,"
            " participant_type, token_hash, expires_at) VALUES ($1, $2, 'pending_confirmation', $3, $4, $4, 'de',"
            " 'resident', $5, now() + interval '1 day')",
            [
                (
                    uuid.uuid4(),
                    working_group_id,
                    f"Confirm {i}",
                    f"confirm-{i}-{working_group_id}@example.org",
                    hash_token(t),
                )
                for i, t in enumerate(tokens)
            ],
        )
    finally:
        await conn.close()
    return tokens


async def outbox_backlog(database_url: str, table: str = "outbox") -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(
            await conn.fetchval(f"SELECT count(*) FROM registration.{table} WHERE published_at IS NULL")
        )
    finally:
        await conn.close()


def _yardstick_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.yardstick_app:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


async def seat_state(database_url: str, working_group_id: str) -> dict:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        wg = await conn.fetchrow(
            "SELECT capacity, confirmed_general + confirmed_reserved AS counter FROM registration.working_groups "
            "WHERE id = $1",
            working_group_id,
        )
        rows = await conn.fetch(
            "SELECT status, count(*) FROM registration.registrations WHERE working_group_id = $1 GROUP BY status",
            working_group_id,
        )
    finally:
        await conn.close()
    return {"capacity": wg["capacity"], "counter": wg["counter"], **{r["status"]: r["count"] for r in rows}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15, help="length of one measured run")
    parser.add_argument("--rounds", type=int, default=3, help="baseline and service alternate; medians")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--confirm-seconds", type=int, default=10)
    parser.add_argument("--pending", type=int, default=20000, help="registrations waiting for confirmation")
    parser.add_argument("--capacity", type=int, default=100)
    args = parser.parse_args()

    with ExitStack() as stack:
        infra = stack.enter_context(_provisioned())
        db_url = infra.database_url("registration")
        python = sys.executable
        baseline_port, publishing_port, service_port = free_port(), free_port(), free_port()
        # The schema's owner, so that the yardstick can create its tables.
        yardstick_env = {**os.environ, "BENCH_DATABASE_URL": infra.migrator_url("registration")}
        baseline = start(_yardstick_command(baseline_port), yardstick_env)
        stack.callback(_stop, baseline)
        # One after the other: two concurrent CREATE TABLE IF NOT EXISTS of the same table can collide.
        wait_until_up(f"http://127.0.0.1:{baseline_port}/docs")
        # The same yardstick publishing its events as well (an outbox and the leanest relay in its process).
        publishing = start(
            _yardstick_command(publishing_port), {**yardstick_env, "BENCH_AMQP_URL": infra.amqp_url}
        )
        stack.callback(_stop, publishing)
        service = start(
            [python, "-m", "shared.cli", "serve", "registration"],
            {
                **os.environ,
                **service_environment(),
                "REGISTRATION_DATABASE_URL": db_url,
                "AMQP_URL": infra.amqp_url,
                "REGISTRATION_PORT": str(service_port),
                "REGISTRATION_RATE_LIMIT_PER_MINUTE": "0",
                "REGISTRATION_OPT_IN_MAILS_PER_HOUR": "0",
                "REGISTRATION_OPT_IN_REQUESTS_PER_CLIENT_PER_HOUR": "0",  # one client sends everything
                # The relay publishes when its own commits wake it, not every 2 s: the confirmation
                # yardstick's rows, in the same outbox, are its relay's work.
                "REGISTRATION_OUTBOX_POLL_INTERVAL": "3600",
                "LOG_LEVEL": "WARNING",
            },
        )
        stack.callback(_stop, service)
        wait_until_up(f"http://127.0.0.1:{publishing_port}/docs")
        wait_until_up(f"http://127.0.0.1:{service_port}/readyz")
        base_url, service_url = f"http://127.0.0.1:{baseline_port}", f"http://127.0.0.1:{service_port}"
        publishing_url = f"http://127.0.0.1:{publishing_port}"
        for url in (base_url, publishing_url, service_url):
            run_wrk(url, register_lua(), 3, args.connections)  # warm-up

        runs: dict[str, list[dict]] = {"baseline": [], "publishing_yardstick": [], "registration": []}
        for _ in range(args.rounds):
            # Alternating, so that all see the same machine (and the same growing tables).
            runs["baseline"].append(
                run_wrk(base_url, register_lua(), args.seconds, args.connections, server_pid=baseline.pid)
            )
            run = run_wrk(
                publishing_url, register_lua(), args.seconds, args.connections, server_pid=publishing.pid
            )
            run["outbox_backlog_at_end"] = asyncio.run(
                outbox_backlog(infra.migrator_url("registration"), "yardstick_outbox")
            )
            runs["publishing_yardstick"].append(run)
            run = run_wrk(service_url, register_lua(), args.seconds, args.connections, server_pid=service.pid)
            # Events still waiting for the relay when the round ends: work the CPU figure above does not
            # include (a relay that falls behind makes the intake look cheaper than it is).
            run["outbox_backlog_at_end"] = asyncio.run(outbox_backlog(db_url))
            runs["registration"].append(run)
        results: dict = {name: _median_run(r) for name, r in runs.items()}
        results["ratio"] = round(results["registration"]["rps"] / results["baseline"]["rps"], 3)
        # The same comparison by CPU time per request (yardstick / service): robust to other load.
        results["cpu_ratio"] = round(
            _median([r["cpu_ms_per_request"] for r in runs["baseline"]])
            / _median([r["cpu_ms_per_request"] for r in runs["registration"]]),
            3,
        )
        results["ratios_per_round"] = [
            round(r["rps"] / b["rps"], 3) for b, r in zip(runs["baseline"], runs["registration"], strict=True)
        ]
        # The ceiling for an intake that publishes its events: the publishing yardstick against the plain one,
        # and the service against the publishing yardstick (by CPU time per request).
        publishing_cpu = _median([r["cpu_ms_per_request"] for r in runs["publishing_yardstick"]])
        results["publishing_yardstick_cpu_ratio"] = round(
            _median([r["cpu_ms_per_request"] for r in runs["baseline"]]) / publishing_cpu, 3
        )
        results["cpu_ratio_to_publishing_yardstick"] = round(
            publishing_cpu / _median([r["cpu_ms_per_request"] for r in runs["registration"]]), 3
        )

        # Confirmations racing into one working group, against the confirmation yardstick (the same
        # yardstick app, publishing from the service's outbox), in alternating rounds, each into a working
        # group of its own: every token confirms once; the first `capacity` get seats, the rest the
        # waitlist. Afterwards the seat counter and the rows must agree.
        confirm_yardstick_port = free_port()
        confirm_yardstick = start(
            _yardstick_command(confirm_yardstick_port),
            {**yardstick_env, "BENCH_AMQP_URL": infra.amqp_url, "BENCH_OUTBOX": "registration.outbox"},
        )
        stack.callback(_stop, confirm_yardstick)
        confirm_yardstick_url = f"http://127.0.0.1:{confirm_yardstick_port}"
        wait_until_up(f"{confirm_yardstick_url}/docs")
        confirm_runs: dict[str, list[dict]] = {"yardstick": [], "registration": []}
        for _ in range(args.rounds):
            for name, url, pid in (
                ("yardstick", confirm_yardstick_url, confirm_yardstick.pid),
                ("registration", service_url, service.pid),
            ):
                confirm_runs[name].append(
                    _confirm_round(
                        db_url, url, pid, args.pending, args.capacity, args.confirm_seconds, args.connections
                    )
                )
        confirmations = _median_run(confirm_runs["registration"])
        confirmations["yardstick"] = _median_run(confirm_runs["yardstick"])
        confirmations["ratio"] = round(confirmations["rps"] / confirmations["yardstick"]["rps"], 3)
        confirmations["cpu_ratio"] = round(
            _median([r["cpu_ms_per_request"] for r in confirm_runs["yardstick"]])
            / _median([r["cpu_ms_per_request"] for r in confirm_runs["registration"]]),
            3,
        )
        # Any round of either that overbooked (or whose counter disagrees with its rows) fails the check.
        confirmations["overbooked"] = any(r["overbooked"] for runs in confirm_runs.values() for r in runs)
        results["confirmations"] = confirmations
        results.update(connections=args.connections, seconds=args.seconds, rounds=args.rounds)
        print(json.dumps(results))


def _confirm_round(
    db_url: str, url: str, pid: int, pending: int, capacity: int, seconds: int, connections: int
) -> dict:
    """One round of confirmations into a new working group with ``pending`` registrations waiting."""
    wg = f"bench-{uuid.uuid4().hex[:6]}"
    tokens = asyncio.run(make_pending(db_url, wg, pending, capacity))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(tokens))
    time.sleep(2)  # let the relay and autovacuum settle after the inserts
    lua = f'TOKENS = "{handle.name}"\nTHREADS = 2\n' + CONFIRM_LUA
    # Where the machine's CPU goes per confirmation: the server's process, Postgres, RabbitMQ, and
    # how busy both cores were (the rest is wrk, which drives the load from the same machine).
    cpu = CpuTime({"server": pid})
    machine_before = psutil.cpu_times()
    cpu.start()
    run = run_wrk(url, lua, seconds, connections, server_pid=pid)
    cpu.stop()
    machine = psutil.cpu_times()
    busy = (
        sum(machine)
        - machine.idle
        - machine.iowait
        - (sum(machine_before) - machine_before.idle - machine_before.iowait)
    )
    wall = sum(machine) - sum(machine_before)
    if run["requests"]:
        run["cpu_ms_per_request_by_process"] = {
            group: round(seconds * 1000 / run["requests"], 3) for group, seconds in cpu.seconds.items()
        }
        run["machine_cpu_ms_per_request"] = round(busy * 1000 / run["requests"], 3)
    run["machine_busy_share"] = round(busy / wall, 3) if wall else 0.0
    run["outbox_backlog_at_end"] = asyncio.run(outbox_backlog(db_url))
    state = asyncio.run(seat_state(db_url, wg))
    run["seat_state"] = state
    run["overbooked"] = state.get("confirmed", 0) > capacity or state["counter"] != state.get("confirmed", 0)
    return run


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _median_run(runs: list[dict]) -> dict:
    middle = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    summary = {**middle, "all_rps": [r["rps"] for r in runs]}
    if "outbox_backlog_at_end" in middle:
        summary["outbox_backlog_at_end"] = [r["outbox_backlog_at_end"] for r in runs]
    return summary


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait()


class _provisioned:
    def __enter__(self):
        self.stack = ExitStack()
        return provision(self.stack)

    def __exit__(self, *exc):
        self.stack.close()


if __name__ == "__main__":
    main()
