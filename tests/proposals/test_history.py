"""The history is append-only, enforced by the database for the service's own runtime role."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from tests.proposals.conftest import proposal_body


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE proposals.proposal_history SET internal_note = 'changed'",
        "DELETE FROM proposals.proposal_history",
        "TRUNCATE proposals.proposal_history",
        "UPDATE proposals.audit_log SET subject = 'someone else'",
        "DELETE FROM proposals.audit_log",
        "TRUNCATE proposals.audit_log",
    ],
)
async def test_the_runtime_role_cannot_rewrite_history(
    proposals_api, make_working_group, proposals_settings, statement
):
    wg = await make_working_group(proposals_api.app)
    assert (await proposals_api.post("/v1/proposals", json=proposal_body(wg))).status_code == 202
    conn = await asyncpg.connect(asyncpg_dsn(proposals_settings.database_url))
    try:
        before = await conn.fetchval("SELECT count(*) FROM proposals.proposal_history")
        assert before >= 1
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM proposals.proposal_history") == before
    finally:
        await conn.close()
