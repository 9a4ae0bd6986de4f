"""Staff API of the notification service: the delivery log and template previews."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from services.notification.models import DELIVERY_STATUSES, audit_log, deliveries
from shared import audit
from shared.auth import require_role
from shared.events import LANGUAGES
from shared.http import Problem

router = APIRouter(prefix="/v1", tags=["notification"])
Staff = require_role("staff")
# A rendered sample holds no personal data: moderators, whose statements go into mails, may look too.
AnyStaff = require_role("staff", "moderator")


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
    recipient: str | None = Query(default=None, max_length=254),
    event_id: str | None = Query(default=None, max_length=100),
    status: Literal["pending", "sending", "sent", "retrying", "failed", "unknown"] | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[dict]:
    assert status is None or status in DELIVERY_STATUSES
    query = select(deliveries).order_by(deliveries.c.created_at.desc()).limit(limit)
    if recipient:
        query = query.where(deliveries.c.recipient_email.ilike(recipient.strip()))
    if event_id:
        query = query.where(deliveries.c.event_id == event_id)
    if status:
        query = query.where(deliveries.c.status == status)
    async with request.app.state.runtime.transaction() as session:
        rows = (await session.execute(query)).all()
        # Reading the log is reading personal data: recorded, without the address searched for.
        await audit.record(
            session,
            audit_log,
            user.subject,
            "deliveries.read",
            "deliveries",
            {"recipient_filter": bool(recipient), "event_id": event_id, "status": status, "rows": len(rows)},
        )
    return [{**row._mapping, "recipient": row.recipient_email} for row in rows]


@router.get("/templates/{name}/preview")
async def preview_template(
    name: str, request: Request, user: AnyStaff, language: str = Query(default="de", max_length=5)
) -> dict:
    from services.notification.samples import sample_context

    if language not in LANGUAGES:
        raise Problem(422, "Invalid request", errors=[{"field": "language", "message": "unknown language"}])
    context = sample_context(name)
    if context is None:
        raise Problem(404, "Not found", f"There is no template named {name!r}.")
    dispatcher = request.app.state.dispatcher
    rendered = dispatcher.renderer.render(name, language, context, dispatcher.footer())
    return {
        "template": name,
        "language": rendered.language,
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
    }
