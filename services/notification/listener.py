"""Bounces in by SMTP: a small SMTP server (aiosmtpd) in the notification service, to which the city's mail
system forwards the mail sent to the bounce address (``NOTIFICATION_BOUNCE_LISTEN``).

Only recipients that are signed return paths of ours (``domain.delivery_of_bounce``) are accepted; anything
else gets 550 at RCPT, so the listener is no open door for mail. A mail larger than
``bounce_max_bytes`` gets 552. A port that cannot be bound is reported and tried again every few seconds. Each mail is handled in its own transaction before the answer to DATA: 250
once it is recorded, 451 when it could not be (the forwarding system tries again later), so no bounce is
lost. It runs as a worker of the runtime, reported as ``bounce-listener`` on ``/readyz`` and in metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notification.config import NotificationSettings
from services.notification.domain import delivery_of_bounce
from shared.observability import WorkerHealth, cancel_and_wait, get_logger, reraise_if_cancelled

log = get_logger(__name__)

WORKER = "bounce-listener"
# Handles one bounce mail (its bytes, its envelope recipients); returns the outcome.
Receive = Callable[[bytes, list[str]], Awaitable[str]]


def host_and_port(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"NOTIFICATION_BOUNCE_LISTEN must be host:port, not {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Handler:
    def __init__(self, listener: BounceListener) -> None:
        self.listener = listener

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        settings = self.listener.settings
        if delivery_of_bounce(address, settings.bounce_address, settings.address_hash_secret) is None:
            log.warning("bounce listener refused a recipient that is no return path of ours")
            return "550 5.1.1 No such bounce address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        return await self.listener.receive_mail(raw, list(envelope.rcpt_tos))


class BounceListener:
    def __init__(self, settings: NotificationSettings, receive: Receive, health: WorkerHealth | None = None):
        self.settings = settings
        self.receive = receive
        self.health = health
        self.host, self.port = host_and_port(settings.bounce_listen)
        self._server: asyncio.Server | None = None
        self._retry: asyncio.Task[None] | None = None
        self.bind_retry_seconds = 5.0

    async def start(self) -> None:
        if self.health is not None:
            self.health.register(WORKER)
        if not await self._listen():
            # The port is taken (an old process still ending?): reported, tried again, the service runs on.
            self._retry = asyncio.create_task(self._listen_until_it_works(), name="bounce-listener-bind")

    async def _listen_until_it_works(self) -> None:
        while True:
            await asyncio.sleep(self.bind_retry_seconds)
            if await self._listen():
                return

    async def _listen(self) -> bool:
        loop = asyncio.get_running_loop()
        hostname = self.settings.bounce_address.rpartition("@")[2] or "mitwirkung"
        handler = _Handler(self)

        def protocol() -> SMTP:
            return SMTP(
                handler,
                data_size_limit=self.settings.bounce_max_bytes,
                hostname=hostname,
                ident="Mitwirkung bounces",
                timeout=self.settings.bounce_listen_timeout,
                loop=loop,
            )

        try:
            self._server = await loop.create_server(protocol, self.host, self.port)
        except OSError as exc:
            log.error("bounce listener could not listen", listen=self.settings.bounce_listen, error=repr(exc))
            if self.health is not None:
                self.health.failed(WORKER, exc)
            return False
        if self.health is not None:
            self.health.ok(WORKER)
        log.info("bounce listener listening", listen=self.settings.bounce_listen)
        return True

    async def receive_mail(self, raw: bytes, recipients: list[str]) -> str:
        try:
            outcome = await self.receive(raw, recipients)
        except Exception as exc:
            reraise_if_cancelled(exc)
            log.warning("bounce mail could not be recorded; the sender is asked to retry", error=repr(exc))
            if self.health is not None:
                self.health.failed(WORKER, exc)
            return "451 4.3.0 Could not record the mail now, try again later"
        if self.health is not None:
            self.health.ok(WORKER)
        return f"250 OK ({outcome})"

    async def stop(self) -> None:
        if self._retry is not None:
            await cancel_and_wait(self._retry)
            self._retry = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
