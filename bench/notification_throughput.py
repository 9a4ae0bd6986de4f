"""Notification throughput: the whole path (event → inbox → delivery log → render → SMTP → status) against
a bare sender, both into the same local SMTP sink.

Run by hand, on this machine's local Postgres and RabbitMQ (a fresh database, roles and vhost are made
and removed, as for the tests):

    .venv/bin/python -m bench.notification_throughput [--n 2000] [--connections 5] [--rounds 3] [--senders 1]

(i)  bare: ``--connections`` aiosmtplib connections send N multipart/alternative mails, each built with
     the standard ``email`` package (about the size of our real mails), as fast as they can;
(ii) pipeline: the notification service as it is deployed (``--layout split``, the default): its ingest
     side (``NOTIFICATION_ROLE=ingest``) as a process of its own, as Postgres and RabbitMQ are, and its
     sender (``NOTIFICATION_ROLE=sender``, ``smtp_pool_size=--connections``) in this process, where the
     bare sender runs; ``--layout one-process`` runs the whole service here instead. No rate limit; INFO
     logging as in production (the sender's written to a file). A separate process publishes N
     ``registration.submitted`` events to the exchange, as the registration service would; the clock runs
     from the first publish until all N deliveries are ``sent``. With ``--senders N`` (split layout), N − 1
     more sender replicas run as processes of their own, each with ``--connections`` connections, sharing
     the delivery log with the one here: how far the deployed system scales on this machine, not a
     comparison with the one-process bare sender.

Both sides run on uvloop, as the services do in production (uvicorn picks it when it is installed) and as
the leanest sender would. The sink is ``bench/sink.py``, a process of its own, as a relay is: in this
process, as a thread, it took the GIL from whichever sender ran beside it, and slowed the bare sender
most (that arrangement gave the bare sender about half its rate). Both are warmed up first (connections
open, templates compiled), then ``--rounds`` rounds alternate bare and pipeline in one event loop, so that
both see the same machine. Prints JSON on its last line: ``{"bare_mails_per_s", "pipeline_mails_per_s",
"ratio", "cpu_ratio", "ratios_per_round", "n", ...}`` (medians of the rounds), with the CPU time per mail of
this process (the sender) on both sides, of the sink, and, for the pipeline, of the ingest process,
Postgres and RabbitMQ, and the pipeline's timeline (``pipeline_timeline_s``: seconds after the first
publish until the first and the last of the N mails were recorded, the first was sent, and all were sent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from datetime import UTC, datetime
from email import policy
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import uvloop

from bench.cpu import CpuTime
from bench.sink import Arrivals
from bench.sink import spawn as spawn_sink
from shared.db import asyncpg_dsn
from tests.support.infra import RUN_SECRETS, service_environment
from tests.support.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent
LOG_FILE = ROOT / "var" / "bench-notification.log"
WARMUP = 20

# About the real registration mail: ~1 KB of German text, ~1.7 KB of HTML, non-ASCII throughout.
TEXT = (
    "Guten Tag Ayşe Yılmaz,\n\nvielen Dank für Ihre Anmeldung zum Arbeitskreis „Sprachförderung“ des neuen\n"
    "Integrationskonzepts der Stadt Kaiserslautern.\n\nBitte bestätigen Sie Ihre Anmeldung über diesen Link:\n"
    "http://localhost:8001/v1/registrations/confirm?token=0123456789abcdef0123456789abcdef\n\n"
    "Erst mit der Bestätigung erhalten Sie einen Platz (oder einen Platz auf der Warteliste). Ohne\n"
    "Bestätigung verfällt die Anmeldung, und Ihre Daten werden gelöscht.\n\n"
    "Die Anmeldung gilt für beide Termine des Arbeitskreises:\n"
    "- 1. Termin: Mittwoch, 6. März 2019 um 18:00:00 MEZ, Berufsbildende Schule I (blauer Salon)\n"
    "- 2. Termin: Der Termin wird noch bekannt gegeben.\n\n"
    "Wenn Sie sich nicht angemeldet haben, können Sie diese Nachricht ignorieren.\n\nMit freundlichen Grüßen\n"
    "Integrationsbeauftragter der Stadt Kaiserslautern\n"
    "Willy-Brandt-Platz 1, 67657 Kaiserslautern · 0631 365-1121 · europa@kaiserslautern.de\n"
    "Datenschutz: https://www.kaiserslautern.de/datenschutz\n"
)
HTML = (
    '<!DOCTYPE html>\n<html lang="de" dir="ltr">\n<head>\n<meta charset="utf-8">\n'
    "<title>Anmeldung bestätigen</title>\n</head>\n"
    '<body style="font-family: Arial, Helvetica, sans-serif; line-height: 1.5; color: #1a1a1a;">\n'
    '<div dir="ltr" lang="de" style="max-width: 40em; margin: 0 auto; padding: 1em;">\n'
    + "".join(f"<p>{line}</p>\n" for line in TEXT.split("\n\n"))
    + '<p><a href="http://localhost:8001/v1/registrations/confirm?token=0123456789abcdef" '
    'style="display:inline-block;padding:0.6em 1.2em;background:#005a9c;color:#fff;">Anmeldung bestätigen</a>'
    "</p>\n</div>\n</body>\n</html>\n"
)
SUBJECT = "Bitte bestätigen Sie Ihre Anmeldung: Arbeitskreis „Sprachförderung“"


# The leanest way the standard library builds the same mail: compat32 MIME classes, quoted-printable
# bodies, base64 encoded words for the non-ASCII headers and a boundary chosen up front (no scan of the
# text) — the same choices as services/notification/mail.py, without its safety checks and templates.
_POLICY = policy.compat32.clone(linesep="\r\n")
_BODY_CHARSET = Charset("utf-8")
_BODY_CHARSET.body_encoding = QP
_HEADER_CHARSET = Charset("utf-8")
_HEADER_CHARSET.header_encoding = BASE64


def bare_message(i: int) -> bytes:
    msg = MIMEMultipart("alternative", policy=_POLICY, boundary="=_" + secrets.token_hex(16))
    for text, subtype in ((TEXT, "plain"), (HTML, "html")):
        part = MIMEText(text, subtype, _BODY_CHARSET, policy=_POLICY)
        del part["MIME-Version"]
        msg.attach(part)
    sender = Header("Stadt Kaiserslautern – Mitwirkung", _HEADER_CHARSET)
    sender.append("<mitwirkung@kaiserslautern.de>", "us-ascii")
    recipient = Header("Ayşe Yılmaz", _HEADER_CHARSET)
    recipient.append(f"<bench-bare-{i}@example.org>", "us-ascii")
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = Header(SUBJECT, _HEADER_CHARSET)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="kaiserslautern.de")
    return msg.as_bytes()


async def bare(port: int, n: int, connections: int, sink_pid: int) -> tuple[float, float, float]:
    """Mails per second, and the CPU milliseconds per mail of this process and of the sink."""
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) for _ in range(connections)]
    for client in clients:
        await client.connect()
        await client.sendmail("mitwirkung@kaiserslautern.de", ["warm@example.org"], bare_message(0))
    next_index = iter(range(n))

    async def worker(client: aiosmtplib.SMTP) -> None:
        for i in next_index:
            await client.sendmail(
                "mitwirkung@kaiserslautern.de", [f"bench-bare-{i}@example.org"], bare_message(i)
            )

    sink = CpuTime({"sink": sink_pid})
    sink.start()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    sink.stop()
    for client in clients:
        await client.quit()
    return n / elapsed, cpu * 1000 / n, sink.seconds.get("sink", 0.0) * 1000 / n


PUBLISHER = """
import asyncio, sys, uuid
from datetime import datetime
from zoneinfo import ZoneInfo
import aio_pika
from shared.events import MeetingInfo, Recipient, RegistrationSubmitted, SelfServiceLinks, WorkingGroupInfo
from shared.topology import EVENTS_EXCHANGE

