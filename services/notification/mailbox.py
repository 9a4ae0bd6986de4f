"""Bounces in by IMAP: the mailbox the bounce address delivers to (``NOTIFICATION_BOUNCE_IMAP_URL``), polled
with aioimaplib every ``bounce_imap_poll_interval`` seconds.

Each poll logs in, selects the mailbox and handles every mail that has not got the keyword
``MitwirkungProcessed``: its bytes are read without marking it seen (``BODY.PEEK[]``), handled in a
transaction of its own, and only then flagged ``MitwirkungProcessed`` and ``\\Seen``. A crash between the
two handles the mail again, which changes nothing (a bounce is applied once). Staff reading the mailbox do
not hide mails from the poller (it does not go by ``\\Seen``). A mailbox that cannot be reached, or refuses
the login, is the worker ``bounce-mailbox`` in error on ``/readyz`` and ``mitwirkung_worker_healthy`` 0,
tried again at the next poll; the service runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aioimaplib

from services.notification.config import NotificationSettings
from services.notification.listener import Receive
from shared.observability import WorkerHealth, cancel_and_wait, get_logger, reraise_if_cancelled

log = get_logger(__name__)

WORKER = "bounce-mailbox"
PROCESSED = "MitwirkungProcessed"
STOP_GRACE_SECONDS = 5.0


class MailboxError(Exception):
    pass


@dataclass(frozen=True)
class MailboxAddress:
    tls: bool
    host: str
    port: int
    user: str
    password: str
    mailbox: str

    @classmethod
    def parse(cls, url: str) -> MailboxAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise ValueError(
                "NOTIFICATION_BOUNCE_IMAP_URL must be imap[s]://user:password@host[:port]/mailbox"
            )
        tls = parts.scheme == "imaps"
        return cls(
            tls=tls,
            host=parts.hostname,
            port=parts.port or (993 if tls else 143),
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
        )


def _ok(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        detail = b" ".join(line for line in response.lines if isinstance(line, bytes)).decode(
            errors="replace"
        )
        raise MailboxError(f"{what}: {response.result} {detail}"[:300])
    return response


class BounceMailbox:
    def __init__(self, settings: NotificationSettings, receive: Receive, health: WorkerHealth | None = None):
        self.settings = settings
        self.address = MailboxAddress.parse(settings.bounce_imap_url)
        self.receive = receive
        self.health = health
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        # Completed polls (the tests wait for them instead of sleeping).
        self.polls = 0

    async def start(self) -> None:
        if self.health is not None:
            self.health.register(WORKER)
        self._task = asyncio.create_task(self.run(), name="bounce-mailbox")

    async def stop(self) -> None:
        """Let a poll under way finish its mail (a few seconds at most), then end."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_SECONDS):
                    await asyncio.shield(self._task)
            await cancel_and_wait(self._task)
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                handled = await self.poll_once()
                if self.health is not None:
                    self.health.ok(WORKER)
                if handled:
                    log.info("bounce mails handled from the mailbox", count=handled)
            except Exception as exc:
                reraise_if_cancelled(exc)
                log.warning("bounce mailbox could not be polled", error=repr(exc)[:300])
                if self.health is not None:
                    self.health.failed(WORKER, exc)
            self.polls += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.bounce_imap_poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    def _client(self) -> aioimaplib.IMAP4:
        a, timeout = self.address, self.settings.bounce_imap_timeout
        if not a.tls:
            return aioimaplib.IMAP4(a.host, a.port, timeout=timeout)
        context = ssl.create_default_context(cafile=self.settings.smtp_ca_file or None)
        return aioimaplib.IMAP4_SSL(a.host, a.port, timeout=timeout, ssl_context=context)

    async def poll_once(self) -> int:
        """Handle every mail not yet processed; returns how many."""
        client = self._client()
        try:
            await client.wait_hello_from_server()
            _ok(await client.login(self.address.user, self.address.password), "login")
            _ok(await client.select(self.address.mailbox), f"select {self.address.mailbox}")
            found = _ok(await client.uid_search("UNKEYWORD", PROCESSED), "search")
            uids = found.lines[0].split() if found.lines and isinstance(found.lines[0], bytes) else []
            for uid in uids:
                if self._stopping:
                    break
                await self._handle(client, uid.decode())
            return len(uids)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await client.logout()

    async def _handle(self, client: aioimaplib.IMAP4, uid: str) -> None:
        fetched = _ok(await client.uid("fetch", uid, "(BODY.PEEK[])"), f"fetch {uid}")
        raw = next((bytes(line) for line in fetched.lines if isinstance(line, bytearray)), None)
        if raw is not None:
            # A mailbox keeps no envelope: the return path is read from the headers (Delivered-To, To).
            await self.receive(raw, [])
        _ok(await client.uid("store", uid, "+FLAGS.SILENT", f"({PROCESSED} \\Seen)"), f"flag {uid}")
