"""Two instances of every service on the same database and queues: relays share the outbox, consumers
compete, periodic jobs act once, and the SMTP rate limit holds for the whole service."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg

from services.notification.app import create_app as notification_app
from services.proposals.app import create_app as proposals_app
from services.registration.app import create_app as registration_app
from shared.db import asyncpg_dsn
from shared.events import MeetingInfo, WorkingGroupChanged
from shared.tokens import token_for
from tests.conftest import registration_body, running
from tests.support.broker import dead_lettered
from tests.support.events import publish_event
from tests.support.wait import eventually

RATE = 8
WINDOW = 2.0


def job(app, name: str):
    return next(j for j in app.state.runtime.jobs if j.name == name)


async def test_two_replicas_of_each_service_mail_once_remind_once_and_share_the_rate_limit(
    registration_settings, notification_settings, proposals_settings, smtp, make_working_group
):
    # Small pools: six processes share a Postgres that other test runs use too.
    small = {"database_pool_size": 6}
    reg_settings = registration_settings.model_copy(
        update={**small, "rate_limit_per_minute": 0, "opt_in_mails_per_hour": 0}
    )
    mail_settings = notification_settings.model_copy(
        update={**small, "rate_limit_per_minute": RATE, "rate_limit_window_seconds": WINDOW}
    )
    proposals_settings = proposals_settings.model_copy(update=small)
    regs = [registration_app(reg_settings), registration_app(reg_settings)]
    mails = [notification_app(mail_settings), notification_app(mail_settings)]
    props = [proposals_app(proposals_settings), proposals_app(proposals_settings)]
    async with (
        running(regs[0]) as api_a,
        running(regs[1]) as api_b,
        running(mails[0]),
        running(mails[1]),
        running(props[0]),
        running(props[1]),
    ):
        apis = [api_a, api_b]
        wg = await make_working_group(
            regs[0].state.runtime, capacity=4, starts_at=datetime.now(UTC) + timedelta(hours=20)
        )
        bodies = [registration_body(working_group_id=wg) for _ in range(10)]
        ids = []
        for i, body in enumerate(bodies):
            response = await apis[i % 2].post("/v1/registrations", json=body)
            assert response.status_code == 202
            ids.append(uuid.UUID(response.json()["id"]))
        outcomes = await asyncio.gather(
            *(
                apis[i % 2].post(
                    "/v1/registrations/confirm", json={"token": token_for(reg_settings.token_secret, rid)}
                )
                for i, rid in enumerate(ids)
            )
        )
        confirmed = [
            b["email"] for b, o in zip(bodies, outcomes, strict=True) if o.json()["status"] == "confirmed"
        ]
        assert len(confirmed) == 4

        # The reminder job, on both replicas at the same moment (and on their own timers besides).
        await asyncio.gather(job(regs[0], "meeting-reminders").run(), job(regs[1], "meeting-reminders").run())
        await asyncio.gather(job(regs[0], "meeting-reminders").run(), job(regs[1], "meeting-reminders").run())

        catalog_ids = [f"replica-{uuid.uuid4().hex[:8]}-{i}" for i in range(10)]
        for catalog_id in catalog_ids:
            await publish_event(
                reg_settings.amqp_url,
                WorkingGroupChanged(id=catalog_id, title="Testkreis", meetings=[MeetingInfo(number=1)]),
            )

        # submitted to all; confirmed or waitlisted to all; a reminder to the four with a seat.
        expected = {b["email"]: 3 if b["email"] in confirmed else 2 for b in bodies}

        async def all_mailed() -> bool:
            return all(len(smtp.handler.to(e)) >= n for e, n in expected.items())

        await eventually(all_mailed, "every mail owed", timeout=90)

        proposals_conn = await asyncpg.connect(asyncpg_dsn(proposals_settings.database_url))

        async def catalog_applied() -> bool:
            n = await proposals_conn.fetchval(
                "SELECT count(*) FROM proposals.working_groups WHERE id = ANY($1::text[])", catalog_ids
            )
            return n == len(catalog_ids)

        try:
            await eventually(catalog_applied, "the catalog events in the proposals read model")
        finally:
            await proposals_conn.close()

        conn = await asyncpg.connect(asyncpg_dsn(mail_settings.database_url))
        try:

            async def all_sent() -> bool:
                return await conn.fetchval(
                    "SELECT count(*) FILTER (WHERE status <> 'sent') = 0 FROM notification.deliveries "
                    "WHERE recipient_email = ANY($1::text[])",
                    list(expected),
                )

            await eventually(all_sent, "every delivery recorded as sent")
            templates = Counter(
                (r["recipient_email"], r["template"])
                for r in await conn.fetch(
                    "SELECT recipient_email, template FROM notification.deliveries "
                    "WHERE recipient_email = ANY($1::text[])",
                    list(expected),
                )
            )
        finally:
            await conn.close()

    counts = {e: len(smtp.handler.to(e)) for e in expected}
    assert counts == expected
    assert set(templates.values()) == {1}
    reminders = [e for (e, t) in templates if t == "meeting_reminder_due"]
    assert sorted(reminders) == sorted(confirmed)

    # The rate limit, as the relay saw it: no WINDOW seconds with more than RATE mails, across both.
    arrivals = sorted(m.received_at for m in smtp.handler.mails)
    tightest = min((arrivals[i + RATE] - arrivals[i] for i in range(len(arrivals) - RATE)), default=WINDOW)
    assert tightest >= WINDOW - 0.05, f"{RATE + 1} mails within {tightest:.2f} s"
    dlq = await dead_lettered(reg_settings.amqp_url)
    assert sum(dlq.values()) == 0
    print(
        "replicas:",
        {
            "mails": sum(counts.values()),
            "duplicates": sum(counts.values()) - sum(expected.values()),
            "reminders": len(reminders),
            "rate": f"{RATE}/{WINDOW}s",
            "tightest_window_for_rate_plus_one_s": round(tightest, 2),
            "all_mails_at_sink": len(arrivals),
            "dlq": sum(dlq.values()),
        },
    )
