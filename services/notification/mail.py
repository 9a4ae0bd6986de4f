"""Building one RFC 5322 message, safely.

Addresses are ``email.headerregistry.Address`` objects, and every value that a person typed is
reduced to one header-safe line first. Two ways into a forged header line are closed here:

* a CR/LF (or another line break) in a display name or subject: Python 3.11.7 (CVE-2024-6923) would fold
  it into a new header such as ``Bcc:``; it becomes a space;
* an RFC 2047 *encoded word* typed as text (``=?utf-8?q?=0D=0ABcc:...?=``): ``EmailMessage`` decodes
  encoded words when it parses a header value it is given, so an encoded CR/LF came back as a real one
  and became a header line; mail programs decode them too. ``=?`` is therefore written as ``= ?``.

Addresses are checked strictly (dot-atom local part, host-name domain, IDNA-encoded), and the finished
message is checked once more: no header value may contain a control character. Non-ASCII display names
and subjects are written as RFC 2047 encoded words (``email.header.Header``), ASCII names quoted where
needed (``email.utils.formataddr``).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import secrets
from datetime import datetime
from email.charset import BASE64, QP, Charset
from email.encoders import encode_base64
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import format_datetime, formataddr, parseaddr
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.notification.rendering import RenderedMail


# Control characters (C0 and DEL) and every other line break Python's str.splitlines knows (NEL, LS, PS).
_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
# RFC 5322 atext, as dot-separated atoms; deliberately no quoted local parts.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class _SmtpPolicy(Compat32):
    """compat32 that writes a short plain header line as it is. compat32 runs every header value through
    ``email.header.Header`` to fold it, which for a line that needs no folding (most of them) gives back
    the value unchanged, at about a tenth of a mail's serialisation time each."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if type(value) is _Folded or (
            type(value) is str
            and value.isascii()
            and len(name) + 2 + len(value) <= (self.max_line_length or 78)
            and _PLAIN_LINE.fullmatch(value)
        ):
            return f"{name}: {value}{self.linesep}"
        folded: str = super()._fold(name, value, sanitize)  # type: ignore[misc]
        return folded


class _Folded(str):
    """A header value the email package has folded already (a constant one: the sender), written as is."""


# A header value that folding would leave alone: printable ASCII, single spaces, no space at either end.
_PLAIN_LINE = re.compile(r"[!-~]+(?: [!-~]+)*")
# CRLF line ends, folded at 78, and no ">From " mangling (the bodies are encoded anyway).
SMTP_POLICY = _SmtpPolicy(linesep="\r\n", mangle_from_=False)


# Our own utf-8 charset object, with quoted-printable bodies (readable German text); the email package's
# global charset registry is left alone.
class _Utf8QuotedPrintable(Charset):
    """utf-8 bodies as quoted-printable, encoded by ``binascii`` (C) instead of ``email.quoprimime``
    (Python, and a large part of the cost of writing a mail). Both write valid QP of the same text; only where a
    long line is broken may differ."""

    def __init__(self) -> None:
        super().__init__("utf-8")
        self.body_encoding = QP

    def body_encode(self, string: str | bytes) -> str | bytes:  # type: ignore[override]
        if not string:
            return string
        data = string.encode("utf-8") if isinstance(string, str) else string
        return binascii.b2a_qp(data, istext=True).decode("ascii")


_UTF8 = _Utf8QuotedPrintable()
# Headers as base64 encoded words: the package's default for utf-8 weighs quoted-printable against base64
# for every header and split QP lines by trial, which was half the cost of serialising a mail.
_UTF8_HEADER = Charset("utf-8")
_UTF8_HEADER.header_encoding = BASE64


class UnsafeHeader(ValueError):
    pass


def one_line(value: str) -> str:
    """Whatever a person typed, as one header-safe line: line breaks and other control characters become
    spaces, runs of white space one space, and ``=?`` (the start of an encoded word) ``= ?``."""
    cleaned = " ".join(_CONTROL.sub(" ", value).split())
    while "=?" in cleaned:
        cleaned = cleaned.replace("=?", "= ?")
    return cleaned


def parse_mailbox(value: str) -> Address:
    """``"Name <addr@host>"`` from settings, as a header Address."""
    name, addr = parseaddr(value)
    return mailbox(name, addr)


def _ascii_domain(domain: str) -> str:
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UnsafeHeader(f"not a valid mail domain: {domain!r}") from exc
    labels = ascii_domain.rstrip(".").split(".")
    if not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        raise UnsafeHeader(f"not a valid mail domain: {domain!r}")
    return ".".join(labels)


def mailbox(display_name: str, addr_spec: str) -> Address:
    """A recipient or sender as an ``Address``; the address itself must be a plain ``local@domain``.

    An address is never repaired: whatever would change it (control characters, white space, a second
    ``@``, quoting, an encoded word) is refused with :class:`UnsafeHeader`. A non-ASCII domain is written
    in its IDNA form; a non-ASCII local part cannot be sent without SMTPUTF8 and is refused.
    """
    if _CONTROL.search(addr_spec):
        raise UnsafeHeader("an e-mail address must not contain control characters")
    if addr_spec.count("@") != 1:
        raise UnsafeHeader(f"not an e-mail address: {addr_spec!r}")
    username, domain = addr_spec.split("@")
    if "=?" in username or len(username) > 64 or not _LOCAL_PART.fullmatch(username):
        raise UnsafeHeader(f"not a plain e-mail address: {addr_spec!r}")
    return Address(display_name=one_line(display_name or ""), username=username, domain=_ascii_domain(domain))


