"""E-mail addresses as the system compares and counts them — one place for all three services.

``normalised`` is the identity of an address: what erasure, retention and "already registered" match
**exactly** (never as a substring or a LIKE pattern). ``mailbox`` is the inbox a mail would land in: what a
per-address budget counts, so that ``victim+1@…`` and ``victim+2@…`` share one budget. It is for counting
only; mail is always sent to the address as given.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, func, literal, literal_column, select, text

# Providers that ignore dots in the local part (``j.doe@gmail.com`` is ``jdoe@gmail.com``).
_DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def normalised(email: str) -> str:
    """The address as stored and matched: surrounding space removed, lower case."""
    return email.strip().lower()


def mailbox(email: str) -> str:
    """The mailbox an address delivers to, for counting: lower case, a ``+tag`` removed, and the dots of
    the local part removed for the providers that ignore them."""
    address = normalised(email)
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    local = local.split("+", 1)[0] or local
    if domain == "googlemail.com":
        domain = "gmail.com"
    if domain in _DOTLESS_DOMAINS:
        local = local.replace(".", "") or local
    return f"{local}@{domain}"


# --- matching an address in SQL (erasure and retention) ---------------------------------------------------

# Every string value of a JSON document, at any depth (keys are not values).
_STRING_VALUES = "'strict $.** ? (@.type() == \"string\")'::jsonpath"


def sql_equals_address(column: Any, address: str) -> Any:
    """SQL: a text column holds ``address`` (already :func:`normalised`) and nothing else."""
    return func.lower(func.btrim(column)) == address


def sql_json_holds_address(document: Any, address: str) -> Any:
    """SQL: a JSONB document holds ``address`` (already :func:`normalised`) as one of its string values,
    exactly (letter case and surrounding space aside), at any depth — never as part of a longer string,
    and ``_`` or ``%`` in the address are plain characters."""
    values = func.jsonb_path_query(document, literal_column(_STRING_VALUES)).table_valued("value")
    text = values.render_derived().c.value.op("#>>")(literal_column("'{}'::text[]"))
    return exists(select(literal(1)).where(func.lower(func.btrim(text)) == address))


def backfill_mailbox_keys(bind: Any, table: str, email_column: str, key_column: str) -> None:
    """Fill ``key_column`` of every row of ``table`` (schema-qualified) with the :func:`mailbox` of its
    ``email_column``: for migrations that add a mailbox key to rows stored before it existed."""
    rows = bind.execute(
        text(f"SELECT id, {email_column} AS email FROM {table} WHERE {email_column} IS NOT NULL")
    ).fetchall()
    if rows:
        bind.execute(
            text(f"UPDATE {table} SET {key_column} = :key WHERE id = :id"),
            [{"id": row.id, "key": mailbox(row.email)} for row in rows],
        )
