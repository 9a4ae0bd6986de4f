"""A real SMTP server (aiosmtpd) in the test process that records mails and can misbehave on demand."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.support.wait import eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ReceivedMail:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage
    raw: bytes
    received_at: float


@dataclass
class RecordingHandler:
    mails: list[ReceivedMail] = field(default_factory=list)
    # Scripted answers to DATA, consumed one per transaction: "421", "451", "550", "drop" (close the
    # connection after receiving the data, without answering), or None (accept).
    script: deque[str | None] = field(default_factory=deque)
    # While set, every DATA gets this answer.
    always: str | None = None
    data_attempts: int = 0
    # Seconds the server takes to answer DATA (a slow relay).
    delay: float = 0.0
    # Recipients (lower case) refused at RCPT with 550 5.1.1, as a relay that knows the mailbox is gone.
    refuse_rcpt: set[str] = field(default_factory=set)
    # The answer they get ({address} is filled in).
    rcpt_refusal: str = "550 5.1.1 <{address}>: Recipient address rejected: User unknown"

    async def handle_RCPT(
        self, server, session: Session, envelope: Envelope, address: str, rcpt_options
    ) -> str:
        if address.lower() in self.refuse_rcpt:
            return self.rcpt_refusal.format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:
        self.data_attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        action = self.always if self.always is not None else (self.script.popleft() if self.script else None)
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        if action == "drop":
            # The mail arrives, but the client never hears so: the 'unknown' case.
            self._record(envelope, raw)
            server.transport.close()
            return "250 never sent"
        if action in ("421", "451"):
            return f"{action} 4.3.0 Try again later"
        if action == "550":
            return "550 5.1.1 Mailbox unavailable"
        self._record(envelope, raw)
        return "250 OK"

    def _record(self, envelope: Envelope, raw: bytes) -> None:
        msg = message_from_bytes(raw, policy=policy.default)
        self.mails.append(
            ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), msg, raw, time.monotonic())
        )

    def to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.mails if address.lower() in (r.lower() for r in m.envelope_to)]


class SmtpServer:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    async def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list[ReceivedMail]:
        async def arrived() -> list[ReceivedMail]:
            mails = self.handler.to(address)
            return mails if len(mails) >= count else []

        return await eventually(arrived, f"{count} mail(s) to {address}", timeout)
