"""The catalog of working groups and their meetings: seeding, publishing it as events, the public views,
and the per-process cache the registration events are built from."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain
from services.registration import repository as repo
from services.registration.catalog_seed import WORKING_GROUPS
from services.registration.config import RegistrationSettings
from services.registration.models import outbox
from shared import events as ev
from shared.i18n import BERLIN
from shared.outbox import add_event

NO_WORKING_GROUP = "There is no working group with this id."


def meeting_info(row: Row[Any]) -> ev.MeetingInfo:
    return ev.MeetingInfo(
        number=row.number,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        venue=row.venue,
        address=row.address,
        sequence=row.sequence,
        cancelled=row.cancelled,
    )


CatalogEntry = tuple[ev.WorkingGroupInfo, list[ev.MeetingInfo]]


class CatalogCache:
    """Working group titles and meetings for events, one per runtime (``RegistrationRuntime.catalog``).

    Every registration and confirmation puts them into its event; reading them each time cost two queries
    per request. Where the working group's row is read under its lock (confirming, cancelling, promoting)
    the caller passes its ``catalog_version``, raised by every meeting change, and a stale entry is read
    again: those mails always carry the current meetings. Elsewhere (the confirm-your-registration mail)
    an entry is trusted for ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, int, CatalogEntry]] = {}

    async def get(self, conn: AsyncConnection, wg_id: str, version: int | None = None) -> CatalogEntry | None:
        hit = self._entries.get(wg_id)
        if hit is not None:
            loaded_at, loaded_version, entry = hit
            if version is None and time.monotonic() - loaded_at < self.ttl:
                return entry
            if version is not None and loaded_version == version:
                return entry
        wg = await repo.get_working_group(conn, wg_id)
        if wg is None:
            return None
        rows = (await repo.meetings_of(conn, [wg_id]))[wg_id]
        entry = (ev.WorkingGroupInfo(id=wg.id, title=wg.title), [meeting_info(m) for m in rows])
        self._entries[wg_id] = (time.monotonic(), wg.catalog_version, entry)
        return entry

    async def entry(self, conn: AsyncConnection, wg_id: str, version: int | None = None) -> CatalogEntry:
        found = await self.get(conn, wg_id, version)
        assert found is not None, f"working group {wg_id} vanished"
        return found

    def invalidate(self, wg_id: str) -> None:
        self._entries.pop(wg_id, None)


async def seed_catalog(conn: AsyncConnection, settings: RegistrationSettings) -> bool:
    """On first start, create the working groups of the announcement and publish them. Idempotent."""
    await repo.lock_catalog_seed(conn)
    if await repo.count_working_groups(conn) > 0:
        return False
    for position, wg in enumerate(WORKING_GROUPS, start=1):
        await repo.insert_working_group(
            conn,
            {
                "id": wg.id,
                "title": wg.title,
                "position": position,
                "capacity": settings.default_capacity,
                "expert_reserved": settings.default_expert_reserved,
            },
            [
                {
                    "working_group_id": wg.id,
                    "number": 1,
                    "starts_at": wg.first.starts_at,
                    "venue": wg.first.venue,
                    "address": wg.first.address,
                },
                {"working_group_id": wg.id, "number": 2, "starts_at": None, "venue": "", "address": ""},
            ],
        )
    for wg_row in await repo.list_working_groups(conn):
        await publish_working_group(conn, wg_row.id, changed=False)
    return True


async def publish_working_group(conn: AsyncConnection, working_group_id: str, *, changed: bool) -> None:
    wg = await repo.get_working_group(conn, working_group_id)
    assert wg is not None
    rows = (await repo.meetings_of(conn, [wg.id]))[wg.id]
    cls = ev.WorkingGroupChanged if changed else ev.WorkingGroupPublished
    await add_event(
        conn,
        outbox,
        cls(
            id=wg.id,
            title=wg.title,
            meetings=[meeting_info(m) for m in rows],
            catalog_version=wg.catalog_version,
        ),
    )


def _berlin(value: datetime | None) -> datetime | None:
    return value.astimezone(BERLIN) if value is not None else None


async def working_group_views(conn: AsyncConnection, ids: list[str] | None = None) -> list[dict[str, Any]]:
    groups = await repo.list_working_groups(conn)
    if ids is not None:
        groups = [g for g in groups if g.id in ids]
    all_meetings = await repo.meetings_of(conn, [g.id for g in groups])
    views = []
    for g in groups:
        confirmed = g.confirmed_general + g.confirmed_reserved
        views.append(
            {
                "id": g.id,
                "title": g.title,
                "capacity": g.capacity,
                "expert_reserved": g.expert_reserved,
                "confirmed": confirmed,
                "seats_left": max(g.capacity - confirmed, 0),
                "waitlisted": g.waitlisted,
                "meetings": [
                    {
                        "number": m.number,
                        # API.md: meetings are in Europe/Berlin; the offset says so (+01:00 / +02:00).
                        "starts_at": _berlin(m.starts_at),
                        "ends_at": _berlin(m.ends_at),
                        "venue": m.venue,
                        "address": m.address,
                        "cancelled": m.cancelled,
                    }
                    for m in all_meetings[g.id]
                ],
            }
        )
    return views


async def working_group_view(conn: AsyncConnection, wg_id: str) -> dict[str, Any]:
    views = await working_group_views(conn, [wg_id])
    if not views:
        raise domain.NotFound(NO_WORKING_GROUP)
    return views[0]
