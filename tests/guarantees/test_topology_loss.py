"""The broker loses its definitions (``rabbitmqctl reset``): the system flows again by itself."""

from __future__ import annotations

import time

from services.notification.app import create_app as notification_app
from services.proposals.app import create_app as proposals_app
from services.registration.app import create_app as registration_app
from tests.conftest import registration_body, running
from tests.support.broker import dead_lettered, forget_definitions, queue_depth
from tests.support.wait import eventually

FIGURES: dict[str, object] = {}


async def test_after_the_broker_lost_its_queues_and_exchanges_mail_flows_again_within_30_s(
    registration_settings, notification_settings, proposals_settings, smtp
):
    fast_watch = {"broker_watch_interval": 1.0, "rate_limit_per_minute": 0, "opt_in_mails_per_hour": 0}
    registration = registration_app(registration_settings.model_copy(update=fast_watch))
    notification = notification_app(notification_settings.model_copy(update={"broker_watch_interval": 1.0}))
    proposals = proposals_app(proposals_settings.model_copy(update={"broker_watch_interval": 1.0}))
    async with running(registration) as api, running(notification), running(proposals):
        before = registration_body()
        assert (await api.post("/v1/registrations", json=before)).status_code == 202
        await smtp.wait_for(before["email"], timeout=30)

        await forget_definitions(registration_settings.amqp_url)
        lost_at = time.monotonic()
        assert await queue_depth(registration_settings.amqp_url, "notification.mail") == 0

        bodies = [registration_body() for _ in range(20)]
        for body in bodies:
            assert (await api.post("/v1/registrations", json=body)).status_code == 202

        async def all_mailed() -> bool:
            return all(smtp.handler.to(b["email"]) for b in bodies)

        await eventually(all_mailed, "a mail for each of the 20 registrations after the reset", timeout=30)
        recovered = time.monotonic() - lost_at
        assert recovered < 30

        async def settled() -> bool:
            return await queue_depth(registration_settings.amqp_url, "notification.mail") == 0

        await eventually(settled, "the mail queue to be empty")
        counts = [len(smtp.handler.to(b["email"])) for b in bodies]
        assert counts == [1] * 20
        assert sum((await dead_lettered(registration_settings.amqp_url)).values()) == 0
        FIGURES.update(
            registrations=20, recovered_after_s=round(recovered, 1), mails=sum(counts), duplicates=0
        )
        print("topology loss:", FIGURES)
