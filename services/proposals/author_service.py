"""The author's use cases: submitting a proposal, and the private link (view, edit after changes were
requested, withdraw)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import domain, measures_service
from services.proposals import repository as repo
from services.proposals.config import ProposalsSettings
from services.proposals.models import outbox
from services.proposals.schemas import AuthorEdit, ProposalRequest
from services.proposals.service import (
    _content,
    _event,
    _history,
    _labelled,
    _private_url,
    _public_url,
    _state,
)
from shared import events as ev
from shared.addresses import mailbox
from shared.outbox import add_event
from shared.tokens import hash_token, token_for


async def submit_proposal(
    session: AsyncConnection, settings: ProposalsSettings, body: ProposalRequest
) -> dict[str, Any]:
    """The intake's hot path: one round trip to read (labels, receipt budget), one to write the proposal
    with its history entry, the event built from what is known (no re-read)."""
    email = str(body.author_email) if body.author_email else None
    now = datetime.now(UTC)
    labels = await repo.intake_labels(
        session,
        body.working_group_id,
        body.district_id,
        email,
        now - timedelta(days=1),
        now - timedelta(hours=1),
        settings.receipt_mails_per_hour,
    )
    if labels is None:
        raise domain.InvalidReference("there is no working group with this id", field="working_group_id")
    if body.district_id is not None:
        _require_active_district(labels.district_name, labels.district_active)
    proposal_id = uuid.uuid4()
    state = domain.submit()
    mail_author = (
        email is not None
        and labels.receipts < settings.receipt_mails_per_address_per_day
        and (
            settings.receipt_mails_per_hour <= 0
            or labels.receipts_last_hour < settings.receipt_mails_per_hour
        )
    )
    token = token_for(settings.token_secret, proposal_id) if email else None
    await repo.insert_submitted_proposal(
        session,
        {
            "id": proposal_id,
            "working_group_id": body.working_group_id,
            "district_id": body.district_id,
            "title": body.title,
            "body": body.body,
            "language": body.language,
            "author_name": body.author_name,
            "author_email": email,
            "author_mailbox": mailbox(email) if email else None,
            "token_hash": hash_token(token) if token else None,
            "status": state.status,
            "version": state.version,
        },
    )
    author = None
    if mail_author and email is not None:
        # The receipt goes to an address nobody has proven yet: it greets without the typed name, so the
        # form cannot make the city mail a stranger a greeting of an attacker's choosing.
        author = ev.Recipient(email=email, name="", language=body.language)
    event = ev.ProposalSubmitted(
        proposal_id=proposal_id,
        title=body.title,
        working_group=ev.WorkingGroupInfo(id=body.working_group_id, title=labels.title),
        district=ev.DistrictInfo(id=body.district_id, name=labels.district_name)
        if body.district_id
        else None,
        author=author,
        status_url=_private_url(settings, proposal_id) if author else None,
    )
    await add_event(session, outbox, event)
    return {"id": str(proposal_id), "status": state.status}


def _require_active_district(name: str | None, active: bool | None) -> None:
    if name is None:
        raise domain.InvalidReference("there is no district with this id", field="district_id")
    if not active:
        raise domain.InvalidReference(
            "this district is retired and takes no new proposals", field="district_id"
        )


async def _check_district(session: AsyncConnection, district_id: str | None) -> None:
    if district_id is not None:
        district = await repo.get_district(session, district_id)
        _require_active_district(district.name if district else None, district.active if district else None)


async def author_view(session: AsyncConnection, settings: ProposalsSettings, token: str) -> dict[str, Any]:
    found = await repo.proposal_by_token_hash(session, hash_token(token))
    if found is None:
        raise domain.NotFound("this link is unknown or no longer valid")
    row = await _labelled(session, found.id)
    state = _state(row)
    return {
        **_content(row),
        "duplicate_of": row.duplicate_of,
        "can_edit": state.status == "changes_requested",
        "can_withdraw": state.status in domain.WITHDRAWABLE,
        "public_url": _public_url(settings, row.id) if domain.is_public(row.status) else None,
        "submitted_at": row.submitted_at,
        "measures": await measures_service.measures_of_proposal(session, settings, row.id),
    }


async def author_edit(
    session: AsyncConnection, settings: ProposalsSettings, body: AuthorEdit
) -> dict[str, Any]:
    row = await _by_token_locked(session, body.token)
    transition = domain.revise(_state(row))
    await _check_district(session, body.district_id)
    await repo.update_proposal(
        session,
        row.id,
        {
            "title": body.title,
            "body": body.body,
            "district_id": body.district_id,
            "status": transition.after.status,
            "version": transition.after.version,
            "revision": transition.after.revision,
            "public_statement": None,
            "submitted_at": datetime.now(UTC),
        },
    )
    await _history(
        session,
        row.id,
        actor="author",
        action=transition.action,
        before=transition.before,
        after=transition.after,
        details={
            "previous_title": row.title,
            "previous_body": row.body,
            "previous_district_id": row.district_id,
        },
    )
    labelled = await _labelled(session, row.id)
    await add_event(session, outbox, _event(ev.ProposalSubmitted, labelled, settings, with_author=True))
    return await author_view(session, settings, body.token)


async def author_withdraw(
    session: AsyncConnection, settings: ProposalsSettings, token: str
) -> dict[str, Any]:
    row = await _by_token_locked(session, token)
    transition = domain.withdraw(_state(row))
    await repo.update_proposal(
        session, row.id, {"status": transition.after.status, "version": transition.after.version}
    )
    await _history(
        session,
        row.id,
        actor="author",
        action=transition.action,
        before=transition.before,
        after=transition.after,
    )
    labelled = await _labelled(session, row.id)
    await add_event(session, outbox, _event(ev.ProposalWithdrawn, labelled, settings, with_author=True))
    return await author_view(session, settings, token)


async def _by_token_locked(session: AsyncConnection, token: str) -> Row[Any]:
    row = await repo.proposal_by_token_hash(session, hash_token(token), lock=True)
    if row is None:
        raise domain.NotFound("this link is unknown or no longer valid")
    return row
