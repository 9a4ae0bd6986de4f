"""The notification service stopped in the middle of a burst (a deploy) and started again: the mails it
had claimed are finished or handed back, none is sent twice, none is missing."""

from __future__ import annotations

import time

import asyncpg

from services.notification.app import create_app as notification_app
from shared.db import asyncpg_dsn
from shared.topology import QueuePolicy, declare_topology
from tests.conftest import running, unique_email
from tests.notification.test_sending import submitted
from tests.support.broker import dead_lettered
from tests.support.events import publish_event
from tests.support.wait import eventually

BURST = 120


async def statuses(settings, emails: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM notification.deliveries "
            "WHERE recipient_email = ANY($1::text[]) GROUP BY status",
            emails,
        )
        return {r["status"]: r["n"] for r in rows}
    finally:
        await conn.close()


async def test_stopping_the_notification_service_mid_burst_sends_nothing_twice_and_loses_nothing(
    notification_settings, smtp
):
    smtp.handler.delay = 0.1  # a relay that takes its time: sends are under way when the stop comes
    settings = notification_settings.model_copy(
        update={
            # A rate limit too: some claimed mails are still waiting for their slot when the stop comes.
            "rate_limit_per_minute": 30,
            "rate_limit_window_seconds": 2.0,
            "shutdown_grace_seconds": 10.0,
        }
    )
    emails = [unique_email("burst") for _ in range(BURST)]
    await declare_topology(settings.amqp_url, QueuePolicy.from_settings(settings))
    for email in emails:
        await publish_event(settings.amqp_url, submitted(email))

    async def delivered(count: int):
        async def check() -> bool:
            return sum(1 for e in emails if smtp.handler.to(e)) >= count

        return check

    async with running(notification_app(settings)):
        await eventually(await delivered(20), "the first 20 mails of the burst", timeout=120)
        stopping_at = time.monotonic()
    stop_seconds = time.monotonic() - stopping_at
    sent_before_restart = sum(len(smtp.handler.to(e)) for e in emails)
    after_stop = await statuses(settings, emails)
    # Nothing left claimed: what was under way finished and was recorded, the rest was handed back.
    assert after_stop.get("sending", 0) == 0
    assert after_stop.get("unknown", 0) == 0
    assert after_stop.get("sent", 0) == sent_before_restart
    assert stop_seconds < settings.shutdown_grace_seconds + 5

    async with running(notification_app(settings)):
        await eventually(await delivered(BURST), "every mail of the burst", timeout=120)

        async def all_sent() -> bool:
            return (await statuses(settings, emails)) == {"sent": BURST}

        await eventually(all_sent, "every delivery recorded as sent")
    counts = [len(smtp.handler.to(e)) for e in emails]
    assert counts == [1] * BURST
    dlq = await dead_lettered(settings.amqp_url)
    assert sum(dlq.values()) == 0
    print(
        "restart mid-burst:",
        {
            "burst": BURST,
            "sent_before_stop": sent_before_restart,
            "statuses_after_stop": after_stop,
            "stop_s": round(stop_seconds, 2),
            "mails": sum(counts),
            "duplicates": sum(c - 1 for c in counts),
            "missing": counts.count(0),
            "dlq": sum(dlq.values()),
        },
    )
