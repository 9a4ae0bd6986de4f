"""Postgres unreachable for the consumers while events pile up in their queues: nothing is dead-lettered,
nothing is lost, every mail goes out once, when the database is back, without anyone touching anything.

The outage is a TCP proxy between the consuming services and the real server (other engineers' tests use
the same server): cutting it refuses new connections and kills the open ones, as a stopped server would.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from services.notification.app import create_app as notification_app
from services.proposals.app import create_app as proposals_app
from services.registration.app import create_app as registration_app
from shared.db import asyncpg_dsn
from shared.events import MeetingInfo, WorkingGroupChanged
from shared.observability import MESSAGES_CONSUMED
from shared.tokens import token_for
from shared.topology import NOTIFICATION_MAIL, PROPOSALS_CATALOG
from tests.conftest import registration_body, running
from tests.support.broker import dead_lettered, queue_depth
from tests.support.events import publish_event
from tests.support.tcpproxy import TcpProxy
from tests.support.wait import eventually


def through(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


class Readers:
    """One connection per service role for the test's own reads, opened once: the server is shared with
    other test runs, and a connection per poll could find its slots taken."""

    def __init__(self) -> None:
        self.connections: dict[str, asyncpg.Connection] = {}

    async def open(self, *urls: str) -> None:
        for url in urls:
            self.connections[url] = await asyncpg.connect(asyncpg_dsn(url))

    async def close(self) -> None:
        for conn in self.connections.values():
            await conn.close()


READERS = Readers()


async def fetchval(url: str, query: str, *args):
    return await READERS.connections[url].fetchval(query, *args)


@pytest.mark.parametrize(
    ("outage", "events"),
    [pytest.param(8.0, 100, id="8s-100"), pytest.param(60.0, 300, id="60s-300", marks=pytest.mark.slow)],
)
async def test_a_database_outage_dead_letters_nothing_and_every_mail_goes_out_once(
    registration_settings,
    notification_settings,
    proposals_settings,
    smtp,
    make_working_group,
    outage,
    events,
):
    pg = make_url(notification_settings.database_url)
    proxy = TcpProxy(pg.host or "127.0.0.1", pg.port or 5432)
    await proxy.start()
    # Small pools: four services share a Postgres that other test runs use too.
    fast = {"database_watch_interval": 0.5, "broker_watch_interval": 1.0, "database_pool_size": 6}
    notification = notification_app(
        notification_settings.model_copy(
            update={**fast, "database_url": through(proxy, notification_settings.database_url)}
        )
    )
    proposals = proposals_app(
        proposals_settings.model_copy(
            update={**fast, "database_url": through(proxy, proposals_settings.database_url)}
        )
    )
    # A registration replica on the same cut-off path: what a resident meets while the database is down.
    stranded = registration_app(
        registration_settings.model_copy(
            update={
                **fast,
                "database_url": through(proxy, registration_settings.database_url),
                "rate_limit_per_minute": 0,
                "opt_in_mails_per_hour": 0,
            }
        )
    )
    registration = registration_app(
        registration_settings.model_copy(
            update={"rate_limit_per_minute": 0, "opt_in_mails_per_hour": 0, "database_pool_size": 6}
        )
    )
    await READERS.open(
        registration_settings.database_url,
        notification_settings.database_url,
        proposals_settings.database_url,
    )
    dead_before = MESSAGES_CONSUMED.labels(NOTIFICATION_MAIL.name, "dead_lettered")._value.get()
    amqp = registration_settings.amqp_url
    try:
        async with (
            running(registration) as api,
            running(notification),
            running(proposals),
            running(stranded) as stranded_api,
        ):
            wg = await make_working_group(registration.state.runtime, capacity=events // 10)
            await proxy.cut()
            cut_at = time.monotonic()

            # Events reach the bus while the consumers' database is away.
            bodies = [registration_body(working_group_id=wg) for _ in range(events)]
            ids = []
            for body in bodies:
                response = await api.post("/v1/registrations", json=body)
                assert response.status_code == 202
                ids.append(uuid.UUID(response.json()["id"]))
            confirming = ids[: events // 5]  # twice as many as there are seats
            for registration_id in confirming:
                token = token_for(registration_settings.token_secret, registration_id)
                response = await api.post("/v1/registrations/confirm", json={"token": token})
                assert response.json()["status"] in ("confirmed", "waitlisted")
            catalog_ids = [f"outage-{uuid.uuid4().hex[:8]}-{i}" for i in range(events)]
            for catalog_id in catalog_ids:
                await publish_event(
                    amqp,
                    WorkingGroupChanged(id=catalog_id, title="Testkreis", meetings=[MeetingInfo(number=1)]),
                )

            async def all_published() -> bool:
                return (
                    await fetchval(
                        registration_settings.database_url,
                        "SELECT count(*) = 0 FROM registration.outbox WHERE published_at IS NULL",
                    )
                ) is True

            await eventually(all_published, "every registration event on the bus", timeout=60)
            # Published during the outage, and how many of them wait in the queue (the rest are held,
            # unacknowledged, by the consumer's prefetch).
            in_flight = {
                NOTIFICATION_MAIL.name: (
                    events + len(confirming),
                    await queue_depth(amqp, NOTIFICATION_MAIL.name),
                ),
                PROPOSALS_CATALOG.name: (events, await queue_depth(amqp, PROPOSALS_CATALOG.name)),
            }

            # What a resident meets meanwhile: 503 with Retry-After, never a 500; readiness says no.
            refused = await stranded_api.post("/v1/registrations", json=registration_body())
            assert refused.status_code == 503
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert "retry-after" in refused.headers
            assert (await stranded_api.get("/readyz")).status_code == 503

            # Hold the outage for its whole length, watching the dead-letter queues all the while.
            dlq_seen = 0
            while time.monotonic() - cut_at < outage:
                dlq_seen = max(dlq_seen, sum((await dead_lettered(amqp)).values()))
                assert dlq_seen == 0
                await asyncio.sleep(1.0)
            await proxy.start()
            outage_seconds = time.monotonic() - cut_at

            # The cut-off replica's pool held connections to the server as it was: it recovers by itself.
            async def stranded_accepts() -> bool:
                answer = await stranded_api.post("/v1/registrations", json=registration_body())
                assert answer.status_code in (202, 503)
                return answer.status_code == 202

            await eventually(
                stranded_accepts, "the cut-off replica to accept registrations again", timeout=30
            )
            assert (await stranded_api.get("/readyz")).status_code == 200

            confirmed_count = len(confirming)

            async def everyone_mailed() -> bool:
                return all(smtp.handler.to(b["email"]) for b in bodies) and all(
                    len(smtp.handler.to(b["email"])) >= 2 for b in bodies[:confirmed_count]
                )

            await eventually(everyone_mailed, "every mail owed", timeout=outage + 120)

            async def catalog_applied() -> bool:
                applied = await fetchval(
                    proposals_settings.database_url,
                    "SELECT count(*) FROM proposals.working_groups WHERE id = ANY($1::text[])",
                    catalog_ids,
                )
                return applied == len(catalog_ids)

            await eventually(catalog_applied, "every catalog event in the proposals read model", timeout=60)

            async def all_sent() -> bool:
                return (
                    await fetchval(
                        notification_settings.database_url,
                        "SELECT count(*) FILTER (WHERE status = 'sent') = count(*) "
                        "FROM notification.deliveries WHERE recipient_email = ANY($1::text[])",
                        [b["email"] for b in bodies],
                    )
                ) is True

            await eventually(all_sent, "every delivery recorded as sent")

            per_recipient = [len(smtp.handler.to(b["email"])) for b in bodies]
            expected = [2] * confirmed_count + [1] * (events - confirmed_count)
            assert per_recipient == expected
            dlq = await dead_lettered(amqp)
            assert sum(dlq.values()) == 0
            assert (
                MESSAGES_CONSUMED.labels(NOTIFICATION_MAIL.name, "dead_lettered")._value.get() == dead_before
            )

            # No seat lost or doubled: the counters match the confirmed registrations, the rest wait.
            seats = await fetchval(
                registration_settings.database_url,
                "SELECT confirmed_general + confirmed_reserved FROM registration.working_groups WHERE id = $1",
                wg,
            )
            confirmed = await fetchval(
                registration_settings.database_url,
                "SELECT count(*) FROM registration.registrations WHERE working_group_id = $1 "
                "AND status = 'confirmed'",
                wg,
            )
            assert seats == confirmed == events // 10
            print(
                "database outage:",
                {
                    "outage_s": round(outage_seconds, 1),
                    "published_and_waiting": in_flight,
                    "mails": sum(per_recipient),
                    "duplicates": sum(n - e for n, e in zip(per_recipient, expected, strict=True)),
                    "catalog_events_applied": len(catalog_ids),
                    "dlq": sum(dlq.values()),
                },
            )
    finally:
        await proxy.cut()
        await READERS.close()
