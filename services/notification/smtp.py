"""Talking to the city's mail relay: a small pool of reused connections, a rate limit, and an honest
classification of every answer into sent / retry / failed / unknown.

* connect, greeting, EHLO and login failures are the relay's trouble, not the mail's: ``retry``;
* a 4xx answer (including 421, after which the relay closes the connection): ``retry``;
* a 5xx answer to MAIL, RCPT or DATA: ``failed`` (to RCPT: ``recipient_refused``, a bounce at once);
* the connection lost or timed out after the message went out with DATA: ``unknown`` (the relay may have
  taken it; it is sent again later with the same Message-ID);
* the connection lost before DATA: ``retry``.
After a failed transaction on a connection that stays open, RSET is sent (or the next MAIL FROM gets 503).

A send that has not begun (waiting for a connection or for the rate limit) when the pool is closing is
handed back (``handed_back``): nothing reached the relay, and the row is due again for whoever runs next.
The rate limit holds for the whole service: besides the in-process limiter (which keeps this process's
waiters in order), every send takes a slot of :class:`SharedBudget`, kept in Postgres and judged by its
clock, so N replicas together send at most ``NOTIFICATION_RATE_LIMIT_PER_MINUTE`` mails per window.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from typing import Literal, TypeVar

import aiosmtplib
from sqlalchemy import delete, func, insert, select, text, update

from services.notification.config import NotificationSettings
from services.notification.domain import Outcome
from services.notification.models import send_budget
from shared.db import SessionFactory
from shared.observability import get_logger, reraise_if_cancelled

log = get_logger(__name__)

T = TypeVar("T")
Stage = Literal["connect", "transaction", "rcpt", "data"]

# After 421 the relay closes the connection (RFC 5321 3.8): no RSET, reconnect next time.
SERVICE_CLOSING = 421
QUIT_TIMEOUT = 2.0


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""
    # A 5xx answer to RCPT: the relay refused the recipient (counts as a bounce: the address is suppressed).
    recipient_refused: bool = False


HANDED_BACK = SendResult("handed_back", "the sender stopped before this mail was sent")


class Permit:
    """One slot of the rate limit, held by one send from before MAIL FROM until the relay has answered."""

    __slots__ = ("_limiter", "ended_at")

    def __init__(self, limiter: RateLimiter | None) -> None:
        self._limiter = limiter
        self.ended_at: float | None = None  # None while the send is in flight

    def done(self) -> None:
        """The relay has seen this mail (whatever it answered): the slot frees one window from now."""
        if self._limiter is not None and self.ended_at is None:
            self.ended_at = self._limiter.now()
            self._limiter._changed()

    def cancel(self) -> None:
        """Nothing reached the relay (no connection): the slot frees at once."""
        if self._limiter is not None and self.ended_at is None:
            self._limiter._forget(self)


class RateLimiter:
    """At most ``per_minute`` mails in any 60-second window, as the relay counts them (per process).

    A send holds its slot from the moment it may begin (before MAIL FROM) until ``window`` seconds after
    it ended, so a slow connection cannot bunch mails up at the relay: for mails *i* and *i + N* in order
    of their permits, the start of the later one is at least one window after the end of the earlier one,
    so no 60 s window at the relay sees more than N of them. The clock and sleep are injectable for tests.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        window: float = 60.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._slots: list[Permit] = []
        self._lock = asyncio.Lock()  # waiters are served in order
        self._slot_changed = asyncio.Event()

    def now(self) -> float:
        return self._clock() if self._clock else time.monotonic()

    async def _wait(self, seconds: float) -> None:
        await (self._sleep or asyncio.sleep)(seconds)

    def _changed(self) -> None:
        self._slot_changed.set()

    def _forget(self, permit: Permit) -> None:
        with contextlib.suppress(ValueError):
            self._slots.remove(permit)
        self._changed()

    async def acquire(self) -> Permit:
        if self.per_minute <= 0:
            return Permit(None)
        async with self._lock:
            while True:
                now = self.now()
                self._slots = [p for p in self._slots if p.ended_at is None or now - p.ended_at < self.window]
                if len(self._slots) < self.per_minute:
                    permit = Permit(self)
                    self._slots.append(permit)
                    return permit
                ended = [p.ended_at for p in self._slots if p.ended_at is not None]
                self._slot_changed.clear()
                if ended:
                    # Early wake-ups are harmless: the loop checks again.
                    await self._wait(min(ended) + self.window - now)
                else:
                    # Every slot is in flight: wait until one of them ends or is cancelled.
                    await self._slot_changed.wait()


