"""The notification service process: consumes events, records the mails they owe, sends them."""

from __future__ import annotations

from fastapi import FastAPI

from services.notification import api, service
from services.notification.config import NotificationSettings
from services.notification.dispatcher import DUE_CHANNEL, Dispatcher
from services.notification.handlers import erasure_handlers, mail_handlers
from services.notification.listener import BounceListener
from services.notification.mail import parse_mailbox
from services.notification.mailbox import BounceMailbox
from services.notification.models import inbox, outbox
from services.notification.rendering import TemplateRenderer
from services.notification.smtp import SmtpPool
from shared.db import DatabaseSignal
from shared.retention import record_counts
from shared.runtime import PeriodicJob, ServiceRuntime, build_runtime, create_service_app
from shared.topology import NOTIFICATION_MAIL, privacy_queue


def build(settings: NotificationSettings | None = None) -> tuple[ServiceRuntime, Dispatcher]:
    """The process's parts by ``settings.role``: "all" of them, or the "ingest" or the "sender" side."""
    settings = settings or NotificationSettings()
    ingests, sends = settings.role in ("all", "ingest"), settings.role in ("all", "sender")
    runtime = build_runtime(settings, outbox=outbox if ingests else None)
    # Between processes, "mails were recorded" travels as a NOTIFY; within one, as a direct call.
    signal = DatabaseSignal(settings.database_url, DUE_CHANNEL) if settings.role != "all" else None
    if signal is not None:
        runtime.closing.append(signal.close)
    dispatcher = Dispatcher(
        settings,
        runtime.session_factory,
        TemplateRenderer(),
        SmtpPool(settings, runtime.session_factory),
        health=runtime.health,
        signal=signal if sends else None,
    )
    if sends:
        # A worker, not a job: a stop lets it finish (or hand back) the mails it claimed.
        runtime.workers.append(dispatcher)
    if not ingests:
        runtime.uses_broker = settings.uses_broker()
        return runtime, dispatcher
    message_id_domain = settings.message_id_domain or parse_mailbox(settings.mail_from).domain
    runtime.consume(
        NOTIFICATION_MAIL,
        mail_handlers(message_id_domain, settings.address_hash_secret),
        inbox,
        after_commit=dispatcher.wake if signal is None else signal.send,
    )
    runtime.consume(
        privacy_queue("notification"),
        erasure_handlers(message_id_domain, settings.address_hash_secret),
        inbox,
    )

    async def purge_old_deliveries() -> None:
        async with runtime.transaction() as conn:
            await service.purge_old_deliveries(conn, settings)

    async def forget_recipients() -> None:
        async with runtime.transaction() as conn:
            count = await service.forget_recipients(conn, settings)
            hashes = await service.forget_erased_addresses(conn, settings)
            kept = await service.forget_bounce_mail_bytes(conn, settings)
        record_counts(
            "notification",
            "forget-recipients",
            deliveries=count,
            erased_address_hashes=hashes,
            bounce_mails=kept,
        )

    async def receive_bounce(raw: bytes, recipients: list[str], source: str = "smtp") -> str:
        async with runtime.transaction() as conn:
            return await service.receive_bounce_mail(
                conn,
                raw,
                source=source,
                bounce_address=settings.bounce_address,
                address_hash_secret=settings.address_hash_secret,
                envelope_recipients=recipients,
            )

    if (settings.bounce_listen or settings.bounce_imap_url) and not settings.bounce_address:
        raise ValueError(
            "NOTIFICATION_BOUNCE_LISTEN and NOTIFICATION_BOUNCE_IMAP_URL need NOTIFICATION_BOUNCE_ADDRESS: "
            "without it no mail carries a return path the service could recognise"
        )
    if settings.bounce_listen:
        runtime.workers.append(BounceListener(settings, receive_bounce, runtime.health))
    if settings.bounce_imap_url:

        async def receive_from_mailbox(raw: bytes, recipients: list[str]) -> str:
            return await receive_bounce(raw, recipients, source="imap")

        runtime.workers.append(BounceMailbox(settings, receive_from_mailbox, runtime.health))

    runtime.jobs.append(PeriodicJob("forget-recipients", settings.retention_job_interval, forget_recipients))
    runtime.jobs.append(PeriodicJob("purge-deliveries", settings.purge_job_interval, purge_old_deliveries))
    return runtime, dispatcher


def create_app(settings: NotificationSettings | None = None) -> FastAPI:
    runtime, dispatcher = build(settings)
    app = create_service_app(
        runtime,
        title="Mitwirkung — notification",
        description="Turns events into mail to residents, in their language, exactly once.",
        routers=[api.router],
        consumes=[NOTIFICATION_MAIL, privacy_queue("notification")] if runtime.consumers else [],
        publishes=["privacy.erasure_completed", "mail.bounced"] if runtime.relay else [],
        domain_errors=api.DOMAIN_ERRORS,
    )
    app.state.dispatcher = dispatcher
    return app
