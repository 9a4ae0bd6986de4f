"""The proposals service learns the working groups from the registration service's catalog events and
keeps the newest state by catalog version, whatever order the events arrive in."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from services.proposals.models import inbox, working_groups
from shared import events as ev
from tests.proposals.conftest import proposal_body
from tests.support.events import publish_event
from tests.support.wait import eventually


async def _read_model(app, wg_id: str):
    async with app.state.runtime.transaction() as session:
        return (await session.execute(select(working_groups).where(working_groups.c.id == wg_id))).first()


async def _applied(app, message_ids: list[str]) -> None:
    async def all_in_inbox() -> bool:
        async with app.state.runtime.transaction() as session:
            found = (
                await session.execute(select(inbox.c.message_id).where(inbox.c.message_id.in_(message_ids)))
            ).all()
        return len(found) == len(message_ids)

    await eventually(all_in_inbox, "the catalog events to be applied")


async def test_the_highest_catalog_version_wins_even_when_it_arrives_first(proposals_api, infra):
    app = proposals_api.app
    wg_id = f"wg-{uuid.uuid4().hex[:8]}"
    newer = ev.WorkingGroupChanged(id=wg_id, title="Neuer Titel", meetings=[], catalog_version=3)
    older = ev.WorkingGroupChanged(id=wg_id, title="Alter Titel", meetings=[], catalog_version=2)
    first = ev.WorkingGroupPublished(id=wg_id, title="Erster Titel", meetings=[], catalog_version=0)
    ids = [await publish_event(infra.amqp_url, e) for e in (newer, older, first)]
    await _applied(app, ids)
    row = await _read_model(app, wg_id)
    assert (row.title, row.catalog_version) == ("Neuer Titel", 3)

    # Now the service knows the working group: proposals for it are accepted.
    answer = await proposals_api.post("/v1/proposals", json=proposal_body(wg_id))
    assert answer.status_code == 202
