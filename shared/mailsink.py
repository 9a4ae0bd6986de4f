"""The development mail sink: an SMTP server (aiosmtpd) that keeps every mail as an ``.eml`` file.

Open the files with any mail program, or read them as text. Mailpit plays this part in docker compose.
"""

from __future__ import annotations

import asyncio
import time
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session


class EmlDirectoryHandler:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count = 0

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        self.count += 1
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode()
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{self.count:05d}.eml"
        (self.directory / name).write_bytes(data)
        parsed = message_from_bytes(data, policy=policy.default)
        print(f"mailsink: {name} to {', '.join(envelope.rcpt_tos)}: {parsed['Subject']}", flush=True)
        return "250 Message accepted for delivery"


def run_forever(host: str, port: int, directory: str) -> None:
    controller = Controller(EmlDirectoryHandler(directory), hostname=host, port=port)
    controller.start()
    print(f"mailsink: listening on {host}:{port}, writing to {Path(directory).resolve()}", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


def show_latest(directory: str, count: int = 1) -> list[str]:
    """The newest mails in the sink, decoded: headers that matter and the plain-text part."""
    files = sorted(Path(directory).glob("*.eml"))[-count:]
    shown = []
    for path in files:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        shown.append(
            f"== {path.name}\nFrom: {message['From']}\nTo: {message['To']}\nSubject: {message['Subject']}\n"
            f"Message-ID: {message['Message-ID']}\n\n{text}"
        )
    return shown
