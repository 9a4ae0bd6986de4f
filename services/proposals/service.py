"""Use cases of the proposals service. Each runs inside the caller's unit of work and never commits:
load, apply the domain rule, store, append the history, stage the event in the outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import domain, report
from services.proposals import repository as repo
from services.proposals.config import ProposalsSettings
from services.proposals.districts import load_districts
from services.proposals.models import audit_log, idempotency_keys, outbox
from services.proposals.schemas import AuthorEdit, DecisionRequest, OutcomeRequest, ProposalRequest
from shared import audit as shared_audit
from shared import events as ev
from shared import idempotency
from shared.addresses import mailbox
from shared.inbox import EventMeta
from shared.observability import get_logger
from shared.outbox import add_event
from shared.pagination import keyset_page
from shared.tokens import hash_token, token_for

log = get_logger(__name__)

# --- districts -----------------------------------------------------------------------------------------


async def seed_districts(session: AsyncConnection, settings: ProposalsSettings) -> bool:
    """On first start, load the default district list. Staff change it later; this never overwrites."""
    if await repo.count_districts(session):
        return False
    rows = [
        {"id": d.id, "number": d.number, "name": d.name, "kind": d.kind, "position": i}
        for i, d in enumerate(load_districts(settings.districts_file or None), start=1)
    ]
    await repo.insert_districts(session, rows)
    return True


async def list_districts(session: AsyncConnection, *, include_retired: bool = False) -> list[dict[str, Any]]:
    rows = await repo.list_districts(session, include_retired=include_retired)
    if include_retired:
        return [
            {"id": r.id, "number": r.number, "name": r.name, "kind": r.kind, "active": r.active} for r in rows
        ]
    return [{"id": r.id, "name": r.name} for r in rows]


async def add_district(session: AsyncConnection, subject: str, values: dict[str, Any]) -> dict[str, Any]:
    if not await repo.add_district(session, values):
        raise domain.AlreadyExists(f"a district with the id {values['id']!r} exists already", field="id")
    await audit(session, subject, "district.added", values["id"], values)
    return await _district_view(session, values["id"])


async def change_district(
    session: AsyncConnection, subject: str, district_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Rename or retire (``active: false``) a district; a retired one keeps its proposals."""
    if await repo.get_district(session, district_id, lock=True) is None:
        raise domain.NotFound("there is no district with this id")
    if changes:
        await repo.update_district(session, district_id, changes)
    await audit(session, subject, "district.changed", district_id, changes)
    return await _district_view(session, district_id)


async def _district_view(session: AsyncConnection, district_id: str) -> dict[str, Any]:
    row = await repo.get_district(session, district_id)
    assert row is not None
    return {"id": row.id, "number": row.number, "name": row.name, "kind": row.kind, "active": row.active}


# --- the catalog read model ------------------------------------------------------------------------------


