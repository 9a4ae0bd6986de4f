"""Public reading of published proposals: the list with its search and one proposal."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import domain, measures_service
from services.proposals import repository as repo
from services.proposals.config import ProposalsSettings
from services.proposals.service import (
    public_view,
)
from shared.pagination import keyset_page


async def published_page(
    session: AsyncConnection,
    *,
    working_group_id: str | None,
    district_id: str | None,
    q: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> dict[str, Any]:
    rows = await repo.published_page(
        session,
        working_group_id=working_group_id,
        district_id=district_id,
        q=q,
        after=after,
        limit=limit + 1,
    )
    page, next_cursor = keyset_page(rows, limit, lambda r: (r.published_at, r.id))
    return {"items": [public_view(r) for r in page], "next_cursor": next_cursor}


async def published_proposal(
    session: AsyncConnection, settings: ProposalsSettings, proposal_id: uuid.UUID
) -> dict[str, Any]:
    row = await repo.labelled_proposal(session, proposal_id)
    if row is None or not domain.is_public(row.status):
        raise domain.NotFound("there is no published proposal with this id")
    return {
        **public_view(row),
        "measures": await measures_service.measures_of_proposal(session, settings, proposal_id),
    }
