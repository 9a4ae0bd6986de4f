from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from tests.registration.conftest import make_working_group

__all__ = ["make_working_group"]


@pytest.fixture(autouse=True)
async def _volume_leaves_the_opt_in_cap_alone(registration_settings) -> AsyncIterator[None]:
    """These tests register hundreds of people. Afterwards their opt-in mails count as older than an hour,
    so the hourly cap on opt-in mails (counted in the database) does not close registration for the tests
    that come later in the run."""
    started = datetime.now(UTC)
    yield
    conn = await asyncpg.connect(asyncpg_dsn(registration_settings.database_url))
    try:
        await conn.execute(
            "UPDATE registration.registrations SET public_mail_at = public_mail_at - interval '2 hours' "
            "WHERE created_at >= $1 AND public_mail_at IS NOT NULL",
            started,
        )
    finally:
        await conn.close()
