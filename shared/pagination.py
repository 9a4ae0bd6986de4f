"""Keyset pagination: a cursor is the sort key of the last item a page showed, never an offset.

The cursor is opaque to clients (base64url of a small JSON list); one that does not decode to the
expected shape is a 422 naming the ``cursor`` field, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from shared.http import Problem

T = TypeVar("T")


def encode_cursor(*key: Any) -> str:
    values = [
        v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v for v in key
    ]
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _invalid() -> Problem:
    return Problem(
        422,
        "Invalid request",
        "The cursor is not one this API gave out.",
        errors=[{"field": "cursor", "message": "invalid cursor"}],
    )


# The one shape a timestamp cursor has, checked in type (strict: a number is neither a time nor an id).
_TIMESTAMP_KEY = TypeAdapter(tuple[AwareDatetime, uuid.UUID])
# Far from both ends of what Python and Postgres represent, so that no offset conversion overflows.
_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC)


def decode_timestamp_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A cursor made by ``encode_cursor(timestamp, id)``, or None for the first page. Anything else —
    whatever it decodes to — is a 422 naming ``cursor``."""
    if not cursor:
        return None
    if len(cursor) > 200:
        raise _invalid()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, key = _TIMESTAMP_KEY.validate_json(raw, strict=True)
        if not _EARLIEST <= at < _LATEST:
            raise ValueError
        return at, key
    except (ValueError, TypeError, OverflowError, binascii.Error, ValidationError):
        raise _invalid() from None


def keyset_page(
    rows: Sequence[T], limit: int, sort_key: Callable[[T], tuple[Any, ...]]
) -> tuple[list[T], str | None]:
    """Split ``limit + 1`` fetched rows into the page and the cursor of the next one (None: last page)."""
    page = list(rows[:limit])
    return page, encode_cursor(*sort_key(page[-1])) if len(rows) > limit else None
