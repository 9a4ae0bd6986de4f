"""Drop confirm_registration() and confirm_registrations() (0009, 0010): the seat is decided by
``domain.confirm`` in the service, under the working group's row lock, like every other change of the
seat counters. One place for the rule, and no event row written by SQL.

Revision ID: 0014
Revises: 0013
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS registration.confirm_registrations"
        "(text, uuid[], timestamptz[], integer[], uuid[], jsonb[], integer, jsonb[], integer, text[])"
    )
    op.execute(
        "DROP FUNCTION IF EXISTS registration.confirm_registration"
        "(uuid, text, integer, timestamptz, uuid, jsonb, integer, jsonb, integer, text)"
    )


def downgrade() -> None:
    # The functions as 0009 and 0010 created them.
    for name in ("0009_confirm_function.py", "0010_confirm_in_batches.py"):
        spec = importlib.util.spec_from_file_location(name[:-3], Path(__file__).with_name(name))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.upgrade()
