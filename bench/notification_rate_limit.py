"""Does a mail rate limit hold against a real SMTP server? (An Exchange relay may allow 30 mails/min.)

Run by hand (takes a little over a minute with the defaults):

    .venv/bin/python -m bench.notification_rate_limit [--per-minute 30] [--mails 45]

The notification service runs in this process with ``rate_limit_per_minute`` set, a fresh database and
RabbitMQ vhost (as for the tests), and an aiosmtpd sink that stamps each mail's arrival. All events are
published at once. Prints JSON on its last line: the largest number of mails that arrived within any 60 s
window, which must not exceed the limit by more than one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from contextlib import ExitStack

from aiosmtpd.controller import Controller

from services.notification.app import create_app
from services.notification.config import NotificationSettings
from shared.events import Recipient, RegistrationSubmitted, SelfServiceLinks, WorkingGroupInfo
from tests.support.events import publish_event
from tests.support.infra import RUN_SECRETS, provision
from tests.support.smtp import free_port


class StampingSink:
    def __init__(self) -> None:
        self.arrivals: list[float] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.arrivals.append(time.monotonic())
        return "250 OK"


def most_in_any_window(arrivals: list[float], window: float = 60.0) -> int:
    stamps = sorted(arrivals)
    best = 0
    for i, start in enumerate(stamps):
        best = max(best, sum(1 for t in stamps[i:] if t - start < window))
    return best


async def run(infra, per_minute: int, mails: int) -> dict:
    sink = StampingSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    settings = NotificationSettings(
        database_url=infra.database_url("notification"),
        amqp_url=infra.amqp_url,
        smtp_port=port,
        rate_limit_per_minute=per_minute,
        log_level="WARNING",
        environment="test",
        address_hash_secret=RUN_SECRETS["NOTIFICATION_ADDRESS_HASH_SECRET"],
        staff_jwt_secret=RUN_SECRETS["STAFF_JWT_SECRET"],
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app.state.runtime.broker_ready.wait(), 30)
            started = time.monotonic()
            for i in range(mails):
                await publish_event(
                    infra.amqp_url,
                    RegistrationSubmitted(
                        registration_id=uuid.uuid4(),
                        recipient=Recipient(
                            email=f"rate-{i}-{uuid.uuid4().hex[:6]}@example.org", name="Rate Limit"
                        ),
                        working_group=WorkingGroupInfo(id="sprachfoerderung", title="Sprachförderung"),
                        meetings=[],
                        links=SelfServiceLinks(
                            confirm_url="http://localhost:8001/v1/registrations/confirm?token=x"
                        ),
                    ),
                )
            deadline = started + 60.0 * (mails / per_minute + 2)
            while len(sink.arrivals) < mails and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
    finally:
        controller.stop()
    worst = most_in_any_window(sink.arrivals)
    return {
        "limit_per_minute": per_minute,
        "mails": mails,
        "arrived": len(sink.arrivals),
        "max_in_any_60s": worst,
        "holds_within_one": worst <= per_minute + 1,
        "duration_s": round(max(sink.arrivals) - started, 1) if sink.arrivals else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-minute", type=int, default=30)
    parser.add_argument("--mails", type=int, default=45)
    args = parser.parse_args()
    with ExitStack() as stack:
        infra = provision(stack)
        result = asyncio.run(run(infra, args.per_minute, args.mails))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
