"""Building one RFC 5322 message, safely.

Headers are built from ``email.headerregistry.Address`` objects, and every value that a person typed is
reduced to one line first: Python 3.11.7 (CVE-2024-6923) would otherwise let a CR/LF in a display name or
subject fold into a new header such as ``Bcc:``. Non-ASCII headers are RFC 2047-encoded by ``policy.SMTP``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from services.notification.rendering import RenderedMail

_FORBIDDEN_IN_HEADERS = {"\r", "\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"}


class UnsafeHeader(ValueError):
    pass


def one_line(value: str) -> str:
    """Whatever a person typed, as one header-safe line (line breaks become spaces)."""
    cleaned = "".join(" " if ch in _FORBIDDEN_IN_HEADERS or ord(ch) < 32 else ch for ch in value)
    return " ".join(cleaned.split())


def parse_mailbox(value: str) -> Address:
    """``"Name <addr@host>"`` from settings, as a header Address."""
    name, addr = parseaddr(value)
    return mailbox(name, addr)


def mailbox(display_name: str, addr_spec: str) -> Address:
    if any(ch in _FORBIDDEN_IN_HEADERS or ord(ch) < 32 for ch in addr_spec):
        raise UnsafeHeader("an e-mail address must not contain control characters")
    if addr_spec.count("@") != 1:
        raise UnsafeHeader(f"not an e-mail address: {addr_spec!r}")
    username, domain = addr_spec.rsplit("@", 1)
    return Address(display_name=one_line(display_name), username=username, domain=domain)


def message_id_for(dedup_key: str, domain: str) -> str:
    """Deterministic: the same intended mail always has the same Message-ID, on every retry."""
    digest = hashlib.sha256(dedup_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def build_message(
    *,
    rendered: RenderedMail,
    sender: Address,
    reply_to: Address | None,
    recipient: Address,
    message_id: str,
    date: datetime,
    calendar: bytes | None = None,
    calendar_method: str = "PUBLISH",
) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    if reply_to is not None:
        msg["Reply-To"] = reply_to
    msg["Subject"] = one_line(rendered.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["Content-Language"] = rendered.language
    msg.set_content(rendered.text, subtype="plain", charset="utf-8")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8")
    if calendar is not None:
        msg.add_attachment(
            calendar,
            maintype="text",
            subtype="calendar",
            filename="termin.ics",
            params={"method": calendar_method, "charset": "utf-8"},
        )
    return msg
