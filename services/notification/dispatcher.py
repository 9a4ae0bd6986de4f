"""Sends the mails recorded in the delivery log, and records what became of each.

The delivery log is the queue: a row is claimed (``FOR UPDATE SKIP LOCKED``, so replicas share the work)
by setting it to ``sending`` with a lease and counting the attempt, then sent, then marked ``sent``/
``retrying``/``failed``/``unknown``. The attempt count is the claim's fencing token: a mark only lands on
the row under the same attempt, so a sender whose lease ran out cannot overwrite what a later claim did.
If the process dies between the relay's acceptance and the mark, the lease runs out and the row becomes
``unknown``, to be sent again with the same Message-ID: the one residual window in which a recipient may
see a copy, recognisable by that Message-ID (see the README). A connection lost after DATA is the same
case, decided at once.

Marks are written by group commit: whatever finished while one UPDATE was running goes into the next
one, so the window stays one database round trip wide while a busy sender writes one statement for many
mails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from tenacity import AsyncRetrying, stop_after_attempt, wait_fixed

from services.notification import repository as repo
from services.notification.calendar import calendar_for
from services.notification.config import NotificationSettings
from services.notification.domain import Mark, RetryPolicy, mark_for
from services.notification.mail import build_message, mailbox, parse_mailbox
from services.notification.rendering import TemplateRenderer
from services.notification.smtp import SendResult, SmtpPool
from shared.db import SessionFactory
from shared.observability import get_logger, reraise_if_cancelled
from shared.retry import log_before_retry

log = get_logger(__name__)

MARK_WRITE_ATTEMPTS = 3
MARK_WRITE_RETRY_DELAY = 0.5


@dataclass(frozen=True)
class ComposedMail:
    data: bytes
    subject: str
    recipient: str  # the envelope recipient: the checked address of the To header


class MarkWriter:
    """Group commit of marks: ``write`` returns once its mark is in the database."""

    def __init__(self, write: Callable[[list[Mark]], Awaitable[None]]) -> None:
        self._write = write
        # Each mark with the future its sender waits on; the future's result is the write's error, if any.
        self._pending: list[tuple[Mark, asyncio.Future[Exception | None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, mark: Mark) -> None:
        future: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self._pending.append((mark, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="mail-marks")
        # Shielded: a sender cancelled while waiting does not cancel the write of the others' marks.
        error = await asyncio.shield(future)
        if error is not None:
            raise error

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            error: Exception | None = None
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(MARK_WRITE_ATTEMPTS),
                    wait=wait_fixed(MARK_WRITE_RETRY_DELAY),
                    before_sleep=log_before_retry(log, "writing mail marks failed", count=len(batch)),
                    reraise=True,
                ):
                    with attempt:
                        await self._write([mark for mark, _ in batch])
            except Exception as exc:
                log.warning("writing mail marks failed for good", count=len(batch), error=repr(exc))
                error = exc
            for _, future in batch:
                if not future.done():
                    future.set_result(error)

    async def drain(self) -> None:
        """Wait until every mark handed in so far is written (or has finally failed)."""
        while self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)


class Dispatcher:
    def __init__(
        self,
        settings: NotificationSettings,
        session_factory: SessionFactory,
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
        self.marks = MarkWriter(self._write_marks)
        self._wake = asyncio.Event()
        # Completed claim-and-send passes: a pass that began after a row became final proves that
        # nothing more is sent for it (the tests wait for this instead of sleeping).
        self.passes = 0
        self.retry_policy = RetryPolicy(
            settings.retry_base_seconds, settings.retry_max_seconds, settings.max_age_hours
        )

    def footer(self) -> dict[str, str]:
        s = self.settings
        return {
            "office_name": s.office_name,
            "office_address": s.office_address,
            "office_phone": s.office_phone,
            "office_email": s.office_email,
            "privacy_url": s.privacy_url,
        }

    @property
    def claim_limit(self) -> int:
        # Claimed rows wait for the rate limit while their lease runs: never claim more than one
        # window's worth, or a lease could run out before its mail even started.
        s = self.settings
        limit = max(1, s.sender_batch_size)
        # And never more than the pool can surely send within half a lease, even if every send ran into
        # the SMTP timeout twice (connect, then data): a lease must not run out while its mail is sent.
        worst_case_per_mail = max(1.0, 2 * s.smtp_timeout)
        limit = min(
            limit, max(1, int(s.smtp_pool_size * (s.sending_lease_seconds / 2) / worst_case_per_mail))
        )
        if self.settings.rate_limit_per_minute > 0:
            limit = min(limit, self.settings.rate_limit_per_minute)
        return limit

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    handled = await self.dispatch_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reraise_if_cancelled(exc)
                    log.warning("mail dispatch failed", error=repr(exc))
                    handled = 0
                self.passes += 1
                if handled >= self.claim_limit:
                    continue
                with contextlib.suppress(TimeoutError):
                    # asyncio.timeout, not wait_for: see OutboxRelay.run (a swallowed cancellation).
                    async with asyncio.timeout(self.settings.sender_poll_interval):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            # Shutting down: what was sent is recorded, and the relay gets a QUIT.
            await self.marks.drain()
            await self.pool.close()

    async def dispatch_once(self) -> int:
        rows = await self._claim()
        if not rows:
            return 0
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _claim(self) -> list[Row[Any]]:
        now = self.clock()
        lease = now + timedelta(seconds=self.settings.sending_lease_seconds)
        async with self.session_factory() as conn, conn.begin():
            return await repo.claim_due(conn, now, lease, self.claim_limit)

    async def _deliver(self, row: Row[Any]) -> None:
        try:
            mail = self.compose(row)
        except Exception as exc:  # a template or address that fails now will fail on retry too
            log.error("mail could not be composed", delivery_id=str(row.id), error=repr(exc))
            await self._record(row, SendResult("failed", f"compose: {exc!r}"[:2000]), subject=None)
            return
        result = await self.pool.send(mail.data, self.sender.addr_spec, mail.recipient)
        await self._record(row, result, subject=mail.subject)

    def compose(self, row: Row[Any]) -> ComposedMail:
        context = row.context or {}
        recipient = mailbox(row.recipient_name or "", row.recipient_email or "")
        rendered = self.renderer.render(row.template, row.language, context, self.footer())
        calendar = calendar_for(row.template, context, row.recipient_email)
        message = build_message(
            rendered=rendered,
            sender=self.sender,
            reply_to=self.reply_to,
            recipient=recipient,
            message_id=row.message_id,
            date=self.clock(),
            calendar=calendar.data if calendar else None,
            calendar_method=calendar.method if calendar else "PUBLISH",
        )
        return ComposedMail(data=message.as_bytes(), subject=rendered.subject, recipient=recipient.addr_spec)

    async def _record(self, row: Row[Any], result: SendResult, subject: str | None) -> None:
        mark = mark_for(row, result.outcome, result.detail, subject, self.clock(), self.retry_policy)
        try:
            await self.marks.write(mark)
        except Exception as exc:
            # The row stays 'sending' until its lease runs out, then it is retried as 'unknown'.
            log.error(
                "mail attempt could not be recorded",
                delivery_id=str(row.id),
                outcome=result.outcome,
                error=repr(exc),
            )
            return
        log.info(
            "mail attempt recorded",
            delivery_id=str(row.id),
            outcome=result.outcome,
            status=mark.status,
            attempt=row.attempts,
            detail=result.detail or None,
        )

    async def _write_marks(self, marks: list[Mark]) -> None:
        async with self.session_factory() as conn, conn.begin():
            await repo.write_marks(conn, marks)
