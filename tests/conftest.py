"""Fixtures: one database, one set of roles and one RabbitMQ vhost per test run; services run in-process
against them, and a real SMTP server (aiosmtpd) receives the mail."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from services.notification.config import NotificationSettings
from services.proposals.config import ProposalsSettings
from services.registration.config import RegistrationSettings
from tests.support.imap import Dovecot
from tests.support.infra import RUN_SECRETS, TestInfra, provision
from tests.support.smtp import SmtpServer

JWT_SECRET = "test-secret-at-least-32-bytes-long!!"


@pytest.fixture(scope="session")
def infra() -> Iterator[TestInfra]:
    with ExitStack() as stack:
        yield provision(stack)


def _common(infra: TestInfra, service: str) -> dict:
    return {
        "database_url": infra.database_url(service),
        "amqp_url": infra.amqp_url,
        # Small pools: a test runs up to three services (and replicas) at once against one Postgres whose
        # connections are limited (100 by default).
        "database_pool_size": 10,
        "outbox_poll_interval": 0.5,
        "consumer_retry_delay_ms": 300,
        "consumer_max_attempts": 3,
        "staff_jwt_secret": JWT_SECRET,
        "staff_jwt_issuer": "mitwirkung-test",
        "log_json": False,
        "environment": "test",
    }


@pytest.fixture(scope="session")
def registration_settings(infra: TestInfra) -> RegistrationSettings:
    # No hourly opt-in cap: it is counted in the run's database, so the suite's own volume (benchmarks,
    # outage tests with hundreds of registrations) would close registration for whichever test comes
    # later. tests/registration/test_abuse_limits.py sets the cap it tests. Likewise no per-client hourly
    # budgets: every test client is one address; tests/registration/test_fair_limits.py sets them.
    return RegistrationSettings(
        **_common(infra, "registration"),
        token_secret=RUN_SECRETS["REGISTRATION_TOKEN_SECRET"],
        public_url="http://forms.test",
        opt_in_mails_per_hour=0,
        opt_in_requests_per_client_per_hour=0,
        erasure_requests_per_client_per_hour=0,
    )


@pytest.fixture
def notification_settings(infra: TestInfra, smtp: SmtpServer) -> NotificationSettings:
    return NotificationSettings(
        **_common(infra, "notification"),
        address_hash_secret=RUN_SECRETS["NOTIFICATION_ADDRESS_HASH_SECRET"],
        smtp_port=smtp.port,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        sender_poll_interval=0.2,
        sending_lease_seconds=2.0,
    )


@pytest.fixture(scope="session")
def proposals_settings(infra: TestInfra) -> ProposalsSettings:
    # No per-client hourly budget (every test client is one address); test_fair_limits.py sets it.
    return ProposalsSettings(
        **_common(infra, "proposals"),
        token_secret=RUN_SECRETS["PROPOSALS_TOKEN_SECRET"],
        submissions_per_client_per_hour=0,
    )


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (broker, relay, consumers, jobs) and give an HTTP client for it."""
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await _wait(runtime.broker_ready.wait(), 30)
            yield client


async def _wait(awaitable, timeout: float) -> None:
    import asyncio

    await asyncio.wait_for(awaitable, timeout)


def unique_email(tag: str = "person") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.org"


def registration_body(**overrides) -> dict:
    body = {
        "working_group_id": "sprachfoerderung",
        "name": "Ayşe Yılmaz",
        "email": unique_email(),
        "language": "de",
        "participant_type": "resident",
        "privacy_consent": True,
    }
    body.update(overrides)
    return body


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A real IMAP server (Dovecot) of the test's own: own configuration, port and Maildir. Not under pytest's
    tmp_path: its directories are private to this user, and Dovecot's processes run as users of their own."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="mitwirkung-dovecot-"))
    server = Dovecot(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
