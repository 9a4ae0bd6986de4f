"""Measures' use cases: what the council made of adopted proposals and what became of it — creating a
measure, the council's decision (once), progress entries (nothing after done or dropped), public reading,
following a measure (double opt-in, one-click unsubscribe), and the attendance counts kept for open data.
Each runs inside the caller's unit of work and never commits; every staff change is audited, every mail
goes through the outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import domain
from services.proposals import measures_repository as repo
from services.proposals import repository as proposals_repo
from services.proposals.config import ProposalsSettings
from services.proposals.measures_schemas import (
    CouncilDecisionRequest,
    FollowRequest,
    MeasureRequest,
    ProgressRequest,
)
from services.proposals.models import outbox
from services.proposals.service import audit
from shared import events as ev
from shared.addresses import mailbox, normalised
from shared.inbox import EventMeta
from shared.outbox import add_event
from shared.pagination import keyset_page
from shared.tokens import hash_token, token_for

# Follow requests (opt-in mails) per mailbox and 24 h, over all measures: the door cannot flood a mailbox.
FOLLOW_MAILS_PER_ADDRESS_PER_DAY = 5
# An opt-in nobody confirmed is forgotten after this long.
UNCONFIRMED_FOLLOWER_DAYS = 7

# --- staff: create, council decision, progress ----------------------------------------------------------


async def create_measure(session: AsyncConnection, subject: str, body: MeasureRequest) -> dict[str, Any]:
    if await proposals_repo.get_working_group(session, body.working_group_id) is None:
        raise domain.InvalidReference("there is no working group with this id", field="working_group_id")
    if body.district_id is not None and await proposals_repo.get_district(session, body.district_id) is None:
        raise domain.InvalidReference("there is no district with this id", field="district_id")
    requested = list(dict.fromkeys(body.proposal_ids))
    outcomes = await repo.proposal_outcomes(session, requested)
    refused = domain.unlinkable_proposals([str(p) for p in requested], outcomes)
    if refused:
        raise domain.InvalidReference(
            "only adopted or partially adopted proposals can be linked: " + ", ".join(refused),
            field="proposal_ids",
        )
    measure_id = uuid.uuid4()
    values = {
        "id": measure_id,
        "working_group_id": body.working_group_id,
        "district_id": body.district_id,
        "title": body.title,
        "description": body.description,
    }
    await repo.insert_measure(session, values, requested)
    await audit(
        session,
        subject,
        "measure.created",
        str(measure_id),
        {**values, "id": str(measure_id), "proposal_ids": [str(p) for p in requested]},
    )
    return {"id": measure_id}


async def decide_in_council(
    session: AsyncConnection,
    settings: ProposalsSettings,
    subject: str,
    measure_id: uuid.UUID,
    body: CouncilDecisionRequest,
) -> dict[str, Any]:
    row = await _locked(session, measure_id)
    domain.council_decision_allowed(row.decision is not None)
    await repo.update_measure(
        session,
        measure_id,
        {
            "decision": body.decision,
            "decided_on": body.decided_on,
            "reference": body.reference,
            "decision_statement": body.public_statement,
        },
    )
    await audit(session, subject, "measure.council_decided", str(measure_id), body.model_dump(mode="json"))
    await add_event(
        session,
        outbox,
        ev.MeasureCouncilDecided(
            **await _event_base(session, settings, row),
            decided_on=body.decided_on.isoformat(),
            reference=body.reference,
            decision=body.decision,
            public_statement=body.public_statement,
        ),
    )
    return await measure_view(session, settings, measure_id)


async def add_progress(
    session: AsyncConnection,
    settings: ProposalsSettings,
    subject: str,
    measure_id: uuid.UUID,
    body: ProgressRequest,
) -> dict[str, Any]:
    row = await _locked(session, measure_id)
    domain.progress_allowed(row.status)
    entry_id = await repo.append_progress(
        session,
        {
            "measure_id": measure_id,
            "status": body.status,
            "on": body.on,
            "public_statement": body.public_statement,
        },
    )
    await repo.update_measure(session, measure_id, {"status": body.status})
    await audit(
        session,
        subject,
        "measure.progressed",
        str(measure_id),
        {**body.model_dump(mode="json"), "entry_id": entry_id},
    )
    await add_event(
        session,
        outbox,
        ev.MeasureProgressed(
            **await _event_base(session, settings, row),
            entry_id=entry_id,
            status=body.status,
            on=body.on.isoformat(),
            public_statement=body.public_statement,
        ),
    )
    return await measure_view(session, settings, measure_id)


async def _locked(session: AsyncConnection, measure_id: uuid.UUID) -> Row[Any]:
    row = await repo.get_measure(session, measure_id, lock=True)
    if row is None:
        raise domain.NotFound("there is no measure with this id")
    return row


async def _event_base(session: AsyncConnection, settings: ProposalsSettings, row: Row[Any]) -> dict[str, Any]:
    """What every measure mail needs: the measure, and everyone owed the mail — each author of a linked
    proposal who left an address (unless they unsubscribed) and each confirmed follower — once per
    address, each with their own unsubscribe link."""
    recipients: dict[str, ev.MeasureRecipient] = {}
    for follower in await repo.confirmed_followers(session, row.id):
        token = token_for(settings.token_secret, follower.id)
        recipients.setdefault(
            normalised(follower.email),
            ev.MeasureRecipient(
                recipient=ev.Recipient(
                    email=follower.email, name="", language=follower.language, address_proven=True
                ),
                links=ev.SelfServiceLinks(unsubscribe_url=unsubscribe_url(settings, row.id, token)),
            ),
        )
    for proposal in await repo.linked_proposals(session, row.id):
        if not proposal.author_email or proposal.opted_out is not None:
            continue
        token = author_token(settings, row.id, proposal.id)
        recipients.setdefault(
            normalised(proposal.author_email),
            ev.MeasureRecipient(
                recipient=ev.Recipient(
                    email=proposal.author_email, name=proposal.author_name or "", language=proposal.language
                ),
                links=ev.SelfServiceLinks(unsubscribe_url=unsubscribe_url(settings, row.id, token)),
            ),
        )
    return {
        "measure_id": row.id,
        "measure_title": row.title,
        "working_group": ev.WorkingGroupInfo(id=row.working_group_id, title=row.working_group_title),
        "district": ev.DistrictInfo(id=row.district_id, name=row.district_name) if row.district_id else None,
        "public_url": measure_url(settings, row.id),
        "recipients": list(recipients.values()),
    }


# --- the public ----------------------------------------------------------------------------------------


async def measure_page(
    session: AsyncConnection,
    *,
    working_group_id: str | None,
    district_id: str | None,
    status: str | None,
    q: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> dict[str, Any]:
    rows = await repo.measure_page(
        session,
        working_group_id=working_group_id,
        district_id=district_id,
        status=status,
        q=q,
        after=after,
        limit=limit + 1,
    )
    page, next_cursor = keyset_page(rows, limit, lambda r: (r.created_at, r.id))
    return {"items": [_summary(r) for r in page], "next_cursor": next_cursor}


async def measure_view(
    session: AsyncConnection, settings: ProposalsSettings, measure_id: uuid.UUID
) -> dict[str, Any]:
    row = await repo.get_measure(session, measure_id)
    if row is None:
        raise domain.NotFound("there is no measure with this id")
    return {
        **_summary(row),
        "description": row.description,
        "proposals": [
            {
                "id": p.id,
                "title": p.title,
                "outcome": p.outcome,
                "url": f"{settings.public_url}/v1/proposals/{p.id}",
            }
            for p in await repo.linked_proposals(session, measure_id)
        ],
        "timeline": [
            {"status": e.status, "on": e.on, "public_statement": e.public_statement}
            for e in await repo.progress_of(session, measure_id)
        ],
    }


def _summary(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "working_group": {"id": row.working_group_id, "title": row.working_group_title},
        "district": {"id": row.district_id, "name": row.district_name} if row.district_id else None,
        "title": row.title,
        "status": row.status,
        "council_decision": {
            "decided_on": row.decided_on,
            "reference": row.reference,
            "decision": row.decision,
            "public_statement": row.decision_statement,
        }
        if row.decision is not None
        else None,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def measures_of_proposal(
    session: AsyncConnection, settings: ProposalsSettings, proposal_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The measures a proposal led to (the author's page and the public proposal page)."""
    return [
        {
            "id": m.id,
            "title": m.title,
            "status": m.status,
            "decision": m.decision,
            "url": measure_url(settings, m.id),
        }
        for m in await repo.measures_of_proposal(session, proposal_id)
    ]