def message_id_for(dedup_key: str, domain: str) -> str:
    """Deterministic: the same intended mail always has the same Message-ID, on every retry."""
    digest = hashlib.sha256(dedup_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def _check_headers(msg: Message) -> None:
    """The last guard: whatever became of a value, it must be one line without control characters (a
    value folded already may break only where folding does, before a space)."""
    fold = SMTP_POLICY.linesep + " "
    for name, value in msg.items():
        if _CONTROL.search(value.replace(fold, " ") if type(value) is _Folded else str(value)):
            raise UnsafeHeader(f"the {name} header would contain a line break or control character")


def _header_text(value: str, name: str) -> Header:
    """An unstructured header (Subject): plain if ASCII, else RFC 2047 encoded words, folded."""
    value = one_line(value)
    return Header(value, "us-ascii" if value.isascii() else _UTF8_HEADER, header_name=name)


def _address_header(address: Address, name: str) -> str | Header:
    """``Name <addr>``: an ASCII name quoted where RFC 5322 needs it, any other name RFC 2047 encoded."""
    display_name = one_line(address.display_name)
    addr_spec = address.addr_spec
    if not addr_spec.isascii():
        raise UnsafeHeader(f"not an ASCII address: {addr_spec!r}")
    if not display_name:
        return addr_spec
    if display_name.isascii():
        return formataddr((display_name, addr_spec))
    header = Header(display_name, _UTF8_HEADER, header_name=name)
    header.append(f"<{addr_spec}>", "us-ascii")
    return header


def _constant_address_header(address: Address, name: str) -> str:
    """``_address_header`` for an address that stays the same for every mail (sender, Reply-To), folded
    once: encoding a non-ASCII name as RFC 2047 words is most of the cost of writing a header."""
    return _folded_address_header(address.display_name, address.addr_spec, name)


@functools.lru_cache(maxsize=16)
def _folded_address_header(display_name: str, addr_spec: str, name: str) -> str:
    header = _address_header(Address(display_name=display_name, addr_spec=addr_spec), name)
    if isinstance(header, str):
        return header
    line = SMTP_POLICY.fold(name, header)
    return _Folded(line[len(name) + 2 : -len(SMTP_POLICY.linesep)])


def _boundary() -> str:
    """A multipart boundary that no part can contain: it begins with ``=_``, which quoted-printable writes
    as ``=3D_`` and base64 has no letters for. (Left to the ``email`` package, a boundary is checked
    against the whole serialised text with a regular expression compiled for each message.)"""
    return "=_" + secrets.token_hex(16)


def _text_part(text: str, subtype: str) -> MIMEText:
    part = MIMEText(text, subtype, _UTF8, policy=SMTP_POLICY)
    del part["MIME-Version"]  # once, on the whole message
    return part


# A link for the List-Unsubscribe header: http(s), no white space, no control character, nothing that would
# end the <…> around it. Anything else is left out (the mail goes without the header).
_HEADER_URL = re.compile(r"https?://[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")


def list_unsubscribe_url(url: str | None) -> str | None:
    """``url`` if it can stand in a List-Unsubscribe header as it is, else None."""
    if not url or len(url) > 900 or not _HEADER_URL.fullmatch(url):
        return None
    return url


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
    unsubscribe_url: str | None = None,
    image: tuple[str, bytes] | None = None,
) -> Message:
    """multipart/alternative (text, HTML), inside multipart/mixed with a text/calendar part and an image
    (``(file name, PNG)``) if given.

    Built with the ``email`` package's compat32 classes: they store header values as given (no parsing,
    so no encoded word is ever decoded into a line break) and cost a fifth of ``EmailMessage`` with
    ``policy.SMTP``, which was the largest single cost of sending. Serialise with ``as_bytes()``.
    """
    body = MIMEMultipart("alternative", policy=SMTP_POLICY, boundary=_boundary())
    body.attach(_text_part(rendered.text, "plain"))
    body.attach(_text_part(rendered.html, "html"))
    if calendar is None and image is None:
        msg = body
    else:
        msg = MIMEMultipart("mixed", policy=SMTP_POLICY, boundary=_boundary())
        del body["MIME-Version"]
        msg.attach(body)
    if calendar is not None:
        ics = MIMEBase("text", "calendar", policy=SMTP_POLICY, method=calendar_method, charset="utf-8")
        del ics["MIME-Version"]
        ics.set_payload(calendar)
        encode_base64(ics)
        ics.add_header("Content-Disposition", "attachment", filename="termin.ics")
        msg.attach(ics)
    if image is not None:
        # A PNG shown with the mail (the check-in code's QR); the file name is ours, never typed text.
        filename, data = image
        png = MIMEBase("image", "png", policy=SMTP_POLICY)
        del png["MIME-Version"]
        png.set_payload(data)
        encode_base64(png)
        png.add_header("Content-Disposition", "inline", filename=filename)
        msg.attach(png)
    msg["From"] = _constant_address_header(sender, "From")
    msg["To"] = _address_header(recipient, "To")
    if reply_to is not None:
        msg["Reply-To"] = _constant_address_header(reply_to, "Reply-To")
    msg["Subject"] = _header_text(rendered.subject, "Subject")
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["Content-Language"] = rendered.language
    # Reminders only (the caller decides): one-click unsubscribe, RFC 8058 (RFC 2369 for the header).
    url = list_unsubscribe_url(unsubscribe_url)
    if url is not None:
        msg["List-Unsubscribe"] = f"<{url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    _check_headers(msg)
    return msg