class SharedBudget:
    """The rate limit's slots in Postgres, shared by every replica of the service.

    Taking a slot is one short transaction under an advisory lock (replicas queue there, not in a loop of
    conflicts): drop slots that freed, count the rest, insert one if there is room. A slot frees one window
    after the relay answered (``release``), at once if nothing reached the relay (``forget``), and at
    ``expires_at`` if its process died in flight.
    """

    LOCK_KEY = 0x6D770001  # pg_advisory_xact_lock key of the budget

    def __init__(
        self, session_factory: SessionFactory, per_minute: int, window: float, in_flight_limit: float
    ) -> None:
        self.session_factory = session_factory
        self.per_minute = per_minute
        self.window = timedelta(seconds=window)
        self.in_flight_limit = timedelta(seconds=in_flight_limit)

    async def try_take(self) -> tuple[int | None, float]:
        """A slot id, or None and the seconds until one may free."""
        frees_at = func.coalesce(send_budget.c.ended_at + self.window, send_budget.c.expires_at)
        async with self.session_factory() as session, session.begin():
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.LOCK_KEY})
            await session.execute(delete(send_budget).where(frees_at <= func.clock_timestamp()))
            used, next_free = (
                await session.execute(
                    select(
                        func.count(),
                        func.extract("epoch", func.min(frees_at) - func.clock_timestamp()),
                    ).select_from(send_budget)
                )
            ).one()
            if used < self.per_minute:
                slot = await session.scalar(
                    insert(send_budget)
                    .values(expires_at=func.clock_timestamp() + self.in_flight_limit)
                    .returning(send_budget.c.id)
                )
                return int(slot), 0.0
            return None, max(0.05, float(next_free or 0.05))

    async def take(self, closing: asyncio.Event) -> int | None:
        """Wait for a slot; None if the pool began closing meanwhile."""
        while not closing.is_set():
            slot, wait = await self.try_take()
            if slot is not None:
                return slot
            # Another replica may free a slot early (forget): look again after at most a second.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, 1.0)):
                    await closing.wait()
        return None

    async def release(self, slot: int) -> None:
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(send_budget).where(send_budget.c.id == slot).values(ended_at=func.clock_timestamp())
            )

    async def forget(self, slot: int) -> None:
        async with self.session_factory() as session, session.begin():
            await session.execute(delete(send_budget).where(send_budget.c.id == slot))