# --- followers -----------------------------------------------------------------------------------------


async def follow(
    session: AsyncConnection, settings: ProposalsSettings, measure_id: uuid.UUID, body: FollowRequest
) -> None:
    """Ask to follow: a new address gets the opt-in mail; one already following (or asked), or past its
    daily budget, gets nothing — and the caller answers the same either way."""
    if await repo.get_measure(session, measure_id) is None:
        raise domain.NotFound("there is no measure with this id")
    email = normalised(str(body.email))
    box = mailbox(email)
    since = datetime.now(UTC) - timedelta(days=1)
    if await repo.follow_requests_since(session, box, since) >= FOLLOW_MAILS_PER_ADDRESS_PER_DAY:
        return
    follower_id = uuid.uuid4()
    token = token_for(settings.token_secret, follower_id)
    added = await repo.add_follower(
        session,
        {
            "id": follower_id,
            "measure_id": measure_id,
            "email": email,
            "mailbox": box,
            "language": body.language,
            "token_hash": hash_token(token),
        },
    )
    if added:
        await add_event(
            session,
            outbox,
            ev.MeasureFollowRequested(
                measure_id=measure_id,
                recipient=ev.Recipient(email=email, name="", language=body.language),
                confirm_url=f"{settings.public_url}/v1/measures/followers/confirm?token={token}",
            ),
        )