async def main(amqp_url, run, start, n):
    berlin = ZoneInfo("Europe/Berlin")
    bodies = [
        RegistrationSubmitted(
            registration_id=uuid.uuid4(),
            recipient=Recipient(email=f"bench-{run}-{i}@example.org", name="Ayşe Yılmaz", language="de"),
            working_group=WorkingGroupInfo(id="sprachfoerderung", title="Sprachförderung"),
            meetings=[
                MeetingInfo(number=1, starts_at=datetime(2019, 3, 6, 18, tzinfo=berlin),
                            venue="Berufsbildende Schule I (blauer Salon)", address="Kaiserslautern"),
                MeetingInfo(number=2),
            ],
            links=SelfServiceLinks(confirm_url=f"http://localhost:8001/v1/registrations/confirm?token={uuid.uuid4().hex}"),
        ).model_dump_json().encode()
        for i in range(start, start + n)
    ]
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    print("ready", flush=True)
    sys.stdin.readline()
    window = 100  # confirms awaited together, as the outbox relay does
    for offset in range(0, n, window):
        await asyncio.gather(*(
            exchange.publish(
                aio_pika.Message(body, message_id=str(uuid.uuid4()), type="registration.submitted",
                                 content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="registration.submitted", mandatory=True)
            for body in bodies[offset:offset + window]
        ))
    print("published", flush=True)
    await connection.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def publish_from_another_process(
    amqp_url: str, run: str, start: int, n: int
) -> tuple[float, asyncio.Task[None]]:
    """Start the publisher, let it prepare, then say go; returns the moment of 'go' and the task that
    reaps the publisher (it fails if the publisher did)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUBLISHER,
        amqp_url,
        run,
        str(start),
        str(n),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdin and process.stdout
    line = await process.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"publisher failed to start: {line!r}")
    started = time.perf_counter()
    process.stdin.write(b"go\n")
    await process.stdin.drain()
    return started, asyncio.create_task(_reap(process))


async def _reap(process: asyncio.subprocess.Process) -> None:
    out, _ = await process.communicate()
    if process.returncode != 0 or b"published" not in out:
        raise RuntimeError(f"publisher failed: {out!r}")


async def wait_sent(dsn: str, run: str, n: int, timeout: float, publisher: asyncio.Task[None]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if publisher.done() and publisher.exception():
                raise RuntimeError("the publisher failed") from publisher.exception()
            sent = await conn.fetchval(
                "SELECT count(*) FROM notification.deliveries WHERE status = 'sent' AND recipient_email LIKE $1",
                f"bench-{run}-%",
            )
            if sent >= n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {sent} of {n} deliveries sent after {timeout} s")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


def start_part(role: str, database_url: str, amqp_url: str, **env: str) -> subprocess.Popen:
    """A part of the notification service (``ingest``, or a ``sender`` replica) as its own process, as
    deployed; ``env`` adds NOTIFICATION_* settings."""
    from bench.registration_throughput import start, wait_until_up

    port = free_port()
    process = start(
        [sys.executable, "-m", "shared.cli", "serve", "notification"],
        {
            **os.environ,
            **service_environment(),
            "PYTHONPATH": str(ROOT),
            "AMQP_URL": amqp_url,
            "NOTIFICATION_DATABASE_URL": database_url,
            "NOTIFICATION_ROLE": role,
            "NOTIFICATION_PORT": str(port),
            "LOG_LEVEL": "INFO",
            **{f"NOTIFICATION_{name.upper()}": value for name, value in env.items()},
        },
    )
    wait_until_up(f"http://127.0.0.1:{port}/readyz")
    return process


@contextlib.asynccontextmanager
async def sender(
    database_url: str, amqp_url: str, port: int, connections: int, split: bool
) -> AsyncIterator[str]:
    """The notification service's sender in this process (all of the service with ``split`` False), warmed
    up with a few mails; yields the DSN of its database."""
    from services.notification.app import create_app
    from services.notification.config import NotificationSettings

    settings = NotificationSettings(
        database_url=database_url,
        amqp_url=amqp_url,
        smtp_port=port,
        smtp_pool_size=connections,
        rate_limit_per_minute=0,
        environment="test",
        address_hash_secret=RUN_SECRETS["NOTIFICATION_ADDRESS_HASH_SECRET"],
        staff_jwt_secret=RUN_SECRETS["STAFF_JWT_SECRET"],
        role="sender" if split else "all",
    )
    app = create_app(settings)
    # Production log level and format, but into a file: the last line of stdout is ours.
    LOG_FILE.parent.mkdir(exist_ok=True)
    with LOG_FILE.open("w") as log_stream:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(log_stream)
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        dsn = asyncpg_dsn(database_url)
        async with app.router.lifespan_context(app):
            if not split:
                await asyncio.wait_for(app.state.runtime.broker_ready.wait(), 30)
            run = uuid.uuid4().hex[:8]
            _, publisher = await publish_from_another_process(amqp_url, run, 0, WARMUP)
            await wait_sent(dsn, run, WARMUP, 60, publisher)
            await publisher
            yield dsn


async def pipeline_round(
    dsn: str, amqp_url: str, sink: Arrivals, n: int, others_pids: dict[str, int]
) -> dict:
    """N events published by another process, until all N deliveries are sent."""
    received_before = await settled_count(sink)
    run = uuid.uuid4().hex[:8]
    # Where the time goes meanwhile: this process, the sink, the ingest process and any further senders,
    # Postgres, RabbitMQ.
    others = CpuTime(others_pids)
    others.start()
    conn = await asyncpg.connect(dsn)
    try:
        started, publisher = await publish_from_another_process(amqp_url, run, 0, n)
        # The database's clock at the first publish, for the timeline below.
        db_started = await conn.fetchval(
            "SELECT clock_timestamp() - make_interval(secs => $1)", time.perf_counter() - started
        )
        cpu = time.process_time()
        await wait_sent(dsn, run, n, 600, publisher)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        others.stop()
        await publisher
        received = await settled_count(sink) - received_before
        statuses = dict(
            await conn.fetch(
                "SELECT status, count(*) FROM notification.deliveries WHERE recipient_email LIKE $1 "
                "GROUP BY status",
                f"bench-{run}-%",
            )
        )
        attempts, first_recorded, last_recorded, first_sent = await conn.fetchrow(
            "SELECT max(attempts), extract(epoch FROM min(created_at) - $2::timestamptz)::float8,"
            " extract(epoch FROM max(created_at) - $2::timestamptz)::float8,"
            " extract(epoch FROM min(sent_at) - $2::timestamptz)::float8"
            " FROM notification.deliveries WHERE recipient_email LIKE $1",
            f"bench-{run}-%",
            db_started,
        )
    finally:
        await conn.close()
    return {
        "mails_per_s": n / elapsed,
        "cpu_ms_per_mail": cpu * 1000 / n,
        "others_cpu_ms_per_mail": {k: v * 1000 / n for k, v in others.seconds.items()},
        "statuses": statuses,
        "max_attempts": attempts,
        "received": received,
        # The timeline, in seconds after the first publish: the ingest side's pace (the first and the last
        # of the N mails recorded), the first mail sent, and the whole run.
        "first_recorded_s": first_recorded,
        "last_recorded_s": last_recorded,
        "first_sent_s": first_sent,
        "elapsed_s": elapsed,
    }


async def settled_count(sink: Arrivals) -> int:
    """The mails at the sink once it has written down what it received (it flushes every 0.1 s)."""
    await asyncio.sleep(0.25)
    return sink.count()


async def rounds(
    args: argparse.Namespace,
    port: int,
    sink: Arrivals,
    sink_pid: int,
    database_url: str,
    amqp_url: str,
    parts: dict[str, subprocess.Popen],
) -> tuple[list[tuple[float, float, float]], list[dict]]:
    """Bare and pipeline rounds, alternating in one event loop, so that both see the same machine."""
    bare_runs: list[tuple[float, float, float]] = []
    pipeline_runs: list[dict] = []
    async with contextlib.AsyncExitStack() as stack:
        dsn = ""
        if args.only != "bare":
            dsn = await stack.enter_async_context(
                sender(database_url, amqp_url, port, args.connections, "ingest" in parts)
            )
        others = {"sink": sink_pid, **{name: part.pid for name, part in parts.items()}}
        for _ in range(args.rounds):
            if args.only != "pipeline":
                bare_runs.append(await bare(port, args.n, args.connections, sink_pid))
            if args.only != "bare":
                pipeline_runs.append(await pipeline_round(dsn, amqp_url, sink, args.n, others))
    return bare_runs, pipeline_runs


def _run(coroutine: Any) -> Any:
    """On uvloop, as the services run in production (uvicorn picks it) and as the leanest sender would."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="bare and pipeline alternate; medians")
    parser.add_argument(
        "--senders",
        type=int,
        default=1,
        help="sender replicas (split layout): this process's, and the rest as processes of their own",
    )
    parser.add_argument(
        "--only", choices=("bare", "pipeline"), help="run one side (for profiling); no ratio then"
    )
    parser.add_argument(
        "--layout",
        choices=("split", "one-process"),
        default="split",
        help="the service's ingest side as its own process (as deployed), or all of it in one",
    )
    args = parser.parse_args()

    port = free_port()
    with ExitStack() as stack:
        arrivals = stack.enter_context(tempfile.TemporaryDirectory()) + "/arrivals.tsv"
        sink_process = spawn_sink(stack, port, arrivals)
        sink = Arrivals(arrivals)
        summary: dict = {
            "n": args.n,
            "connections": args.connections,
            "layout": args.layout,
            "senders": args.senders if args.layout == "split" else 1,
            "rounds": args.rounds,
        }
        database_url, amqp_url = "", ""
        # The service's other processes: the ingest side, and senders beyond the one in this process.
        parts: dict[str, subprocess.Popen] = {}
        if args.only != "bare":
            from bench.registration_throughput import _stop
            from tests.support.infra import provision

            infra = provision(stack)
            database_url, amqp_url = infra.database_url("notification"), infra.amqp_url
            if args.layout == "split":
                parts["ingest"] = start_part("ingest", database_url, amqp_url)
                for number in range(2, args.senders + 1):
                    parts[f"sender-{number}"] = start_part(
                        "sender",
                        database_url,
                        amqp_url,
                        smtp_port=str(port),
                        smtp_pool_size=str(args.connections),
                        rate_limit_per_minute="0",
                    )
            for part in parts.values():
                stack.callback(_stop, part)
        bare_runs, pipeline_runs = _run(
            rounds(args, port, sink, sink_process.pid, database_url, amqp_url, parts)
        )
        if bare_runs:
            summary.update(
                bare_mails_per_s=round(statistics.median([rate for rate, _, _ in bare_runs]), 1),
                bare_cpu_ms_per_mail=round(statistics.median([cpu for _, cpu, _ in bare_runs]), 3),
                bare_sink_cpu_ms_per_mail=round(
                    statistics.median([sink_cpu for _, _, sink_cpu in bare_runs]), 3
                ),
                bare_mail_bytes=len(bare_message(0)),
                bare_rounds_mails_per_s=[round(rate, 1) for rate, _, _ in bare_runs],
            )
        if pipeline_runs:
            others = pipeline_runs[0]["others_cpu_ms_per_mail"]
            statuses: dict[str, int] = {}
            for run in pipeline_runs:
                for status, count in run["statuses"].items():
                    statuses[status] = statuses.get(status, 0) + count
            summary.update(
                pipeline_mails_per_s=round(statistics.median([r["mails_per_s"] for r in pipeline_runs]), 1),
                # This process: the sender (or the whole service, one-process layout).
                pipeline_cpu_ms_per_mail=round(
                    statistics.median([r["cpu_ms_per_mail"] for r in pipeline_runs]), 3
                ),
                pipeline_others_cpu_ms_per_mail={
                    name: round(
                        statistics.median([r["others_cpu_ms_per_mail"][name] for r in pipeline_runs]), 3
                    )
                    for name in others
                },
                pipeline_mail_bytes=sink.last_size,
                pipeline_statuses=statuses,
                pipeline_max_attempts=max(r["max_attempts"] for r in pipeline_runs),
                pipeline_mails_received=sum(r["received"] for r in pipeline_runs),
                pipeline_rounds_mails_per_s=[round(r["mails_per_s"], 1) for r in pipeline_runs],
                pipeline_timeline_s={
                    key: round(statistics.median([r[key] for r in pipeline_runs]), 2)
                    for key in ("first_recorded_s", "last_recorded_s", "first_sent_s", "elapsed_s")
                },
            )
        if args.only is None:
            summary["ratio"] = round(summary["pipeline_mails_per_s"] / summary["bare_mails_per_s"], 3)
            summary["ratios_per_round"] = [
                round(p["mails_per_s"] / rate, 3)
                for (rate, _, _), p in zip(bare_runs, pipeline_runs, strict=True)
            ]
            # CPU per mail of the sender (this process, and any further sender replicas), bare over
            # pipeline: what the sender's own code costs, far less disturbed than the rates by other load.
            senders_cpu = summary["pipeline_cpu_ms_per_mail"] + sum(
                cpu
                for name, cpu in summary["pipeline_others_cpu_ms_per_mail"].items()
                if name.startswith("sender-")
            )
            summary["cpu_ratio"] = round(summary["bare_cpu_ms_per_mail"] / senders_cpu, 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