def relay_tls_context(settings: NotificationSettings) -> ssl.SSLContext:
    """TLS towards the relay: the certificate chain and the host name always verified, against
    ``smtp_ca_file`` (the city's CA) or the system's CAs; our client certificate if one is configured.
    A file that cannot be read fails here, when the sender starts, not at the first mail."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.smtp_ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.smtp_client_cert:
        context.load_cert_chain(settings.smtp_client_cert, settings.smtp_client_key or None)
    return context


class SmtpPool:
    def __init__(self, settings: NotificationSettings, session_factory: SessionFactory | None = None) -> None:
        self.settings = settings
        self._tls_context = relay_tls_context(settings) if settings.smtp_tls != "none" else None
        self._clients = [self._new_client() for _ in range(max(1, settings.smtp_pool_size))]
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        for client in self._clients:
            self._idle.put_nowait(client)
        self.limiter = RateLimiter(settings.rate_limit_per_minute, window=settings.rate_limit_window_seconds)
        self.budget: SharedBudget | None = None
        if session_factory is not None and settings.rate_limit_per_minute > 0:
            self.budget = SharedBudget(
                session_factory,
                settings.rate_limit_per_minute,
                settings.rate_limit_window_seconds,
                # A send lasts at most connect + transaction + data timeouts; a dead process's slot frees
                # after that (and one window), never sooner.
                in_flight_limit=3 * settings.smtp_timeout + settings.rate_limit_window_seconds,
            )
        # Set when the service stops: sends that have not begun are handed back.
        self.closing = asyncio.Event()

    async def _unless_closing(self, waiting: Awaitable[T]) -> T | None:
        """``waiting``'s result, or None if the pool begins closing first."""
        task = asyncio.ensure_future(waiting)
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            result = await task
            return result  # it finished while being cancelled: the caller must not lose it
        return None

    @property
    def size(self) -> int:
        return len(self._clients)

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_tls == "tls",
            # aiosmtplib upgrades opportunistically when start_tls is None: 'starttls' must mean required
            # and 'none' must mean never (the relay's certificate may not even be checkable).
            start_tls=s.smtp_tls == "starttls",
            tls_context=self._tls_context,
            timeout=s.smtp_timeout,
        )

    async def _ensure_connected(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            return
        try:
            # Never pass start_tls here: that would override the client's setting.
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            s = self.settings
            if s.smtp_username:
                await client.login(s.smtp_username, s.smtp_password)
        except BaseException:
            # Half set-up (greeted but not logged in): start afresh next time.
            self._drop(client)
            raise

    async def send(
        self,
        message: bytes | Message,
        sender: str,
        recipient: str,
        still_ours: Callable[[], Awaitable[bool]] | None = None,
    ) -> SendResult:
        """Send one mail. ``still_ours`` is asked right before the relay is contacted, after any wait for
        a connection or the rate limit: False (the claim was lost meanwhile) hands the mail back unsent."""
        data = message if isinstance(message, bytes) else message.as_bytes()
        if self.closing.is_set():
            return HANDED_BACK
        client = (
            self._idle.get_nowait()
            if not self._idle.empty()
            else await self._unless_closing(self._idle.get())
        )
        if client is None:
            return HANDED_BACK
        try:
            return await self._send_on(client, data, sender, recipient, still_ours)
        finally:
            self._idle.put_nowait(client)

    async def _send_on(
        self,
        client: aiosmtplib.SMTP,
        data: bytes,
        sender: str,
        recipient: str,
        still_ours: Callable[[], Awaitable[bool]] | None = None,
    ) -> SendResult:
        if self.limiter.per_minute > 0:
            permit = await self._unless_closing(self.limiter.acquire())
            if permit is None:
                return HANDED_BACK
        else:
            permit = Permit(None)
        slot: int | None = None
        if self.budget is not None:
            try:
                slot = await self.budget.take(self.closing)
            except Exception as exc:  # the database is away: nothing was sent, try again later
                reraise_if_cancelled(exc)
                permit.cancel()
                return SendResult("retry", f"rate limit budget unavailable: {exc!r}"[:500])
            if slot is None:
                permit.cancel()
                return HANDED_BACK
        if self.closing.is_set():
            permit.cancel()
            await self._give_back(slot, reached_relay=False)
            return HANDED_BACK
        if still_ours is not None:
            try:
                ours = await still_ours()
            except Exception as exc:
                reraise_if_cancelled(exc)
                ours = False
            if not ours:
                permit.cancel()
                await self._give_back(slot, reached_relay=False)
                return SendResult("handed_back", "the claim ran out while waiting; not sent")
        stage: Stage = "connect"
        try:
            await self._ensure_connected(client)
            stage = "transaction"
            await client.mail(sender)
            stage = "rcpt"
            await client.rcpt(recipient)
            stage = "data"
            await client.data(data)
            return SendResult("sent")
        except aiosmtplib.SMTPResponseException as exc:
            detail = f"{exc.code} {exc.message}"
            if stage == "connect":
                return SendResult("retry", f"relay refused the session: {detail}")
            if exc.code == SERVICE_CLOSING:
                self._drop(client)
            else:
                await self._reset(client)
            if 500 <= exc.code < 600:
                return SendResult("failed", detail, recipient_refused=stage == "rcpt")
            return SendResult("retry", detail)
        except Exception as exc:  # disconnects, timeouts, OSError, anything unexpected
            self._drop(client)
            detail = f"{type(exc).__name__}: {exc}"
            if stage == "data":
                # The relay may or may not have taken it. Retrying with the same Message-ID lets the
                # receiving side recognise a copy.
                return SendResult("unknown", detail)
            return SendResult("retry", detail)
        finally:
            if stage == "connect":
                permit.cancel()
            else:
                permit.done()
            await self._give_back(slot, reached_relay=stage != "connect")

    async def _give_back(self, slot: int | None, *, reached_relay: bool) -> None:
        if slot is None or self.budget is None:
            return
        try:
            async with asyncio.timeout(5):
                if reached_relay:
                    await self.budget.release(slot)
                else:
                    await self.budget.forget(slot)
        except Exception as exc:  # the slot frees at its expiry instead: later, never sooner
            reraise_if_cancelled(exc)
            log.warning("rate limit slot not returned", slot=slot, error=repr(exc))

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        # After a failed transaction the next MAIL FROM would get 503 without RSET.
        try:
            if client.is_connected:
                await client.rset()
        except Exception:
            self._drop(client)

    def _drop(self, client: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(Exception):
            client.close()

    async def close(self) -> None:
        """QUIT the idle connections (briefly: a relay that does not answer is simply cut off)."""
        for client in self._clients:
            if client.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.quit(), QUIT_TIMEOUT)
                self._drop(client)
