"""The outbox relay against the floor of its AMQP client: CPU time per event.

Run by hand, on this machine's local Postgres and RabbitMQ (a fresh database, roles and vhost are made
and removed, as for the tests):

    .venv/bin/python -m bench.relay_floor [--events 2000] [--rounds 4]

(i)  relay: ``--events`` rows are put into the registration outbox, then the registration service's relay
     (as built by the service) publishes them in passes until none is left: claim with
     ``FOR UPDATE SKIP LOCKED``, publish with publisher confirms, mark published;
(ii) floor: the leanest publisher on the same client library (aiormq, under aio-pika): the same number of
     messages with the same body, properties and routing key, on a channel with publisher confirms,
     500 at a time with their confirms awaited together, and no database at all.

Rounds alternate, so both see the same machine; the queues the events are routed to are purged after
each round. CPU time is this process's (``time.process_time``), so other load on the machine disturbs it
little. Prints JSON on its last line: ``{"relay_cpu_us_per_event", "floor_cpu_us_per_event",
"relay_over_floor", ...}`` with the medians of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime

import aio_pika
import aiormq
import asyncpg
import uvloop
from pamqp.commands import Basic

from shared.db import asyncpg_dsn
from shared.topology import EVENTS_EXCHANGE, QUEUES
from tests.support.infra import provision, service_environment

PAYLOAD = (
    '{"registration_id": "00000000-0000-4000-8000-000000000001", "recipient": {"email": '
    '"bench@example.org", "name": "", "language": "de"}, "working_group": {"id": "sprachfoerderung", '
    '"title": "Sprachförderung"}, "meetings": [{"number": 1, "starts_at": "2019-03-06T18:00:00+01:00", '
    '"venue": "Berufsbildende Schule I (blauer Salon)", "address": "Kaiserslautern", "sequence": 0}, '
    '{"number": 2, "starts_at": null}], "participant_type": "resident", "links": {"confirm_url": '
    '"http://localhost:8001/v1/registrations/confirm?token=0123456789abcdef0123456789abcdef"}}'
)
WINDOW = 500  # as the relay's passes


async def _relay_round(relay, db: asyncpg.Connection, n: int) -> float:
    await db.executemany(
        "INSERT INTO registration.outbox (id, event_type, event_version, payload, correlation_id) "
        "VALUES ($1, 'registration.submitted', 1, $2::jsonb, $3)",
        [(uuid.uuid4(), PAYLOAD, uuid.uuid4().hex) for _ in range(n)],
    )
    started = time.process_time()
    published = 0
    while published < n:
        published += await relay.relay_once()
    return (time.process_time() - started) / n * 1e6


async def _floor_round(channel: aiormq.abc.AbstractChannel, n: int) -> float:
    body = PAYLOAD.encode()

    async def publish() -> None:
        properties = Basic.Properties(
            delivery_mode=2,
            message_id=str(uuid.uuid4()),
            correlation_id=uuid.uuid4().hex,
            message_type="registration.submitted",
            timestamp=datetime.now(UTC),
            content_type="application/json",
            headers={"x-event-version": 1, "x-producer": "registration"},
        )
        confirmation = await channel.basic_publish(
            body,
            exchange=EVENTS_EXCHANGE,
            routing_key="registration.submitted",
            properties=properties,
            mandatory=True,
            wait=False,
        )
        assert isinstance(confirmation, Basic.Ack), confirmation

    started = time.process_time()
    for offset in range(0, n, WINDOW):
        await asyncio.gather(*(publish() for _ in range(min(WINDOW, n - offset))))
    return (time.process_time() - started) / n * 1e6


async def _purge(channel: aio_pika.abc.AbstractChannel) -> None:
    for queue in QUEUES:
        await (await channel.get_queue(queue.name, ensure=False)).purge()


async def run(infra, events: int, rounds: int) -> dict:
    os.environ["REGISTRATION_DATABASE_URL"] = infra.database_url("registration")
    os.environ["AMQP_URL"] = infra.amqp_url
    os.environ.update(service_environment())
    from services.registration.app import build
    from services.registration.config import RegistrationSettings

    runtime = build(RegistrationSettings())
    assert runtime.relay is not None
    relay = runtime.relay
    db = await asyncpg.connect(asyncpg_dsn(infra.migrator_url("registration")))
    connection = await aio_pika.connect(infra.amqp_url)
    admin = await connection.channel()
    floor_channel = await (await connection.channel(publisher_confirms=True)).get_underlay_channel()
    try:
        await runtime.declare(admin)  # exchanges and queues, as the service declares them
        await _floor_round(floor_channel, 50)  # warm both up
        await _relay_round(relay, db, 50)
        await _purge(admin)
        results: dict[str, list[float]] = {"relay": [], "floor": []}
        for i in range(rounds):
            order = ("relay", "floor") if i % 2 == 0 else ("floor", "relay")
            for side in order:
                if side == "relay":
                    results[side].append(await _relay_round(relay, db, events))
                else:
                    results[side].append(await _floor_round(floor_channel, events))
                await _purge(admin)
    finally:
        await relay.stop()
        await connection.close()
        await db.close()
        await runtime.engine.dispose()
    relay_us, floor_us = _median(results["relay"]), _median(results["floor"])
    return {
        "relay_cpu_us_per_event": round(relay_us, 1),
        "floor_cpu_us_per_event": round(floor_us, 1),
        "relay_over_floor": round(relay_us / floor_us, 3),
        "rounds": {side: [round(v, 1) for v in values] for side, values in results.items()},
        "events": events,
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with ExitStack() as stack:
        infra = provision(stack)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            summary = runner.run(run(infra, args.events, args.rounds))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