async def follower(session: AsyncConnection, token: str) -> dict[str, Any]:
    row = await repo.follower_by_token_hash(session, hash_token(token))
    if row is None:
        raise domain.NotFound("this link is unknown or no longer valid")
    measure = await repo.get_measure(session, row.measure_id)
    assert measure is not None
    return {
        "measure_id": row.measure_id,
        "title": measure.title,
        "language": row.language,
        "confirmed": row.confirmed_at is not None,
    }


async def confirm_follow(session: AsyncConnection, token: str) -> dict[str, Any]:
    row = await repo.follower_by_token_hash(session, hash_token(token))
    if row is None:
        raise domain.NotFound("this link is unknown or no longer valid")
    await repo.confirm_follower(session, row.id)
    return await follower(session, token)


async def unsubscribe(
    session: AsyncConnection, settings: ProposalsSettings, measure_id: uuid.UUID, token: str
) -> str:
    """One-click unsubscribe (RFC 8058): a follower's address goes at once; an author of a linked proposal
    gets no further mails about this measure. Returns the language for the answer page."""
    row = await repo.follower_by_token_hash(session, hash_token(token))
    if row is not None and row.measure_id == measure_id:
        await repo.remove_follower(session, row.id)
        return str(row.language)
    for proposal in await repo.linked_proposals(session, measure_id):
        if author_token(settings, measure_id, proposal.id) == token:
            await repo.author_opt_out(session, measure_id, proposal.id)
            return str(proposal.language)
    raise domain.NotFound("this link is unknown or no longer valid")


def author_token(settings: ProposalsSettings, measure_id: uuid.UUID, proposal_id: uuid.UUID) -> str:
    """The unsubscribe token of an author's mails about one measure (nothing stored: recomputed)."""
    return token_for(settings.token_secret, uuid.uuid5(measure_id, str(proposal_id)))


def measure_url(settings: ProposalsSettings, measure_id: uuid.UUID) -> str:
    return f"{settings.public_url}/v1/measures/{measure_id}"


def unsubscribe_url(settings: ProposalsSettings, measure_id: uuid.UUID, token: str) -> str:
    return f"{settings.public_url}/v1/measures/{measure_id}/unsubscribe?token={token}"


async def forget_follower_address(session: AsyncConnection, email: str) -> int:
    """Erasure on request: every follow of the address goes (exact match)."""
    return await repo.forget_followers_by_email(session, email)


async def forget_unconfirmed_followers(session: AsyncConnection) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=UNCONFIRMED_FOLLOWER_DAYS)
    return await repo.forget_unconfirmed_followers_before(session, cutoff)


# --- attendance counts (for open data) -------------------------------------------------------------------


async def apply_attendance(session: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    assert isinstance(event, ev.AttendanceCounted)
    await repo.upsert_attendance(
        session,
        {
            "working_group_id": event.working_group.id,
            "meeting_number": event.meeting.number,
            "starts_at": event.meeting.starts_at,
            "registered": event.registered,
            "present": event.present,
            "no_show": event.no_show,
            "walk_ins": event.walk_ins,
            "by_language": dict(event.by_language),
            "revision": event.revision,
        },
    )
