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
mails. A mark that cannot be written (the database is away) is kept and written again, with backoff,
until it lands: giving up would turn a mail the relay took into a copy later.

Leases are set and judged by the database's clock (see ``repository.claim_due``).

Stopping is graceful (``stop``): no new claims; sends that have not begun (waiting for a connection or
the rate limit) are handed back at once, their rows due again as they were; sends under way finish and
their marks are written, within ``shutdown_grace_seconds``. Only a stop that overruns the grace period
(or a killed process) leaves a row to its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never

from services.notification import repository as repo
from services.notification import service
from services.notification.calendar import calendar_for, check_in_image
from services.notification.config import NotificationSettings
from services.notification.dkim_signing import DkimSigner
from services.notification.domain import (
    VERP_TAG_LENGTH,
    Mark,
    RetryPolicy,
    bounce_sender,
    mark_for,
    refused_address_status,
    unsubscribe_url_of,
)
from services.notification.mail import build_message, mailbox, parse_mailbox
from services.notification.rendering import TemplateRenderer
from services.notification.smtp import SendResult, SmtpPool
from shared.addresses import normalised
from shared.db import DatabaseSignal, SessionFactory
from shared.observability import (
    MAIL_ATTEMPTS,
    MAIL_BOUNCES,
    WorkerHealth,
    cancel_and_wait,
    get_logger,
    reraise_if_cancelled,
)
from shared.retry import log_before_retry, wait_exponential_capped

log = get_logger(__name__)

MARK_WRITE_FIRST_RETRY_DELAY = 0.2
# How often a sender looks for claims whose lease ran out (a sender died mid-send).
LEASE_CHECK_INTERVAL = 1.0
WORKER = "mail-sender"
# The NOTIFY channel on which an ingest process tells the senders that mails were recorded.
DUE_CHANNEL = "notification_mail_due"


@dataclass(frozen=True)
class ComposedMail:
    data: bytes
    subject: str
    recipient: str  # the envelope recipient: the checked address of the To header


