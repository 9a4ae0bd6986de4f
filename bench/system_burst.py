"""The whole system on one machine: the three services as their own processes (as ``mitwirkung dev`` runs
them: the notification service's ingest side and its sender apart), an aiosmtpd sink (its own
process, `bench/sink.py`), local
Postgres and RabbitMQ — as a city's IT would try it.

    .venv/bin/python -m bench.system_burst [--burst 10000] [--steady-rate 200 --steady-seconds 60]

burst   N registrations posted as fast as the registration service takes them (wrk, 64 connections):
        seconds from the first POST until the N-th confirm-your-registration mail is at the sink; mails
        missing and duplicated (counted by Message-ID); the mail rate while intake runs against the rate
        once it has stopped; the peak RSS of every service process; the CPU seconds each part of the
        system spent meanwhile (services, sink, Postgres, RabbitMQ): where the time goes.
steady  registrations at a fixed rate: POST→mail-at-sink latency, p50 and p99.

Prints JSON on its last line. ``--smoke`` runs both briefly (a few seconds) with small numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack

import asyncpg
import psutil

from bench.cpu import CpuTime
from bench.registration_throughput import _provisioned, _stop, start, wait_until_up
from bench.sink import Arrivals
from bench.sink import spawn as spawn_sink
from shared.cli import PROCESSES, SERVICES
from shared.db import asyncpg_dsn
from tests.support.infra import service_environment
from tests.support.smtp import free_port

ONE_PROCESS_EACH = tuple((service, service, {}) for service in SERVICES)

BURST_LUA = """
local counter = 0
local thread_id = 0
local threads = {}
setup = function(thread)
  thread:set("tid", thread_id); thread_id = thread_id + 1; table.insert(threads, thread)
end
request = function()
  counter = counter + 1
  local body = string.format('{"working_group_id":"sprachfoerderung","name":"Burst Person","email":"burst-%s-%d-%d@example.org","language":"de","participant_type":"resident","privacy_consent":true}', RUN, tid, counter)
  return wrk.format("POST", "/v1/registrations", {["Content-Type"]="application/json"}, body)
end
local done = 0
response = function(status, headers, body)
  done = done + 1
  if done >= PER_THREAD then wrk.thread:stop() end
