"""Receipts are mail to addresses nobody has proven: an address gets a few a day, and the city sends at
most ``receipt_mails_per_hour`` in all — the last guard, above what one client can send. Beyond it a
proposal is still stored and answered alike; only the receipt stays away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import func, select

from services.proposals.app import create_app
from services.proposals.models import outbox, proposals
from tests.conftest import running, unique_email
from tests.proposals.conftest import proposal_body


async def _receipts_owed(app, proposal_ids: list[str]) -> dict[str, bool]:
    async with app.state.runtime.transaction() as session:
        rows = (
            await session.execute(select(outbox.c.payload).where(outbox.c.event_type == "proposal.submitted"))
        ).all()
    owed = {}
    for (payload,) in rows:
        event = payload if isinstance(payload, dict) else orjson.loads(payload)
        if event["proposal_id"] in proposal_ids:
            owed[event["proposal_id"]] = event["author"] is not None
    return owed


async def test_the_hourly_receipt_cap_is_a_last_guard_that_stores_every_proposal(
    proposals_settings, make_working_group
):
    probe = create_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(probe):
        async with probe.state.runtime.transaction() as session:
            recent = await session.scalar(
                select(func.count())
                .select_from(proposals)
                .where(proposals.c.status == "submitted")
                .where(proposals.c.author_email.is_not(None))
                .where(proposals.c.submitted_at >= datetime.now(UTC) - timedelta(hours=1))
            )
    settings = proposals_settings.model_copy(
        update={"rate_limit_per_minute": 0, "receipt_mails_per_hour": int(recent or 0) + 2}
    )
    app = create_app(settings)
    async with running(app) as client:
        wg = await make_working_group(app)
        ids = []
        for _ in range(4):
            answer = await client.post(
                "/v1/proposals", json=proposal_body(wg, author_email=unique_email("author"))
            )
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        owed = await _receipts_owed(app, ids)
    assert [owed[i] for i in ids] == [True, True, False, False]