class MarkWriter:
    """Group commit of marks: ``write`` returns once its mark is in the database. A failed write is
    retried, with backoff up to ``max_delay`` seconds, until it succeeds; marks that arrive meanwhile
    join the next write."""

    def __init__(self, write: Callable[[list[Mark]], Awaitable[None]], max_delay: float = 5.0) -> None:
        self._write = write
        self.max_delay = max_delay
        # Each mark with the future its sender waits on.
        self._pending: list[tuple[Mark, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.failing = False

    async def write(self, mark: Mark) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((mark, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="mail-marks")
        # Shielded: a sender cancelled while waiting does not cancel the write of the others' marks.
        await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._pending:
            try:
                written = await self._write_pending()
            except Exception as exc:
                reraise_if_cancelled(exc)
                self.failing = True
                # Written again, with backoff, until it lands (tenacity only then: it costs as much as
                # the write itself).
                async for attempt in AsyncRetrying(
                    stop=stop_never,
                    retry=retry_if_exception_type(Exception),
                    wait=wait_exponential_capped(MARK_WRITE_FIRST_RETRY_DELAY, self.max_delay),
                    before_sleep=log_before_retry(log, "writing mail marks failed; keeping them"),
                ):
                    with attempt:
                        written = await self._write_pending()
                self.failing = False
            for _, future in written:
                if not future.done():
                    future.set_result(None)

    async def _write_pending(self) -> list[tuple[Mark, asyncio.Future[None]]]:
        """Write every mark waiting now (whatever arrived while the last write ran, or failed, joins);
        if the write fails, or is cancelled, they are kept for the next try (or ``abandon``)."""
        batch, self._pending = self._pending, []
        try:
            await self._write([mark for mark, _ in batch])
        except BaseException:
            self._pending = batch + self._pending
            raise
        return batch

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Wait until every mark handed in so far is written."""
        while self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)

    async def abandon(self) -> None:
        """Stop trying (a stop past its grace period): the rows' leases decide what happens to them."""
        if self._task is not None:
            await cancel_and_wait(self._task)
        for mark, future in self._pending:
            log.error("mail mark not written before stopping", delivery_id=str(mark.id), status=mark.status)
            if not future.done():
                future.cancel()
        self._pending = []


class Dispatcher:
    def __init__(
        self,
        settings: NotificationSettings,
        session_factory: SessionFactory,
        renderer: TemplateRenderer,
        pool: SmtpPool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        health: WorkerHealth | None = None,
        signal: DatabaseSignal | None = None,
    ) -> None:
        self.settings = settings
        # A sender in a process of its own is woken by the ingest processes over this (and polls); its
        # owner (the runtime) closes it.
        self.signal = signal
        self.session_factory = session_factory
        self.renderer = renderer
        self.pool = pool
        self.clock = clock
        self.health = health
        self.sender = parse_mailbox(settings.mail_from)
        self.bounce_address = (
            mailbox("", settings.bounce_address).addr_spec if settings.bounce_address else ""
        )
        if len(self.bounce_address.partition("@")[0]) + VERP_TAG_LENGTH > 64:
            raise ValueError("NOTIFICATION_BOUNCE_ADDRESS: its local part leaves no room for the tag")
        self.reply_to = parse_mailbox(settings.mail_reply_to) if settings.mail_reply_to else None
        self.dkim = DkimSigner.from_settings(settings)
        self.marks = MarkWriter(self._write_marks, settings.mark_retry_max_seconds)
        self._wake = asyncio.Event()
        # Set whenever a send under way finishes.
        self._finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_backlog = 0.0
        self._leases_checked_at = float("-inf")
        # The send under way for each recipient (lower-case address): the next one waits for it.
        self._last_send: dict[str, asyncio.Task[None]] = {}
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

    async def start(self) -> None:
        self._stopping = False
        self.pool.closing.clear()
        if self.health is not None:
            self.health.register(WORKER)
        self._task = asyncio.create_task(self.run(), name="mail-dispatcher")

    async def stop(self) -> None:
        """Claim nothing more, hand back what has not begun, finish what has, write every mark: within
        ``shutdown_grace_seconds``; past it, cancel (the leases then decide)."""
        self._stopping = True
        self.pool.closing.set()
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_seconds
        if self._task is not None:
            try:
                async with asyncio.timeout(self.settings.shutdown_grace_seconds):
                    await asyncio.shield(self._task)
            except TimeoutError:
                log.error("mail sender did not finish within the grace period; cancelling")
            except Exception as exc:
                log.warning("mail sender ended with an error", error=repr(exc))
            if not self._task.done():
                await cancel_and_wait(self._task)
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                await self.marks.drain()
        except TimeoutError:
            await self.marks.abandon()
        await self.pool.close()

    async def _report_health(self) -> None:
        if self.health is None:
            return
        if self.marks.failing:
            self.health.failed(WORKER, f"{self.marks.pending} mail marks waiting for the database")
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_backlog < 1.0:
            self.health.ok(WORKER)
            return
        self._last_backlog = loop.time()
        async with self.session_factory() as conn:
            backlog = await repo.due_count(conn)
        self.health.ok(WORKER, backlog=backlog)

    async def run(self) -> None:
        """Keep up to ``claim_limit`` mails claimed and under way: as sends finish, more rows are claimed
        (in chunks of at least half the limit), so the connections never wait for a whole batch to end
        and its marks to be written. ``passes`` counts the times the sender caught up: nothing under way
        and no more rows due."""
        in_flight: set[asyncio.Task[None]] = set()
        try:
            if self.signal is not None:
                await self.signal.listen(self.wake)
            while not self._stopping:
                room = self.claim_limit - len(in_flight)
                if in_flight and room < max(1, self.claim_limit // 2):
                    await self._until_one_finishes()
                    continue
                try:
                    rows = await self._claim(room)
                    await self._report_health()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reraise_if_cancelled(exc)
                    log.warning("mail dispatch failed", error=repr(exc))
                    if self.health is not None:
                        self.health.failed(WORKER, exc)
                    rows = []
                for row in rows:
                    in_flight.add(self._start(row, in_flight))
                if self._stopping:
                    break
                if len(rows) == room:
                    continue  # more may be due: claim again as soon as there is room
                if in_flight:
                    await self._until_one_finishes()
                    continue
                self.passes += 1
                if self.signal is not None:
                    await self.signal.listen(self.wake)  # again, if the database was away
                with contextlib.suppress(TimeoutError):
                    # asyncio.timeout, not wait_for: see OutboxRelay.run (a swallowed cancellation).
                    async with asyncio.timeout(self.settings.sender_poll_interval):
                        await self._wake.wait()
                self._wake.clear()
        except asyncio.CancelledError:
            # A stop past its grace period: what is under way is abandoned too (the leases decide).
            for task in in_flight:
                task.cancel()
            raise
        finally:
            # Shutting down: sends under way finish (those not begun are handed back, the pool is
            # closing), what was sent is recorded, and the relay gets a QUIT.
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            await self.marks.drain()
            await self.pool.close()

    async def _until_one_finishes(self) -> None:
        """Until a send under way finishes, or the dispatcher is woken (to stop, or new rows are due). One
        event for all sends, not a callback on each of them per wait."""
        if not self._finished.is_set() and not self._wake.is_set():
            waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._finished.wait())}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        self._finished.clear()
        self._wake.clear()

    async def dispatch_once(self) -> int:
        """One claim and its sends, to the end (the tests drive a sender by hand with it)."""
        if self._stopping:
            return 0
        rows = await self._claim(self.claim_limit)
        if not rows:
            return 0
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    def _start(self, row: Any, in_flight: set[asyncio.Task[None]]) -> asyncio.Task[None]:
        """Send ``row``; after the mail to the same recipient that is under way, if any, so that one
        person's mails arrive in the order they were recorded (a receipt before the decision on it)."""
        key = normalised(row.recipient_email or "")
        before = self._last_send.get(key)
        task = asyncio.create_task(self._deliver_logged(row, before))
        self._last_send[key] = task

        def finished(done: asyncio.Task[None]) -> None:
            in_flight.discard(done)
            self._finished.set()
            if self._last_send.get(key) is done:
                del self._last_send[key]

        task.add_done_callback(finished)
        return task

    async def _deliver_logged(self, row: Row[Any], after: asyncio.Task[None] | None = None) -> None:
        try:
            if after is not None:
                await asyncio.wait({after})
            await self._deliver(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the row's lease decides what becomes of it
            log.error("mail delivery failed unexpectedly", delivery_id=str(row.id), error=repr(exc))

    async def _claim(self, limit: int) -> list[Any]:
        # Leases run for minutes: looking for expired ones once a second is enough, and a busy sender's
        # claims are then one statement each instead of a transaction of two.
        now = asyncio.get_running_loop().time()
        expire = now - self._leases_checked_at >= LEASE_CHECK_INTERVAL
        async with self.session_factory() as conn:
            rows = await repo.claim_due(conn, self.settings.sending_lease_seconds, limit, expire)
        if expire:
            self._leases_checked_at = now
        return rows

    async def _deliver(self, row: Row[Any]) -> None:
        try:
            mail = self.compose(row)
        except Exception as exc:  # a template or address that fails now will fail on retry too
            log.error("mail could not be composed", delivery_id=str(row.id), error=repr(exc))
            await self._record(row, SendResult("failed", f"compose: {exc!r}"[:2000]), subject=None)
            return
        result = await self.pool.send(
            mail.data,
            self.envelope_sender(row.id),
            mail.recipient,
            # Rate-limited sends may wait longer than their lease (the budget is shared by all replicas):
            # renew the claim right before sending, or hand the mail back if another sender has it now.
            still_ours=(lambda: self._renew(row)) if self.pool.budget is not None else None,
        )
        await self._record(row, result, subject=mail.subject)

    def envelope_sender(self, delivery_id: uuid.UUID) -> str:
        """Where bounces of this mail go: the signed return path of the delivery, or the sender."""
        if not self.bounce_address:
            return self.sender.addr_spec
        return bounce_sender(self.bounce_address, delivery_id, self.settings.address_hash_secret)

    def compose(self, row: Row[Any]) -> ComposedMail:
        context = row.context or {}
        recipient = mailbox(row.recipient_name or "", row.recipient_email or "")
        rendered = self.renderer.render(row.template, row.language, context, self.footer())
        calendar = calendar_for(row.template, context, rendered.language)
        message = build_message(
            rendered=rendered,
            sender=self.sender,
            reply_to=self.reply_to,
            recipient=recipient,
            message_id=row.message_id,
            date=self.clock(),
            calendar=calendar.data if calendar else None,
            calendar_method=calendar.method if calendar else "PUBLISH",
            unsubscribe_url=unsubscribe_url_of(row.template, context),
            image=check_in_image(row.template, context),
        )
        data = message.as_bytes()
        if self.dkim is not None:
            data = self.dkim.sign(data)
        return ComposedMail(data=data, subject=rendered.subject, recipient=recipient.addr_spec)

    async def _record(self, row: Row[Any], result: SendResult, subject: str | None) -> None:
        mark = mark_for(row, result.outcome, result.detail, subject, self.clock(), self.retry_policy)
        refused = refused_address_status(result.detail) if result.recipient_refused else None
        if refused is not None and await self._record_refusal(row, mark, refused, result.detail):
            MAIL_ATTEMPTS.labels("bounced").inc()
            log.info("relay refused the recipient", delivery_id=str(row.id), detail=result.detail)
            return
        try:
            await self.marks.write(mark)
        except asyncio.CancelledError:
            # Abandoned by a stop past its grace period: the row's lease decides (it becomes 'unknown').
            log.error("mail attempt not recorded before stopping", delivery_id=str(row.id))
            raise
        MAIL_ATTEMPTS.labels(mark.status).inc()
        # A sent mail is in the delivery log and the counter; a line each is for what went otherwise. The
        # relay's answer may quote the recipient: it is in the delivery row, and in the log only at DEBUG.
        (log.debug if mark.status == "sent" else log.info)(
            "mail attempt recorded",
            delivery_id=str(row.id),
            outcome=result.outcome,
            status=mark.status,
            attempt=row.attempts,
        )
        if result.detail:
            log.debug("relay answer", delivery_id=str(row.id), detail=result.detail)

    async def _record_refusal(self, row: Row[Any], mark: Mark, status: str, detail: str) -> bool:
        """The relay refused the recipient as gone (5.1.x/5.2.x to RCPT): the mark, the bounce (suppression,
        ``mail.bounced``) in one transaction. False if that failed: the plain mark is then written as for any
        failure."""
        try:
            async with self.session_factory() as conn, conn.begin():
                await repo.write_marks(conn, [mark])
                await service.bounce_delivery(
                    conn,
                    row.id,
                    status,
                    detail,
                    self.settings.address_hash_secret,
                    synchronous=True,
                )
        except Exception as exc:
            reraise_if_cancelled(exc)
            log.warning("relay refusal not recorded as a bounce", delivery_id=str(row.id), error=repr(exc))
            return False
        MAIL_BOUNCES.labels("permanent").inc()
        return True

    async def _renew(self, row: Row[Any]) -> bool:
        async with self.session_factory() as conn, conn.begin():
            return await repo.renew_lease(conn, row.id, row.attempts, self.settings.sending_lease_seconds)

    async def _write_marks(self, marks: list[Mark]) -> None:
        async with self.session_factory() as conn:
            await repo.write_marks(conn, marks)
