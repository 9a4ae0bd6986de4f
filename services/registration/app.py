"""The registration service process."""

from __future__ import annotations

from fastapi import FastAPI

from services.registration import api, meetings_api, privacy, privacy_api, service
from services.registration.config import RegistrationSettings
from services.registration.models import inbox, outbox
from services.registration.runtime import RegistrationRuntime
from shared.events import CATALOG
from shared.ratelimit import ClientRateLimiter, trusted_proxies
from shared.retention import record_counts
from shared.runtime import PeriodicJob, create_service_app
from shared.topology import REGISTRATION_ERASURE_PROGRESS, REGISTRATION_MAIL_STATUS, privacy_queue


def build(settings: RegistrationSettings | None = None) -> RegistrationRuntime:
    settings = settings or RegistrationSettings()
    runtime = RegistrationRuntime.build(settings, outbox=outbox)

    catalog = runtime.catalog

    async def seed() -> None:
        async with runtime.transaction() as conn:
            await service.seed_catalog(conn, settings)

    async def expire() -> None:
        async with runtime.transaction() as conn:
            expired = await service.expire_unconfirmed(conn, settings, catalog)
        record_counts("registration", "expire-unconfirmed", registrations=expired)

    async def forget_idempotency_keys() -> None:
        async with runtime.transaction() as conn:
            await service.forget_idempotency_keys(conn, settings)

    async def remind() -> None:
        async with runtime.transaction() as conn:
            await service.send_due_reminders(conn, settings)

    runtime.jobs.append(PeriodicJob("seed-catalog", 300.0, seed, before_serving=True))
    runtime.jobs.append(PeriodicJob("expire-unconfirmed", settings.expiry_job_interval, expire))
    runtime.jobs.append(PeriodicJob("meeting-reminders", settings.reminder_job_interval, remind))
    runtime.jobs.append(
        PeriodicJob("idempotency-keys", settings.housekeeping_interval, forget_idempotency_keys)
    )
    _add_privacy(runtime, settings)
    return runtime


def _add_privacy(runtime: RegistrationRuntime, settings: RegistrationSettings) -> None:
    """Erasure on request (its consumers) and the retention jobs."""
    for queue, handlers in (
        (
            privacy_queue("registration"),
            {"privacy.erasure_requested": privacy.erasure_handler(settings, runtime.catalog)},
        ),
        (REGISTRATION_ERASURE_PROGRESS, {"privacy.erasure_completed": privacy.record_answer}),
        (REGISTRATION_MAIL_STATUS, {"mail.bounced": service.record_mail_bounced}),
    ):
        runtime.consume(queue, handlers, inbox)

    async def after_last_meeting() -> None:
        async with runtime.transaction() as conn:
            count = await privacy.anonymise_after_last_meeting(conn, settings)
        record_counts("registration", "anonymise-after-last-meeting", registrations=count)

    async def cancelled() -> None:
        async with runtime.transaction() as conn:
            count = await privacy.forget_cancelled(conn, settings)
        record_counts("registration", "forget-cancelled", registrations=count)

    async def unconfirmed_erasure_requests() -> None:
        async with runtime.transaction() as conn:
            count = await privacy.forget_unconfirmed_erasure_requests(conn)
        record_counts("registration", "forget-unconfirmed-erasure-requests", erasure_requests=count)

    async def unfinished_erasures() -> None:
        async with runtime.transaction() as conn:
            await privacy.measure_unfinished_erasures(conn)

    interval = settings.retention_job_interval
    runtime.jobs.append(PeriodicJob("unfinished-erasures", 60.0, unfinished_erasures))
    runtime.jobs.append(PeriodicJob("anonymise-after-last-meeting", interval, after_last_meeting))
    runtime.jobs.append(PeriodicJob("forget-cancelled", interval, cancelled))
    runtime.jobs.append(
        PeriodicJob("forget-unconfirmed-erasure-requests", interval, unconfirmed_erasure_requests)
    )


def create_app(
    settings: RegistrationSettings | None = None, runtime: RegistrationRuntime | None = None
) -> FastAPI:
    runtime = runtime or build(settings)
    app = create_service_app(
        runtime,
        title="Mitwirkung — registration",
        description="Working groups, meetings, registrations with double opt-in, the waitlist.",
        routers=[api.router, privacy_api.router, meetings_api.router],
        domain_errors=api.DOMAIN_ERRORS,
        publishes=[
            t for t in CATALOG if t.startswith(("registration.", "meeting.", "working_group.", "privacy."))
        ],
        consumes=[privacy_queue("registration"), REGISTRATION_ERASURE_PROGRESS, REGISTRATION_MAIL_STATUS],
    )
    settings = runtime.settings
    proxies = trusted_proxies(settings.forwarded_allow_ips)
    app.state.rate_limiter = ClientRateLimiter(settings.rate_limit_per_minute, proxies=proxies)
    # The per-client hourly budgets of the requests that send a mail: they come before the global caps.
    app.state.opt_in_limiter = ClientRateLimiter(
        settings.opt_in_requests_per_client_per_hour, window_seconds=3600.0, proxies=proxies
    )
    app.state.erasure_limiter = ClientRateLimiter(
        settings.erasure_requests_per_client_per_hour, window_seconds=3600.0, proxies=proxies
    )
    return app
