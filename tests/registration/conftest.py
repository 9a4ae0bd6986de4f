from __future__ import annotations

import pytest

from tests.support.catalog import create_working_group


@pytest.fixture
def make_working_group(registration_settings):
    """A fresh working group per test, so tests never share seats."""
    return create_working_group
