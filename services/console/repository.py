"""Every query of the console: its sessions and its text blocks (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.console.models import sessions, text_blocks


async def insert_session(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(sessions).values(**values))


async def session_by_key(conn: AsyncConnection, key: str) -> RowMapping | None:
    return (await conn.execute(select(sessions).where(sessions.c.id_hash == key))).mappings().first()


async def update_session(conn: AsyncConnection, key: str, **values: Any) -> None:
    await conn.execute(update(sessions).where(sessions.c.id_hash == key).values(**values))


async def delete_session(conn: AsyncConnection, key: str) -> RowMapping | None:
    result = await conn.execute(delete(sessions).where(sessions.c.id_hash == key).returning(sessions))
    return result.mappings().first()


async def delete_idle_sessions(conn: AsyncConnection, before: datetime) -> int:
    result = await conn.execute(delete(sessions).where(sessions.c.last_seen_at < before))
    return result.rowcount or 0


async def text_blocks_of(conn: AsyncConnection, language: str | None = None) -> list[RowMapping]:
    query = select(text_blocks).order_by(text_blocks.c.language, text_blocks.c.title)
    if language is not None:
        query = query.where(text_blocks.c.language == language)
    return list((await conn.execute(query)).mappings())


async def insert_text_block(conn: AsyncConnection, **values: Any) -> uuid.UUID:
    block_id = uuid.uuid4()
    await conn.execute(insert(text_blocks).values(id=block_id, **values))
    return block_id


async def delete_text_block(conn: AsyncConnection, block_id: uuid.UUID) -> bool:
    result = await conn.execute(delete(text_blocks).where(text_blocks.c.id == block_id))
    return bool(result.rowcount)
