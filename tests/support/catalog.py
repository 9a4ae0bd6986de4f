"""Test working groups: a fresh one per test, so tests never share seats."""

from __future__ import annotations

import uuid

from sqlalchemy import insert

from services.registration.models import meetings, working_groups


async def create_working_group(runtime, capacity: int = 20, expert_reserved: int = 0, starts_at=None) -> str:
    wg_id = f"test-{uuid.uuid4().hex[:10]}"
    async with runtime.transaction() as session:
        await session.execute(
            insert(working_groups).values(
                id=wg_id,
                title=f"Testkreis {wg_id}",
                capacity=capacity,
                expert_reserved=expert_reserved,
                position=99,
            )
        )
        await session.execute(
            insert(meetings).values(
                [
                    {
                        "working_group_id": wg_id,
                        "number": 1,
                        "starts_at": starts_at,
                        "venue": "Rathaus",
                        "address": "Willy-Brandt-Platz 1",
                    },
                    {
                        "working_group_id": wg_id,
                        "number": 2,
                        "starts_at": None,
                        "venue": "",
                        "address": "",
                    },
                ]
            )
        )
    return wg_id
