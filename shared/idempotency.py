"""``Idempotency-Key`` for public POSTs: the same key and body within the retention window answers as the
first time did; the same key with another body is a 422. One table per service (in its own schema).

    answer = await idempotent(runtime, table, key, body, lambda session: use_case(session, ...))
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.http import Problem


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys",
        metadata,
        Column("key", Text, primary_key=True),
        Column("request_hash", Text, nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


# The header as an OpenAPI parameter, for routes that read it themselves.
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


def checked_key(key: str | None) -> str | None:
    """The header's value, or a 422 naming it when it is not 1 to 200 printable characters."""
    if key is None:
        return None
    if not (1 <= len(key) <= 200) or not key.isprintable():
        raise Problem(
            422,
            "Invalid request",
            "The Idempotency-Key header is invalid.",
            errors=[{"field": "Idempotency-Key", "message": "1 to 200 printable characters"}],
        )
    return key


def fingerprint(body: BaseModel) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


async def stored_answer(session: AsyncConnection, table: Table, key: str) -> Row[Any] | None:
    return (await session.execute(select(table).where(table.c.key == key))).first()


def replayed(stored: Row[Any], request_hash: str) -> tuple[int, dict[str, Any]]:
    if stored.request_hash != request_hash:
        raise Problem(
            422,
            "Idempotency key reused",
            "This Idempotency-Key was used with a different body.",
            errors=[{"field": "Idempotency-Key", "message": "already used with a different body"}],
        )
    return stored.status_code, stored.response


def replay(stored: Row[Any], request_hash: str) -> JSONResponse:
    status_code, response = replayed(stored, request_hash)
    return JSONResponse(response, status_code=status_code)


async def idempotent_answer(
    transaction: Callable[[], Any],
    table: Table,
    key: str | None,
    body: BaseModel,
    work: Callable[[AsyncConnection], Awaitable[dict[str, Any]]],
    *,
    status_code: int = 202,
) -> tuple[int, dict[str, Any]]:
    """Run ``work`` in one unit of work and return ``(status_code, its result)``, remembering the answer
    under ``key`` in the same transaction; a repeated key returns the remembered answer (a page's form
    renders it, :func:`idempotent` sends it as JSON)."""
    request_hash = fingerprint(body) if key is not None else ""
    try:
        async with transaction() as session:
            if key is not None:
                stored = await stored_answer(session, table, key)
                if stored is not None:
                    return replayed(stored, request_hash)
            answer = await work(session)
            if key is not None:
                await session.execute(
                    insert(table).values(
                        key=key, request_hash=request_hash, status_code=status_code, response=answer
                    )
                )
    except IntegrityError:
        # The same key raced in twice: the other request committed first; answer as it did.
        if key is None:
            raise
        async with transaction() as session:
            stored = await stored_answer(session, table, key)
        if stored is None:
            raise
        return replayed(stored, request_hash)
    return status_code, answer


async def idempotent(
    transaction: Callable[[], Any],
    table: Table,
    key: str | None,
    body: BaseModel,
    work: Callable[[AsyncConnection], Awaitable[dict[str, Any]]],
    *,
    status_code: int = 202,
) -> JSONResponse:
    """:func:`idempotent_answer` as the JSON response."""
    status, answer = await idempotent_answer(transaction, table, key, body, work, status_code=status_code)
    return JSONResponse(answer, status_code=status)


# A page's form carries a one-time key (made when the form is shown) as its Idempotency-Key: a form
# sent twice (a double click, a reload) is one request. Stored apart from API clients' keys.
FORM_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_form_key() -> str:
    return secrets.token_urlsafe(18)


def form_key(value: str | None) -> str | None:
    """The Idempotency-Key of a form's hidden ``form_key`` (None when it is missing or malformed: the
    form still works, without the protection)."""
    if value and FORM_KEY_PATTERN.fullmatch(value):
        return f"form:{value}"
    return None


async def forget_keys(session: AsyncConnection, table: Table, ttl_hours: float) -> None:
    """A key counts for ``ttl_hours`` (24 h by default): the same key later is a new request."""
    await session.execute(table.delete().where(table.c.created_at < func.now() - timedelta(hours=ttl_hours)))
