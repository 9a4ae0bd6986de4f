"""The notification service process: consumes events, records the mails they owe, sends them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import delete

from services.notification import api, privacy
from services.notification.config import NotificationSettings
from services.notification.dispatcher import Dispatcher
from services.notification.handlers import mail_handlers
from services.notification.mail import parse_mailbox
from services.notification.models import deliveries, inbox, outbox
from services.notification.rendering import TemplateRenderer
from services.notification.smtp import SmtpPool
from shared.inbox import EventConsumer
from shared.retention import record_counts
from shared.runtime import PeriodicJob, ServiceRuntime, build_runtime, create_service_app
from shared.topology import NOTIFICATION_MAIL, privacy_queue


def build(settings: NotificationSettings | None = None) -> tuple[ServiceRuntime, Dispatcher]:
    settings = settings or NotificationSettings()
    runtime = build_runtime(settings, outbox=outbox)
    dispatcher = Dispatcher(settings, runtime.session_factory, TemplateRenderer(), SmtpPool(settings))
    domain = settings.message_id_domain or parse_mailbox(settings.mail_from).domain
    runtime.consumers.append(
        EventConsumer(
            queue=NOTIFICATION_MAIL,
            handlers={
                **mail_handlers(domain),
                "privacy.erasure_finished": privacy.release_final_mail,
            },
            inbox=inbox,
            session_factory=runtime.session_factory,
            max_attempts=settings.consumer_max_attempts,
            prefetch=settings.consumer_prefetch,
            after_commit=dispatcher.wake,
        )
    )

    async def purge_old_deliveries() -> None:
        cutoff = datetime.now(UTC) - timedelta(days=settings.purge_after_days)
        async with runtime.transaction() as session:
            await session.execute(delete(deliveries).where(deliveries.c.created_at < cutoff))

    runtime.consumers.append(
        EventConsumer(
            queue=privacy_queue("notification"),
            handlers={"privacy.erasure_requested": privacy.erasure_handler(domain)},
            inbox=inbox,
            session_factory=runtime.session_factory,
            max_attempts=settings.consumer_max_attempts,
            prefetch=settings.consumer_prefetch,
        )
    )

    async def forget_recipients() -> None:
        async with runtime.transaction() as session:
            count = await privacy.forget_recipients(session, settings.recipient_retention_days)
        record_counts("notification", "forget-recipients", deliveries=count)

    runtime.jobs.append(PeriodicJob("forget-recipients", settings.retention_job_interval, forget_recipients))
    runtime.jobs.append(PeriodicJob("purge-deliveries", settings.purge_job_interval, purge_old_deliveries))
    runtime.jobs.append(PeriodicJob("mail-dispatcher", 0.0, dispatcher.run))
    return runtime, dispatcher


def create_app(settings: NotificationSettings | None = None) -> FastAPI:
    runtime, dispatcher = build(settings)
    app = create_service_app(
        runtime,
        title="Mitwirkung — notification",
        description="Turns events into mail to residents, in their language, exactly once.",
        routers=[api.router],
        consumes=[NOTIFICATION_MAIL, privacy_queue("notification")],
        publishes=["privacy.erasure_completed"],
    )
    app.state.dispatcher = dispatcher
    return app
