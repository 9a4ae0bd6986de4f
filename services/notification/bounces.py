"""Reading a bounce mail, no I/O: which of our tagged return-path addresses it was sent to, and what it
reports (a permanent or a temporary failure, the status code and the diagnostic).

RFC 3464 delivery status notifications are read field by field (``Action``, ``Status``,
``Diagnostic-Code``); the many non-standard bounces (Exchange, Postfix, qmail, Yahoo, …) through
``flufl.bounce``'s detectors, which tell permanent from temporary failures. A mail neither understands is
"unparseable": kept for staff, never dropped.
"""

from __future__ import annotations

import email
import logging
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses
from typing import Literal

from flufl.bounce import all_failures

from services.notification.domain import DIAGNOSTIC_CHARS, enhanced_status

# A detector that trips over a malformed mail logs a traceback before it raises; the mail is then
# "unparseable", logged by the service (one line, not a traceback per mail).
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

Kind = Literal["permanent", "temporary", "unparseable"]

# Headers that name the address a mail was delivered to, when the envelope is gone (a mailbox).
_RECIPIENT_HEADERS = ("X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "To")


@dataclass(frozen=True)
class BounceReport:
    kind: Kind
    status: str | None = None
    diagnostic: str = ""


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw)


def return_paths(message: Message, envelope_recipients: list[str] | None = None) -> list[str]:
    """The addresses the bounce was sent to: the envelope's first (an SMTP listener knows them), then the
    headers a mailbox keeps."""
    found = list(envelope_recipients or [])
    for header in _RECIPIENT_HEADERS:
        values = [str(v) for v in message.get_all(header, [])]
        found.extend(address for _, address in getaddresses(values) if address)
    return list(dict.fromkeys(found))


def read_bounce(message: Message) -> BounceReport:
    """What the bounce reports: a standard DSN first, else the detectors of ``flufl.bounce``."""
    try:
        report = _delivery_status(message)
        if report is not None:
            return report
        temporary, permanent = all_failures(message)
    except Exception:  # a mail malformed in a way a detector trips over
        return BounceReport("unparseable")
    if permanent:
        status = _status_in_text(message) or "5.0.0"
        return BounceReport(
            "permanent", status if status.startswith("5") else "5.0.0", _diagnostic_in_text(message)
        )
    if temporary:
        status = _status_in_text(message) or "4.0.0"
        return BounceReport(
            "temporary", status if status.startswith("4") else "4.0.0", _diagnostic_in_text(message)
        )
    return BounceReport("unparseable")


def _delivery_status(message: Message) -> BounceReport | None:
    """The first failed or delayed recipient of the message/delivery-status parts (RFC 3464)."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        blocks = part.get_payload()
        # The first block is about the message; the others each about one recipient.
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            action = str(block.get("Action", "")).strip().lower()
            status = enhanced_status(str(block.get("Status", "")))
            diagnostic = _one_line(str(block.get("Diagnostic-Code", "")))
            if diagnostic and ";" in diagnostic:
                diagnostic = diagnostic.split(";", 1)[1].strip()  # "smtp; 550 …"
            if status and status[0] in "45" and not action.startswith(("delivered", "relayed", "expanded")):
                kind: Kind = "permanent" if status.startswith("5") else "temporary"
                return BounceReport(kind, status, diagnostic)
            if action.startswith(("fail", "error")):
                return BounceReport("permanent", status or "5.0.0", diagnostic)
            if action.startswith("delayed"):
                return BounceReport("temporary", status or "4.0.0", diagnostic)
    return None


def _text_parts(message: Message) -> str:
    texts = []
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts)


def _status_in_text(message: Message) -> str | None:
    return enhanced_status(_text_parts(message))


def _diagnostic_in_text(message: Message) -> str:
    """The first line of the bounce's text that carries an SMTP code or a status, e.g. Postfix's
    "said: 550 5.1.1 <…>: Recipient address rejected"."""
    for line in _text_parts(message).splitlines():
        if enhanced_status(line) or any(f" {c}" in f" {line}" for c in ("550", "551", "552", "553", "554")):
            return _one_line(line)
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:DIAGNOSTIC_CHARS]
