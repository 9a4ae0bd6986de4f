from __future__ import annotations

import pytest

from services.registration.app import create_app
from tests.conftest import running
from tests.support.catalog import create_working_group


@pytest.fixture
def make_working_group(registration_settings):
    """A fresh working group per test, so tests never share seats."""
    return create_working_group


@pytest.fixture
async def api(registration_settings):
    app = create_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(app) as client:
        client.runtime = app.state.runtime
        yield client
