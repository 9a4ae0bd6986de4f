"""The console's use cases, each in one unit of work: sessions (a sign-in under way, signed in, touched,
renewed, ended) and the text blocks. Calls to the provider and the services happen outside them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.console import domain, repository
from services.console.domain import Person, SessionMissing


def _now() -> datetime:
    return datetime.now(UTC)


async def begin_sign_in(conn: AsyncConnection, old_id: str | None, pending: dict[str, str]) -> str:
    """A session for a sign-in under way; a session id the browser already had is never carried on."""
    if old_id:
        await repository.delete_session(conn, domain.session_key(old_id))
    session_id = domain.new_session_id()
    await repository.insert_session(
        conn, id_hash=domain.session_key(session_id), csrf_token=domain.new_csrf_token(), pending=pending
    )
    return session_id


async def csrf_of(conn: AsyncConnection, session_id: str) -> str:
    """The CSRF token of a session (the development sign-in's form, before anybody is signed in)."""
    row = await repository.session_by_key(conn, domain.session_key(session_id))
    if row is None:
        raise SessionMissing()
    return str(row["csrf_token"])


async def pending_sign_in(conn: AsyncConnection, session_id: str | None, state: str) -> dict[str, str]:
    """What the sign-in under way kept, if the provider came back with its state; consumed."""
    if not session_id:
        raise SessionMissing()
    row = await repository.delete_session(conn, domain.session_key(session_id))
    pending = row["pending"] if row else None
    if not pending or not domain.csrf_matches(pending.get("state", ""), state):
        raise SessionMissing()
    return dict(pending)


async def sign_in(
    conn: AsyncConnection,
    *,
    subject: str,
    name: str,
    roles: list[str],
    language: str = "de",
    access_token: str | None = None,
    refresh_token: str | None = None,
    access_expires_at: datetime | None = None,
) -> str:
    """A new session under a new id (the id of the sign-in under way is gone: no fixation)."""
    session_id = domain.new_session_id()
    await repository.insert_session(
        conn,
        id_hash=domain.session_key(session_id),
        csrf_token=domain.new_csrf_token(),
        subject=subject,
        display_name=name,
        roles=roles,
        language=language,
        access_token=access_token,
        refresh_token=refresh_token,
        access_expires_at=access_expires_at,
    )
    return session_id


def person_of(row: RowMapping) -> Person:
    return Person(
        subject=row["subject"],
        name=row["display_name"] or row["subject"],
        roles=frozenset(row["roles"]),
        language=row["language"],
        csrf_token=row["csrf_token"],
    )


async def signed_in(conn: AsyncConnection, session_id: str | None, idle_minutes: float) -> RowMapping:
    """The signed-in session behind the cookie, touched; SessionMissing if none or idle too long."""
    if not session_id:
        raise SessionMissing()
    key = domain.session_key(session_id)
    row = await repository.session_by_key(conn, key)
    if row is None or row["subject"] is None:
        raise SessionMissing()
    now = _now()
    if domain.idle_expired(row["last_seen_at"], now, idle_minutes):
        await repository.delete_session(conn, key)
        raise SessionMissing()
    if domain.needs_touch(row["last_seen_at"], now):
        await repository.update_session(conn, key, last_seen_at=now)
    return row


async def renewed(conn: AsyncConnection, session_id: str, roles: list[str] | None, **tokens: Any) -> None:
    values = {k: v for k, v in tokens.items() if v is not None}
    if roles is not None:
        values["roles"] = roles
    await repository.update_session(conn, domain.session_key(session_id), **values)


async def sign_out(conn: AsyncConnection, session_id: str | None) -> RowMapping | None:
    if not session_id:
        return None
    return await repository.delete_session(conn, domain.session_key(session_id))


async def choose_language(conn: AsyncConnection, session_id: str, language: str) -> None:
    if language in domain.CONSOLE_LANGUAGES:
        await repository.update_session(conn, domain.session_key(session_id), language=language)


async def forget_idle_sessions(conn: AsyncConnection, idle_minutes: float) -> int:
    return await repository.delete_idle_sessions(conn, _now() - timedelta(minutes=idle_minutes))


async def text_blocks(conn: AsyncConnection, language: str | None = None) -> list[dict[str, Any]]:
    return [dict(r) for r in await repository.text_blocks_of(conn, language)]


async def add_text_block(
    conn: AsyncConnection, subject: str, language: str, title: str, body: str
) -> uuid.UUID:
    return await repository.insert_text_block(
        conn, language=language, title=title, body=body, created_by=subject
    )


async def remove_text_block(conn: AsyncConnection, block_id: uuid.UUID) -> bool:
    return await repository.delete_text_block(conn, block_id)
