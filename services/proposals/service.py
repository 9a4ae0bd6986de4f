"""Use cases of the proposals service. Each runs inside the caller's unit of work and never commits:
load, apply the domain rule, store, append the history, stage the event in the outbox.

This module holds districts, the catalog read model, the council report, audit, housekeeping and the
helpers the capabilities share; the capabilities themselves are ``public_service`` (reading),
``author_service`` (intake and the private link) and ``moderation_service`` (decisions, outcomes, queue)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import domain, open_data, report
from services.proposals import repository as repo
from services.proposals.config import ProposalsSettings
from services.proposals.districts import load_districts
from services.proposals.models import audit_log, idempotency_keys
from shared import audit as shared_audit
from shared import events as ev
from shared import idempotency
from shared.inbox import EventMeta
from shared.observability import get_logger
from shared.tokens import token_for

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


# --- shared by the public, author and moderation use cases -----------------------------------------------


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


# --- the council report -------------------------------------------------------------------------------


async def council_report(session: AsyncConnection) -> dict[str, Any]:
    return report.build_report(
        working_groups=await repo.list_working_groups(session),
        districts=await repo.list_districts(session, include_retired=True),
        counts=await repo.report_counts(session),
        published=await repo.published_for_report(session),
        generated_at=await repo.database_now(session),
        measures=await open_data.dataset(session, "measures"),
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
