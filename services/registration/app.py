"""The registration service process."""

from __future__ import annotations

from fastapi import FastAPI

from services.registration import api, service
from services.registration.config import RegistrationSettings
from services.registration.models import outbox
from shared.events import CATALOG
from shared.ratelimit import ClientRateLimiter
from shared.runtime import PeriodicJob, ServiceRuntime, build_runtime, create_service_app


def build(settings: RegistrationSettings | None = None) -> ServiceRuntime:
    settings = settings or RegistrationSettings()
    runtime = build_runtime(settings, outbox=outbox)

    catalog = service.catalog_of(runtime)

    async def seed() -> None:
        async with runtime.transaction() as conn:
            await service.seed_catalog(conn, settings)

    async def expire() -> None:
        async with runtime.transaction() as conn:
            await service.expire_unconfirmed(conn, settings, catalog)

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
    return runtime


def create_app(
    settings: RegistrationSettings | None = None, runtime: ServiceRuntime | None = None
) -> FastAPI:
    runtime = runtime or build(settings)
    app = create_service_app(
        runtime,
        title="Mitwirkung — registration",
        description="Working groups, meetings, registrations with double opt-in, the waitlist.",
        routers=[api.router],
        domain_errors=api.DOMAIN_ERRORS,
        publishes=[t for t in CATALOG if t.startswith(("registration.", "meeting.", "working_group."))],
    )
    app.state.rate_limiter = ClientRateLimiter(runtime.settings.rate_limit_per_minute)
    return app
