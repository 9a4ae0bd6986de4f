"""Sends the mails recorded in the delivery log, and records what became of each.

The delivery log is the queue: a row is claimed (``FOR UPDATE SKIP LOCKED``, so replicas share the work)
by setting it to ``sending`` with a lease, then sent, then marked ``sent``/``retrying``/``failed``/
``unknown``. If the process dies between the relay's acceptance and the mark, the lease runs out and the
row becomes ``unknown``, to be sent again with the same Message-ID: the one residual window in which a
recipient may see a copy, recognisable by that Message-ID (see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notification.calendar import calendar_for
from services.notification.config import NotificationSettings
from services.notification.mail import build_message, mailbox, parse_mailbox
from services.notification.models import deliveries
from services.notification.rendering import TemplateRenderer
from services.notification.smtp import SendResult, SmtpPool
from shared.observability import get_logger

log = get_logger(__name__)

DUE_STATUSES = ("pending", "retrying", "unknown")


class Dispatcher:
    def __init__(
        self,
        settings: NotificationSettings,
        session_factory: async_sessionmaker[AsyncSession],
        renderer: TemplateRenderer,
        pool: SmtpPool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.renderer = renderer
        self.pool = pool
        self.clock = clock
        self.sender = parse_mailbox(settings.mail_from)
        self.reply_to = parse_mailbox(settings.mail_reply_to) if settings.mail_reply_to else None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def footer(self) -> dict[str, str]:
        s = self.settings
        return {
            "office_name": s.office_name,
            "office_address": s.office_address,
            "office_phone": s.office_phone,
            "office_email": s.office_email,
            "privacy_url": s.privacy_url,
        }

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="mail-dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pool.close()

    async def run(self) -> None:
        while True:
            try:
                handled = await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("mail dispatch failed", error=repr(exc))
                handled = 0
            if handled >= self.settings.sender_batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.sender_poll_interval)
            self._wake.clear()

    async def dispatch_once(self) -> int:
        rows = await self._claim()
        if not rows:
            return 0
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _claim(self) -> list[Row[Any]]:
        now = self.clock()
        lease = now + timedelta(seconds=self.settings.sending_lease_seconds)
        async with self.session_factory() as session, session.begin():
            # A lease that ran out means a sender died mid-send: whether the relay took the mail is unknown.
            await session.execute(
                update(deliveries)
                .where(deliveries.c.status == "sending", deliveries.c.lease_until < now)
                .values(status="unknown", last_error="sender stopped while sending", updated_at=now)
            )
            due = (
                select(deliveries.c.id)
                .where(deliveries.c.status.in_(DUE_STATUSES), deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.next_attempt_at)
                .limit(self.settings.sender_batch_size)
                .with_for_update(skip_locked=True)
            )
            claimed = await session.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(due.scalar_subquery()))
                .values(
                    status="sending", lease_until=lease, attempts=deliveries.c.attempts + 1, updated_at=now
                )
                .returning(deliveries)
            )
            return list(claimed.all())

    async def _deliver(self, row: Row[Any]) -> None:
        try:
            message = self.compose(row)
        except Exception as exc:  # a template that cannot render will not render on retry either
            log.error("mail could not be composed", delivery_id=str(row.id), error=repr(exc))
            await self._record(row, SendResult("failed", f"compose: {exc!r}"[:2000]), subject=None)
            return
        result = await self.pool.send(message, self.sender.addr_spec, row.recipient_email)
        await self._record(row, result, subject=str(message["Subject"]))

    def compose(self, row: Row[Any]):
        context = row.context or {}
        rendered = self.renderer.render(row.template, row.language, context, self.footer())
        calendar = calendar_for(row.template, context, row.recipient_email)
        return build_message(
            rendered=rendered,
            sender=self.sender,
            reply_to=self.reply_to,
            recipient=mailbox(row.recipient_name or "", row.recipient_email),
            message_id=row.message_id,
            date=self.clock(),
            calendar=calendar.data if calendar else None,
            calendar_method=calendar.method if calendar else "PUBLISH",
        )

    async def _record(self, row: Row[Any], result: SendResult, subject: str | None) -> None:
        now = self.clock()
        values: dict[str, Any] = {"updated_at": now, "lease_until": None}
        if subject is not None:
            values["subject"] = subject
        if result.outcome == "sent":
            values.update(status="sent", sent_at=now, last_error=None)
        elif result.outcome == "failed":
            values.update(status="failed", last_error=result.detail)
        else:
            too_old = now - row.created_at > timedelta(hours=self.settings.max_age_hours)
            if too_old:
                values.update(
                    status="failed",
                    last_error=f"gave up after {self.settings.max_age_hours} h: {result.detail}",
                )
            else:
                values.update(
                    status="unknown" if result.outcome == "unknown" else "retrying",
                    last_error=result.detail,
                    next_attempt_at=now + timedelta(seconds=self.backoff(row.attempts)),
                )
        log.info(
            "mail attempt recorded",
            delivery_id=str(row.id),
            outcome=result.outcome,
            status=values["status"],
            attempt=row.attempts,
            detail=result.detail or None,
        )
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(deliveries)
                .where(and_(deliveries.c.id == row.id, or_(deliveries.c.status == "sending")))
                .values(**values)
            )

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter."""
        ceiling = min(
            self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** max(attempts - 1, 0)
        )
        return random.uniform(ceiling / 2, ceiling)
