"""The proposals service process."""

from __future__ import annotations

from fastapi import FastAPI

from services.proposals import api, forms, handlers, measures_api, measures_service, service
from services.proposals.config import ProposalsSettings
from services.proposals.models import inbox, outbox
from shared.events import CATALOG
from shared.ratelimit import ClientRateLimiter, trusted_proxies
from shared.retention import record_counts
from shared.runtime import PeriodicJob, ServiceRuntime, build_runtime, create_service_app
from shared.topology import PROPOSALS_ATTENDANCE, PROPOSALS_CATALOG, privacy_queue


def build(settings: ProposalsSettings | None = None) -> ServiceRuntime:
    settings = settings or ProposalsSettings()
    runtime = build_runtime(settings, outbox=outbox)
    runtime.consume(PROPOSALS_CATALOG, handlers.catalog_handlers(), inbox)
    runtime.consume(PROPOSALS_ATTENDANCE, handlers.attendance_handlers(), inbox)

    runtime.consume(privacy_queue("proposals"), handlers.erasure_handlers(), inbox)

    async def seed() -> None:
        async with runtime.transaction() as session:
            await service.seed_districts(session, settings)

    async def forget_idempotency_keys() -> None:
        async with runtime.transaction() as session:
            await service.forget_idempotency_keys(session, settings)

    async def forget_authors() -> None:
        async with runtime.transaction() as session:
            forgotten = await service.forget_authors_after_retention(session, settings)
            unconfirmed = await measures_service.forget_unconfirmed_followers(session)
        record_counts("proposals", "author-retention", proposals=forgotten, followers=unconfirmed)

    runtime.jobs.append(PeriodicJob("seed-districts", 300.0, seed, before_serving=True))
    runtime.jobs.append(PeriodicJob("author-retention", settings.retention_job_interval, forget_authors))
    runtime.jobs.append(
        PeriodicJob("idempotency-keys", settings.housekeeping_interval, forget_idempotency_keys)
    )
    return runtime


def create_app(settings: ProposalsSettings | None = None) -> FastAPI:
    runtime = build(settings)
    app = create_service_app(
        runtime,
        title="Mitwirkung — proposals",
        description="Proposals per working group and district, staff moderation, the council report.",
        routers=[forms.router, api.router, measures_api.router],
        publishes=[
            *(t for t in CATALOG if t.startswith(("proposal.", "measure."))),
            "privacy.erasure_completed",
        ],
        consumes=[PROPOSALS_CATALOG, PROPOSALS_ATTENDANCE, privacy_queue("proposals")],
        domain_errors=api.DOMAIN_ERRORS,
    )
    settings = runtime.settings
    proxies = trusted_proxies(settings.forwarded_allow_ips)
    app.state.rate_limiter = ClientRateLimiter(settings.rate_limit_per_minute, proxies=proxies)
    # The per-client hourly budget of the intake (a proposal with an address sends a receipt).
    app.state.intake_limiter = ClientRateLimiter(
        settings.submissions_per_client_per_hour, window_seconds=3600.0, proxies=proxies
    )
    # The per-client hourly budget of following measures (each new follow sends an opt-in mail).
    app.state.follow_limiter = ClientRateLimiter(
        settings.follows_per_client_per_hour, window_seconds=3600.0, proxies=proxies
    )
    return app
