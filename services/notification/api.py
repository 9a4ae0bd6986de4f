"""Staff API of the notification service: the delivery log and template previews. Domain errors become
problem+json through ``DOMAIN_ERRORS`` (registered with the app)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from services.notification import domain, service
from shared.auth import require_role
from shared.http import DomainErrors
from shared.validation import NO_CONTROL_CHARACTERS

router = APIRouter(prefix="/v1", tags=["notification"])
Staff = require_role("staff")
# A rendered sample holds no personal data: moderators, whose statements go into mails, may look too.
AnyStaff = require_role("staff", "moderator")

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
    status: Literal["pending", "sending", "sent", "retrying", "failed", "unknown"] | None = None,
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
