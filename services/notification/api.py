"""Staff API of the notification service: the delivery log and template previews. Domain errors become
problem+json through ``DOMAIN_ERRORS`` (registered with the app)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from services.notification import domain, service
from shared.auth import require_role
from shared.http import DomainErrors
from shared.validation import NO_CONTROL_CHARACTERS

router = APIRouter(prefix="/v1", tags=["notification"])
Staff = require_role("staff")
# A rendered sample holds no personal data: moderators, whose statements go into mails, may look too.
AnyStaff = require_role("staff", "moderator")
Admin = require_role("admin")

DOMAIN_ERRORS: DomainErrors = {
    domain.NotFound: (404, "Not found"),
    domain.DomainError: (422, "Invalid request"),
}


class DeliveryOut(BaseModel):
    id: UUID
    event_id: str
    event_type: str
    template: str
    language: str
    recipient: str | None
    status: str
    attempts: int
    last_error: str | None
    message_id: str
    subject: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None


@router.get("/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    request: Request,
    user: Staff,
    recipient: Annotated[str | None, Query(max_length=254), NO_CONTROL_CHARACTERS] = None,
    event_id: Annotated[str | None, Query(max_length=100), NO_CONTROL_CHARACTERS] = None,
    status: Literal[
        "held", "pending", "sending", "sent", "retrying", "failed", "unknown", "bounced", "suppressed"
    ]
    | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[dict]:
    async with request.app.state.runtime.transaction() as conn:
        return await service.delivery_log(
            conn, user.subject, recipient=recipient, event_id=event_id, status=status, limit=limit
        )


@router.get("/templates/{name}/preview")
async def preview_template(
    name: str, request: Request, user: AnyStaff, language: str = Query(default="de", max_length=5)
) -> dict:
    dispatcher = request.app.state.dispatcher
    rendered = service.preview(dispatcher.renderer, name, language, dispatcher.footer())
    return {
        "template": name,
        "language": rendered.language,
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
    }


class SuppressionOut(BaseModel):
    suppressed: bool
    since: datetime | None = None
    reason: str | None = None


@router.get("/suppressions", response_model=SuppressionOut, response_model_exclude_none=True)
async def get_suppression(
    request: Request, user: Staff, address: str = Query(min_length=3, max_length=254)
) -> dict:
    """Whether mail to ``address`` is suppressed (an earlier mail bounced for good), since when and why.
    The list holds keyed hashes: it answers for an address one has, and names nobody."""
    runtime = request.app.state.runtime
    async with runtime.transaction() as conn:
        return await service.suppression_of(conn, user.subject, address, runtime.settings.address_hash_secret)


@router.delete("/suppressions/{address}")
async def delete_suppression(
    request: Request, user: Admin, address: str = Path(min_length=3, max_length=254)
) -> dict:
    """Mail may go to ``address`` again (the person corrected their mailbox): audited. Idempotent:
    ``lifted`` says whether it was on the list."""
    runtime = request.app.state.runtime
    async with runtime.transaction() as conn:
        lifted = await service.lift_suppression(
            conn, user.subject, address, runtime.settings.address_hash_secret
        )
    return {"suppressed": False, "lifted": lifted}


class BounceMailOut(BaseModel):
    id: UUID
    received_at: datetime
    source: str
    outcome: str
    delivery_id: UUID | None
    status: str | None
    diagnostic: str | None
    # The mail as received (only kept when it could not be read; ``token=`` values removed).
    text: str | None


@router.get("/bounce-mails", response_model=list[BounceMailOut])
async def list_bounce_mails(
    request: Request,
    user: Staff,
    outcome: Literal["permanent", "rejected", "temporary", "unparseable", "unknown_delivery", "not_ours"]
    | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[dict]:
    """The bounce mails received, newest first; ``outcome=unparseable``: those the service could not read,
    with their text, for staff to read. Audited."""
    async with request.app.state.runtime.transaction() as conn:
        return await service.bounce_mails(conn, user.subject, outcome, limit)
