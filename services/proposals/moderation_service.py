"""Moderation's use cases: the decision on a submitted proposal, the outcome of a published one, the queue
and its counts, the moderator's view with the history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import domain
from services.proposals import repository as repo
from services.proposals.config import ProposalsSettings
from services.proposals.models import outbox
from services.proposals.schemas import DecisionRequest, OutcomeRequest
from services.proposals.service import (
    _content,
    _district_ref,
    _event,
    _history,
    _labelled,
    _private_url,
    _public_url,
    _state,
    _working_group_ref,
)
from shared import events as ev
from shared.outbox import add_event
from shared.pagination import keyset_page


async def decide(
    session: AsyncConnection,
    settings: ProposalsSettings,
    subject: str,
    proposal_id: uuid.UUID,
    expected_version: int | None,
    body: DecisionRequest,
) -> dict[str, Any]:
    row = await _locked_for_moderation(session, proposal_id, expected_version, required=True)
    target = None
    if body.decision == "mark_duplicate":
        if body.duplicate_of is None:
            raise domain.InvalidDuplicate("mark_duplicate needs duplicate_of", field="duplicate_of")
        if body.duplicate_of != proposal_id:
            target = await repo.get_proposal(session, body.duplicate_of, lock=True)
    transition = domain.decide(
        _state(row),
        body.decision,
        public_statement=body.public_statement,
        duplicate_of_status=target.status if target is not None else None,
        duplicate_of_is_self=body.duplicate_of == proposal_id,
    )
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "status": transition.after.status,
        "version": transition.after.version,
        "public_statement": body.public_statement,
        "decided_at": now,
    }
    if transition.after.status == "published":
        values["published_at"] = now
    if target is not None:
        values["duplicate_of"] = target.id
    await repo.update_proposal(session, proposal_id, values)
    await _history(
        session,
        proposal_id,
        actor="moderator",
        subject=subject,
        action=transition.action,
        before=transition.before,
        after=transition.after,
        public_statement=body.public_statement,
        internal_note=body.internal_note,
        details={"duplicate_of": str(target.id)} if target is not None else {},
    )
    extra: dict[str, Any] = {}
    if target is not None:
        # Merging: the published proposal counts the duplicates folded into it.
        await repo.update_proposal(session, target.id, {"merged_duplicates": target.merged_duplicates + 1})
        await repo.append_history(
            session,
            {
                "proposal_id": target.id,
                "actor": "moderator",
                "subject": subject,
                "action": "duplicate_merged",
                "from_status": target.status,
                "to_status": target.status,
                "version": target.version,
                "details": {"duplicate": str(proposal_id)},
            },
        )
        extra = {
            "duplicate_of": target.id,
            "duplicate_of_title": target.title,
            "duplicate_of_url": _public_url(settings, target.id),
        }
    row = await _labelled(session, proposal_id)
    event_class = ev.CATALOG[transition.event_type]
    if transition.event_type == "proposal.changes_requested":
        extra["edit_url"] = _private_url(settings, proposal_id)
    extra["public_statement"] = body.public_statement
    await add_event(session, outbox, _event(event_class, row, settings, with_author=True, **extra))
    return await moderation_view(session, proposal_id)


async def decide_outcome(
    session: AsyncConnection,
    settings: ProposalsSettings,
    subject: str,
    proposal_id: uuid.UUID,
    expected_version: int | None,
    body: OutcomeRequest,
) -> dict[str, Any]:
    row = await _locked_for_moderation(session, proposal_id, expected_version, required=False)
    transition = domain.decide_outcome(_state(row), body.outcome, public_statement=body.public_statement)
    await repo.update_proposal(
        session,
        proposal_id,
        {
            "outcome": transition.after.outcome,
            "outcome_statement": body.public_statement,
            "outcome_at": datetime.now(UTC),
            "version": transition.after.version,
        },
    )
    await _history(
        session,
        proposal_id,
        actor="moderator",
        subject=subject,
        action=transition.action,
        before=transition.before,
        after=transition.after,
        public_statement=body.public_statement,
        internal_note=body.internal_note,
        details={"outcome": body.outcome},
    )
    row = await _labelled(session, proposal_id)
    await add_event(
        session,
        outbox,
        _event(
            ev.ProposalOutcomeDecided,
            row,
            settings,
            with_author=True,
            outcome=body.outcome,
            public_statement=body.public_statement or "",
        ),
    )
    return await moderation_view(session, proposal_id)


async def _locked_for_moderation(
    session: AsyncConnection, proposal_id: uuid.UUID, expected_version: int | None, *, required: bool
) -> Row[Any]:
    """The proposal, locked; the moderator's If-Match must name its current version."""
    if expected_version is None and required:
        raise domain.PreconditionRequired("send the version you decided on in the If-Match header")
    row = await repo.get_proposal(session, proposal_id, lock=True)
    if row is None:
        raise domain.NotFound("there is no proposal with this id")
    if expected_version is not None and row.version != expected_version:
        raise domain.StaleVersion(row.version)
    return row


async def moderation_queue(
    session: AsyncConnection,
    *,
    status: str,
    working_group_id: str | None,
    district_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> dict[str, Any]:
    rows = await repo.queue_page(
        session,
        status=status,
        working_group_id=working_group_id,
        district_id=district_id,
        after=after,
        limit=limit + 1,
    )
    page, next_cursor = keyset_page(rows, limit, lambda r: (r.submitted_at, r.id))
    return {
        "items": [
            {
                "id": r.id,
                "version": r.version,
                "working_group": _working_group_ref(r),
                "district": _district_ref(r),
                "title": r.title,
                "status": r.status,
                "revision": r.revision,
                "submitted_at": r.submitted_at,
            }
            for r in page
        ],
        "next_cursor": next_cursor,
    }


async def moderation_counts(session: AsyncConnection) -> dict[str, Any]:
    rows = await repo.queue_counts(session)
    now = await repo.database_now(session)
    waiting = [r for r in rows if r.status == "submitted"]
    oldest = min((r.oldest_submitted_at for r in waiting), default=None)
    return {
        "counts": [r._asdict() for r in rows],
        "waiting": sum(r.count for r in waiting),
        "oldest_waiting_since": oldest,
        "oldest_waiting_age_seconds": int((now - oldest).total_seconds()) if oldest else None,
    }


async def moderation_view(session: AsyncConnection, proposal_id: uuid.UUID) -> dict[str, Any]:
    row = await repo.labelled_proposal(session, proposal_id)
    if row is None:
        raise domain.NotFound("there is no proposal with this id")
    history = await repo.history_of(session, proposal_id)
    return {
        **_content(row),
        "version": row.version,
        "revision": row.revision,
        "duplicate_of": row.duplicate_of,
        "author_name": row.author_name,
        "author_has_email": row.author_email is not None,
        "created_at": row.created_at,
        "submitted_at": row.submitted_at,
        "history": [
            {
                "at": h.at,
                "actor": h.actor,
                "subject": h.subject,
                "action": h.action,
                "from_status": h.from_status,
                "to_status": h.to_status,
                "version": h.version,
                "public_statement": h.public_statement,
                "internal_note": h.internal_note,
                "details": h.details,
            }
            for h in history
        ],
    }
