from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial

import pytest
from sqlalchemy import insert

from services.proposals.app import create_app
from services.proposals.models import working_groups
from tests.conftest import running
from tests.support.staff import auth


@pytest.fixture
async def proposals_api(proposals_settings) -> AsyncIterator:
    """The proposals service with its broker, relay and jobs, and an HTTP client for it."""
    app = create_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def make_working_group():
    """A working group in the service's read model of the catalog (as a working_group.published event
    leaves it), fresh per test so that tests never share counts."""

    async def make(app, title: str | None = None) -> str:
        wg_id = f"wg-{uuid.uuid4().hex[:10]}"
        async with app.state.runtime.transaction() as session:
            await session.execute(
                insert(working_groups).values(id=wg_id, title=title or f"Arbeitskreis {wg_id}")
            )
        return wg_id

    return make


staff_headers = partial(auth, subject="moderatorin.a")


def proposal_body(working_group_id: str, /, **overrides) -> dict:
    body = {
        "working_group_id": working_group_id,
        "district_id": "innenstadt-ost",
        "title": "Sprachcafé im Stadtteiltreff",
        "body": "Ein offenes Sprachcafé jeden Mittwoch, für alle, die Deutsch üben möchten.",
        "language": "de",
        "privacy_consent": True,
    }
    body.update(overrides)
    return body
