"""Erasure matches an address exactly, in all three services (real Postgres, RabbitMQ and SMTP): erasing
``a.s@…`` leaves ``maria.s@…`` alone, erasing ``a_b@…`` leaves ``axb@…`` and ``a%b@…`` alone — row by row,
in every table of every schema — and the erased addresses are gone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select

from services.notification.app import create_app as notification_app
from services.notification.models import deliveries
from services.proposals.app import create_app as proposals_app
from services.proposals.models import working_groups as proposal_working_groups
from services.registration.app import create_app as registration_app
from shared.auth import mint_token
from tests.conftest import registration_body, running
from tests.proposals.conftest import proposal_body
from tests.support.catalog import create_working_group
from tests.support.dbscan import rows_mentioning, tables_holding_exactly
from tests.support.wait import eventually


async def _pending_delivery(conn, address: str) -> None:
    """A mail not yet due (its row waits in the queue), with the address in its context."""
    event_id = str(uuid.uuid4())
    await conn.execute(
        insert(deliveries).values(
            id=uuid.uuid4(),
            dedup_key=f"{event_id}:registration_reminder:{address.lower()}",
            event_id=event_id,
            event_type="registration.reminder",
            template="registration_reminder",
            language="de",
            recipient_email=address,
            recipient_name="",
            message_id=f"<{event_id}@test>",
            context={"recipient": {"email": address, "name": "", "language": "de"}},
            status="pending",
            next_attempt_at=func.now() + timedelta(days=1),
        )
    )


async def test_erasure_matches_exactly_and_leaves_every_neighbour_row_as_it_was(
    infra, registration_settings, notification_settings, proposals_settings, smtp
):
    domain = f"x{uuid.uuid4().hex[:8]}.example.org"
    erased = [f"a.s@{domain}", f"a_b@{domain}"]
    neighbours = [f"maria.s@{domain}", f"axb@{domain}", f"a%b@{domain}"]
    reg_app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    prop_app = proposals_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    notif_app = notification_app(notification_settings)
    async with running(reg_app) as api, running(notif_app), running(prop_app) as proposals:
        wg = await create_working_group(
            reg_app.state.runtime, starts_at=datetime.now(UTC) + timedelta(days=30), capacity=20
        )
        async with prop_app.state.runtime.transaction() as session:
            await session.execute(insert(proposal_working_groups).values(id=wg, title="Exact (Test)"))

        # --- everyone registers and proposes; their mails go out ---------------------------------------
        for address in erased + neighbours:
            body = registration_body(working_group_id=wg, email=address, name="Nachbar Test")
            assert (await api.post("/v1/registrations", json=body)).status_code == 202
            answer = await proposals.post(
                "/v1/proposals", json=proposal_body(wg, author_name="Nachbar", author_email=address)
            )
            assert answer.status_code == 202
        for address in erased + neighbours:
            await smtp.wait_for(address, count=2)  # the opt-in and the proposal's receipt
        # And a mail of each still waiting in the queue (not due for a day).
        async with notif_app.state.runtime.transaction() as conn:
            for address in erased + neighbours:
                await _pending_delivery(conn, address)

        async def settled() -> bool:
            async with notif_app.state.runtime.transaction() as conn:
                statuses = (
                    await conn.execute(
                        select(deliveries.c.status).where(deliveries.c.recipient_email.endswith(domain))
                    )
                ).scalars()
                return set(statuses) == {"sent", "pending"}

        await eventually(settled, "every mail sent but the waiting ones", timeout=30)

        before = {address: await rows_mentioning(infra, address) for address in neighbours}
        for address in neighbours:
            schemas = {table.split(".")[0] for table in before[address]}
            assert schemas >= {'"registration"', '"notification"', '"proposals"'}, before[address].keys()
            assert any("outbox" in table for table in before[address]), before[address].keys()

        # --- the erasures ----------------------------------------------------------------------------
        admin = {"Authorization": f"Bearer {mint_token(registration_settings, 'it.stadt', ['admin'])}"}
        requests = []
        for address in erased:
            answer = await api.post(
                "/v1/privacy/erasures", json={"email": address, "reference": "Brief"}, headers=admin
            )
            assert answer.status_code == 202
            requests.append(answer.json()["request_id"])

        async def completed() -> bool:
            for request_id in requests:
                state = await api.get(f"/v1/privacy/erasures/{request_id}", headers=admin)
                if state.json()["status"] != "completed":
                    return False
            return True

        await eventually(completed, "both erasures to complete", timeout=60)
        for address in erased:
            last = (await smtp.wait_for(address, count=3, timeout=30))[2]
            assert "gelöscht" in last.message["Subject"] or "deleted" in last.message["Subject"]

        async def gone() -> list[str] | bool:
            return not any([await tables_holding_exactly(infra, address) for address in erased])

        await eventually(gone, "the erased addresses to be gone from every table", timeout=20)

        # --- every neighbour's rows are exactly as they were -----------------------------------------
        for address in neighbours:
            assert await rows_mentioning(infra, address) == before[address], address