async def apply_working_group(session: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    """Keep the local read model of the catalog (fed by working_group.* events)."""
    assert isinstance(event, ev.WorkingGroupPublished | ev.WorkingGroupChanged)
    await repo.upsert_working_group(
        session,
        {
            "id": event.id,
            "title": event.title,
            "meetings": [m.model_dump(mode="json") for m in event.meetings],
            "catalog_version": event.catalog_version,
            "updated_at": meta.occurred_at or datetime.now(UTC),
        },
    )


# --- intake --------------------------------------------------------------------------------------------


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


# --- moderation ----------------------------------------------------------------------------------------


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


# --- the public ----------------------------------------------------------------------------------------


async def published_page(
    session: AsyncConnection,
    *,
    working_group_id: str | None,
    district_id: str | None,
    q: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> dict[str, Any]:
    rows = await repo.published_page(
        session,
        working_group_id=working_group_id,
        district_id=district_id,
        q=q,
        after=after,
        limit=limit + 1,
    )
    page, next_cursor = keyset_page(rows, limit, lambda r: (r.published_at, r.id))
    return {"items": [public_view(r) for r in page], "next_cursor": next_cursor}


async def published_proposal(session: AsyncConnection, proposal_id: uuid.UUID) -> dict[str, Any]:
    row = await repo.labelled_proposal(session, proposal_id)
    if row is None or not domain.is_public(row.status):
        raise domain.NotFound("there is no published proposal with this id")
    return public_view(row)


def public_view(row: Row[Any]) -> dict[str, Any]:
    return {**_content(row), "published_at": row.published_at, "outcome_at": row.outcome_at}


def _content(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "working_group": _working_group_ref(row),
        "district": _district_ref(row),
        "title": row.title,
        "body": row.body,
        "language": row.language,
        "status": row.status,
        "public_statement": row.public_statement,
        "merged_duplicates": row.merged_duplicates,
        "outcome": row.outcome,
        "outcome_statement": row.outcome_statement,
    }


# --- the author's private link -------------------------------------------------------------------------


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


# --- the council report -------------------------------------------------------------------------------


async def council_report(session: AsyncConnection) -> dict[str, Any]:
    return report.build_report(
        working_groups=await repo.list_working_groups(session),
        districts=await repo.list_districts(session, include_retired=True),
        counts=await repo.report_counts(session),
        published=await repo.published_for_report(session),
        generated_at=await repo.database_now(session),
    )


# --- staff audit and housekeeping ----------------------------------------------------------------------


async def audit(
    session: AsyncConnection, subject: str, action: str, target: str, details: dict[str, Any]
) -> None:
    await shared_audit.record(session, audit_log, subject, action, target, details)


async def forget_author(session: AsyncConnection, email: str) -> int:
    """Erasure on request (Art. 17): the author's name, address and private link go; their proposals
    stay, anonymous. Returns how many proposals held the address."""
    erased = await repo.forget_author_by_email(session, email)
    await repo.forget_outbox_rows_mentioning(session, email)
    return erased


async def forget_authors_after_retention(session: AsyncConnection, settings: ProposalsSettings) -> int:
    """Retention: authors' contact data goes ``author_retention_days`` after their proposal's story ended
    (outcome decided, or rejected, merged, withdrawn), or ``unfinished_author_retention_days`` after the
    last change of one whose story never ends (never moderated, abandoned in ``changes_requested``,
    published without an outcome). The proposals stay, anonymous."""
    now = await repo.database_now(session)
    forgotten = await repo.forget_authors_decided_before(
        session, now - timedelta(days=settings.author_retention_days)
    )
    forgotten += await repo.forget_authors_unfinished_before(
        session, now - timedelta(days=settings.unfinished_author_retention_days)
    )
    if forgotten:
        log.info("authors' contact data removed after the retention period", proposals=forgotten)
    return forgotten


async def forget_idempotency_keys(session: AsyncConnection, settings: ProposalsSettings) -> None:
    await idempotency.forget_keys(session, idempotency_keys, settings.idempotency_ttl_hours)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# --- helpers -------------------------------------------------------------------------------------------


def _state(row: Row[Any]) -> domain.ProposalState:
    return domain.ProposalState(
        status=row.status, version=row.version, outcome=row.outcome, revision=row.revision
    )


async def _labelled(session: AsyncConnection, proposal_id: uuid.UUID) -> Row[Any]:
    row = await repo.labelled_proposal(session, proposal_id)
    assert row is not None
    return row


async def _history(
    session: AsyncConnection,
    proposal_id: uuid.UUID,
    *,
    actor: str,
    action: str,
    before: domain.ProposalState | None,
    after: domain.ProposalState,
    subject: str | None = None,
    public_statement: str | None = None,
    internal_note: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await repo.append_history(
        session,
        {
            "proposal_id": proposal_id,
            "actor": actor,
            "subject": subject,
            "action": action,
            "from_status": before.status if before else None,
            "to_status": after.status,
            "version": after.version,
            "public_statement": public_statement,
            "internal_note": internal_note,
            "details": _jsonable(details or {}),
        },
    )


def _working_group_ref(row: Row[Any]) -> dict[str, str]:
    return {"id": row.working_group_id, "title": row.working_group_title}


def _district_ref(row: Row[Any]) -> dict[str, str] | None:
    return {"id": row.district_id, "name": row.district_name} if row.district_id else None


def _public_url(settings: ProposalsSettings, proposal_id: uuid.UUID) -> str:
    return f"{settings.public_url}/v1/proposals/{proposal_id}"


def _private_url(settings: ProposalsSettings, proposal_id: uuid.UUID) -> str:
    return f"{settings.public_url}/v1/proposals/mine?token={token_for(settings.token_secret, proposal_id)}"


def _event(
    cls: type[ev.IntegrationEvent],
    row: Row[Any],
    settings: ProposalsSettings,
    *,
    with_author: bool,
    **extra: Any,
) -> ev.IntegrationEvent:
    """A proposal event carrying what the notification service needs to mail the author."""
    author = None
    if with_author and row.author_email:
        author = ev.Recipient(email=row.author_email, name=row.author_name or "", language=row.language)
    return cls(
        proposal_id=row.id,
        title=row.title,
        working_group=ev.WorkingGroupInfo(id=row.working_group_id, title=row.working_group_title),
        district=ev.DistrictInfo(id=row.district_id, name=row.district_name) if row.district_id else None,
        author=author,
        public_url=_public_url(settings, row.id) if domain.is_public(row.status) else None,
        status_url=_private_url(settings, row.id) if author is not None else None,
        revision=row.revision,
        **extra,
    )


async def working_groups(session: AsyncConnection) -> list[dict[str, Any]]:
    """The working groups a proposal may be for (the catalog read model), for the public pages."""
    return [{"id": row.id, "title": row.title} for row in await repo.list_working_groups(session)]
