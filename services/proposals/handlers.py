"""Event handlers of the proposals service: thin, idempotent (the inbox runs them once), calling the
service's use cases."""

from __future__ import annotations

from services.proposals import service
from shared.inbox import Handler
from shared.topology import PROPOSALS_CATALOG


def catalog_handlers() -> dict[str, Handler]:
    """The read model of the registration service's catalog: working_group.published / .changed."""
    return {key: service.apply_working_group for key in PROPOSALS_CATALOG.routing_keys}
