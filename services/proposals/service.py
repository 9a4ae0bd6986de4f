"""Use cases of the proposals service."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals.config import ProposalsSettings
from services.proposals.districts import load_districts
from services.proposals.models import districts, working_groups
from shared import events as ev
from shared.inbox import EventMeta


async def seed_districts(session: AsyncConnection, settings: ProposalsSettings) -> bool:
    """On first start, load the default district list. Staff change it later; this never overwrites."""
    if await session.scalar(select(func.count()).select_from(districts)):
        return False
    rows = [
        {"id": d.id, "number": d.number, "name": d.name, "kind": d.kind, "position": i}
        for i, d in enumerate(load_districts(settings.districts_file or None), start=1)
    ]
    await session.execute(insert(districts).values(rows).on_conflict_do_nothing())
    return True


async def list_districts(session: AsyncConnection) -> list[dict]:
    rows = (
        await session.execute(
            select(districts.c.id, districts.c.name).where(districts.c.active).order_by(districts.c.position)
        )
    ).all()
    return [{"id": r.id, "name": r.name} for r in rows]


async def apply_working_group(session: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    """Keep the local read model of the catalog (fed by working_group.* events)."""
    assert isinstance(event, ev.WorkingGroupPublished | ev.WorkingGroupChanged)
    values = {
        "id": event.id,
        "title": event.title,
        "meetings": [m.model_dump(mode="json") for m in event.meetings],
        "updated_at": meta.occurred_at or func.now(),
    }
    stmt = insert(working_groups).values(**values)
    # Events may arrive out of order across retries: never let an older one overwrite a newer one.
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "title": stmt.excluded.title,
                "meetings": stmt.excluded.meetings,
                "updated_at": stmt.excluded.updated_at,
            },
            where=working_groups.c.updated_at <= stmt.excluded.updated_at,
        )
    )
