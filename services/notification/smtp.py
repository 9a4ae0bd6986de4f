"""Talking to the city's mail relay: a small pool of reused connections, a rate limit, and an honest
classification of every answer into sent / retry / failed / unknown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

from services.notification.config import NotificationSettings
from shared.observability import get_logger

log = get_logger(__name__)

Outcome = Literal["sent", "retry", "failed", "unknown"]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""


class RateLimiter:
    """At most ``per_minute`` sends in any sliding 60-second window (per process)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.per_minute <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._sent and now - self._sent[0] >= 60.0:
                    self._sent.popleft()
                if len(self._sent) < self.per_minute:
                    self._sent.append(now)
                    return
                await asyncio.sleep(60.0 - (now - self._sent[0]) + 0.01)


class SmtpPool:
    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        for _ in range(max(1, settings.smtp_pool_size)):
            self._idle.put_nowait(self._new_client())
        self.limiter = RateLimiter(settings.rate_limit_per_minute)

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_tls == "tls",
            # STARTTLS is opportunistic in aiosmtplib unless told: 'starttls' must mean required.
            start_tls=True if s.smtp_tls == "starttls" else False,
            timeout=s.smtp_timeout,
        )

    async def _ensure_connected(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            return
        await client.connect()
        s = self.settings
        if s.smtp_username:
            await client.login(s.smtp_username, s.smtp_password)

    async def send(self, message: EmailMessage, sender: str, recipient: str) -> SendResult:
        await self.limiter.acquire()
        client = await self._idle.get()
        try:
            return await self._send_on(client, message, sender, recipient)
        finally:
            self._idle.put_nowait(client)

    async def _send_on(
        self, client: aiosmtplib.SMTP, message: EmailMessage, sender: str, recipient: str
    ) -> SendResult:
        data_sent = False
        try:
            await self._ensure_connected(client)
            await client.mail(sender)
            await client.rcpt(recipient)
            data_sent = True
            await client.data(message.as_bytes())
            return SendResult("sent")
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            if 400 <= exc.code < 500:
                return SendResult("retry", f"{exc.code} {exc.message}")
            return SendResult("failed", f"{exc.code} {exc.message}")
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            self._drop(client)
            if data_sent:
                # The relay may or may not have taken it. Retrying with the same Message-ID lets the
                # receiving side recognise a copy.
                return SendResult("unknown", f"{type(exc).__name__}: {exc}")
            return SendResult("retry", f"{type(exc).__name__}: {exc}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._drop(client)
            return SendResult("retry", f"{type(exc).__name__}: {exc}")

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
        while not self._idle.empty():
            client = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                if client.is_connected:
                    await client.quit()