end
"""


def run_burst(url: str, database_url: str, n: int, connections: int, threads: int = 2) -> tuple[float, float]:
    """Post ``n`` registrations with wrk (each thread stops after its share); returns the monotonic times
    of the first POST and of the moment all ``n`` were stored (wrk itself runs out its duration)."""
    run = uuid.uuid4().hex[:8]
    lua = f'RUN = "{run}"\nPER_THREAD = {n // threads}\n' + BURST_LUA
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
    started = time.monotonic()
    wrk = subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", "-d600s", "-s", handle.name, url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(_wait_for_rows(database_url, n - n % threads))
        return started, time.monotonic()
    finally:
        wrk.terminate()
        wrk.wait()


async def count_rows(database_url: str, table: str) -> int:
    """The rows of ``table`` (the databases are fresh): the registrations the burst made (wrk may have had
    a few more requests in flight than n), the mails the ingest side has recorded so far."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def _wait_for_rows(database_url: str, n: int, timeout: float = 600) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM registration.registrations") < n:
            if time.monotonic() > deadline:
                raise RuntimeError("the registrations never arrived")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def run_steady(url: str, rate: int, seconds: int, connections: int = 32) -> dict[str, float]:
    """POST at ``rate`` per second for ``seconds`` over ``connections`` kept-alive HTTP/1.1 connections;
    returns {email: monotonic time the POST was sent}.

    The client writes the requests as bytes and reads the answers by Content-Length: a load generator
    must cost the machine little (an httpx client at 200/s took most of a core from the system it
    measured)."""
    host, port = url.removeprefix("http://").split(":")
    sent: dict[str, float] = {}
    statuses: list[int] = []
    due: asyncio.Queue[str | None] = asyncio.Queue()
    run = uuid.uuid4().hex[:8]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (email := await due.get()) is not None:
                body = json.dumps(
                    {
                        "working_group_id": "sprachfoerderung",
                        "name": "Steady Person",
                        "email": email,
                        "language": "de",
                        "participant_type": "resident",
                        "privacy_consent": True,
                    }
                ).encode()
                sent[email] = time.monotonic()
                writer.write(
                    b"POST /v1/registrations HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                statuses.append(int(head.split(b" ", 2)[1]))
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    begin = time.monotonic()
    for i in range(rate * seconds):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait(f"steady-{run}-{i}@example.org")
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    bad = [code for code in statuses if code != 202]
    if bad:
        raise RuntimeError(f"{len(bad)} POSTs were not accepted: {bad[:5]}")
    return sent


def wait_for_mails(sink: Arrivals, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sink.count() < expected and time.monotonic() < deadline:
        time.sleep(0.05)


class PeakRss:
    """Samples the resident set size of the service processes every 0.2 s; keeps each one's peak."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak_mb = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, process in self.processes.items():
                try:
                    self.peak_mb[name] = max(self.peak_mb[name], process.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--steady-rate", type=int, default=200)
    parser.add_argument("--steady-seconds", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=300.0, help="how long to wait for the mails")
    parser.add_argument("--smoke", action="store_true", help="a few seconds with small numbers")
    parser.add_argument(
        "--layout",
        choices=("split", "one-process"),
        default="split",
        help="the notification service as ingest + sender processes (as deployed), or as one",
    )
    args = parser.parse_args()
    if args.smoke:
        args.burst, args.steady_rate, args.steady_seconds, args.timeout = 200, 20, 2, 60.0

    smtp_port = free_port()
    with ExitStack() as stack:
        arrivals = stack.enter_context(tempfile.TemporaryDirectory()) + "/arrivals.tsv"
        sink_process = spawn_sink(stack, smtp_port, arrivals)
        sink = Arrivals(arrivals)
        infra = stack.enter_context(_provisioned())
        processes = PROCESSES if args.layout == "split" else ONE_PROCESS_EACH
        ports = {name: free_port() for name, _, _ in processes}
        env = {
            **os.environ,
            **service_environment(),
            "AMQP_URL": infra.amqp_url,
            "LOG_LEVEL": "WARNING",
            "NOTIFICATION_SMTP_PORT": str(smtp_port),
            "REGISTRATION_RATE_LIMIT_PER_MINUTE": "0",
            "REGISTRATION_OPT_IN_MAILS_PER_HOUR": "0",
            "PROPOSALS_RATE_LIMIT_PER_MINUTE": "0",
            # One client sends everything: no per-client hourly budgets.
            "REGISTRATION_OPT_IN_REQUESTS_PER_CLIENT_PER_HOUR": "0",
            "PROPOSALS_SUBMISSIONS_PER_CLIENT_PER_HOUR": "0",
        }
        pids = {}
        # The processes `mitwirkung dev` runs (the notification service as its ingest side and its sender),
        # or with ``--layout one-process`` the notification service as one process.
        for name, service, extra in processes:
            prefix = service.upper()
            process = start(
                [sys.executable, "-m", "shared.cli", "serve", service],
                {
                    **env,
                    **extra,
                    f"{prefix}_DATABASE_URL": infra.database_url(service),
                    f"{prefix}_PORT": str(ports[name]),
                },
            )
            stack.callback(_stop, process)
            pids[name] = process.pid
        for name in ports:
            wait_until_up(f"http://127.0.0.1:{ports[name]}/readyz")
        url = f"http://127.0.0.1:{ports['registration']}"
        results: dict = {"burst": args.burst, "layout": args.layout}

        cpu = CpuTime({**pids, "sink": sink_process.pid})
        with PeakRss(pids) as rss:
            cpu.start()
            started, intake_done = run_burst(
                url, infra.database_url("registration"), args.burst, args.connections
            )
            during_intake = sink.count()
            recorded_during_intake = asyncio.run(
                count_rows(infra.database_url("notification"), "notification.deliveries")
            )
            posted = asyncio.run(count_rows(infra.database_url("registration"), "registration.registrations"))
            wait_for_mails(sink, posted, args.timeout)
            sink.refresh()
            cpu.stop()
            last = max(sink.arrivals) if sink.arrivals else time.monotonic()
        after = [t for t in sink.arrivals if t > intake_done]
        drain = (max(after) - intake_done) if after else 0.0
        intake_s = intake_done - started
        results["burst_result"] = {
            "intake_s": round(intake_s, 2),
            "registrations": posted,
            "intake_per_s": round(posted / intake_s, 1),
            "last_mail_after_first_post_s": round(last - started, 2),
            "mails_at_sink": sink.count(),
            "missing": max(0, posted - len(sink.message_ids)),
            "duplicates": sum(c - 1 for c in sink.message_ids.values() if c > 1),
            # Ingest keeping up with intake: mails recorded in the delivery log while the POSTs came in.
            "recorded_during_intake_per_s": round(recorded_during_intake / intake_s, 1),
            "mail_rate_during_intake_per_s": round(during_intake / intake_s, 1),
            "mail_rate_after_intake_per_s": round(len(after) / drain, 1) if drain else None,
            "peak_rss_mb": {name: round(mb, 1) for name, mb in rss.peak_mb.items()},
            # From the first POST until the last mail: per registration, add them up and divide by N.
            "cpu_s": cpu.seconds,
        }
        during, alone = (
            results["burst_result"]["mail_rate_during_intake_per_s"],
            results["burst_result"]["mail_rate_after_intake_per_s"],
        )
        results["burst_result"]["starvation_ratio"] = round(during / alone, 2) if alone else None

        time.sleep(1)
        sent = asyncio.run(run_steady(url, args.steady_rate, args.steady_seconds))
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            sink.refresh()
            if all(e in sink.first_mail_at for e in sent):
                break
            time.sleep(0.2)
        sink.refresh()
        latencies = sorted(
            (sink.first_mail_at[e] - t) * 1000 for e, t in sent.items() if e in sink.first_mail_at
        )
        results["steady"] = {
            "rate_per_s": args.steady_rate,
            "seconds": args.steady_seconds,
            "posted": len(sent),
            "mailed": len(latencies),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1) if latencies else None,
        }
        print(json.dumps(results))


if __name__ == "__main__":
    main()
