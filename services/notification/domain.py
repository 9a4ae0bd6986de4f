"""The notification rules as plain Python, no I/O: which mails an event owes (to whom, with which
template), the states of a delivery and what one attempt's outcome makes of it, and the backoff.

    pending ──claim──▶ sending ──relay took it──────────────▶ sent
       ▲                  ├──4xx / connection error──────────▶ retrying ──(due)──▶ claimed again
       │                  ├──5xx, or it cannot be composed───▶ failed
       │                  └──connection lost after DATA,──────▶ unknown ──(due)──▶ sent again, same Message-ID
       │                     or the lease ran out
       └── retrying / unknown past ``max_age_hours`` ─────────▶ failed ("gave up")

    held ──privacy.erasure_finished──▶ pending      (only the last mail of an erasure on request)

    sending ──5.1.x / 5.2.x to RCPT (the address is gone)─────▶ bounced
    sent ──a bounce with a permanent failure (5.x.x)──────────▶ bounced   (a 4.x.x one: recorded, stays)
    recorded (or due) for an address on the suppression list ─▶ suppressed (never sent)

A ``bounced`` delivery puts its address on the suppression list (as a keyed hash), unless the failure was
the receiving system refusing the mail rather than the address (5.7.x); every later mail to a suppressed
address is ``suppressed`` when recorded, and mails still due for it are suppressed with the bounce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from shared import events as ev
from shared.addresses import normalised
from shared.retry import equal_jitter, exponential_delay

DELIVERY_STATUSES = (
    "held",
    "pending",
    "sending",
    "sent",
    "retrying",
    "failed",
    "unknown",
    "bounced",
    "suppressed",
)
# Rows a sender may claim once their next_attempt_at has come.
DUE_STATUSES = ("pending", "retrying", "unknown")
# What the SMTP layer reports for one attempt.
# ``handed_back``: the sender stopped before the mail went out; the row is due again as it was.
Outcome = Literal["sent", "retry", "failed", "unknown", "handed_back"]


class DomainError(Exception):
    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class NotFound(DomainError):
    """No such template."""


class InvalidRequest(DomainError):
    """An input the rules refuse (a language without mails)."""


@dataclass(frozen=True)
class MailIntent:
    template: str
    recipient: ev.Recipient
    context: dict[str, Any]


def template_name(event_type: str) -> str:
    return event_type.replace(".", "_")


# What a person may have typed into an event (besides the address): a mail to an address nobody has proven
# carries none of it, in no header and no part, so the city's relay cannot be made to carry a stranger's
# words (a title like "Account locked: https://…") to anyone's mailbox under the city's name.
TYPED_BY_A_PERSON = ("title", "duplicate_of_title")


def intents_for(event: ev.IntegrationEvent) -> list[MailIntent]:
    return [_without_typed_text(intent) for intent in _intents(event)]


def _without_typed_text(intent: MailIntent) -> MailIntent:
    if intent.recipient.address_proven:
        return intent
    recipient = intent.recipient.model_copy(update={"name": ""})
    context = {key: value for key, value in intent.context.items() if key not in TYPED_BY_A_PERSON}
    for key in ("recipient", "author"):
        if isinstance(context.get(key), dict):
            context[key] = {**context[key], "name": ""}
    return MailIntent(intent.template, recipient, context)


def _intents(event: ev.IntegrationEvent) -> list[MailIntent]:
    template = template_name(event.event_type)
    payload = event.model_dump(mode="json")
    if isinstance(event, ev._RegistrationEvent):
        return [MailIntent(template, event.recipient, payload)]
    if isinstance(event, ev._MeetingEvent):
        base = {k: v for k, v in payload.items() if k != "participants"}
        return [
            MailIntent(
                template,
                participant.recipient,
                {
                    **base,
                    "recipient": participant.recipient.model_dump(mode="json"),
                    "registration_id": str(participant.registration_id),
                    "links": participant.links.model_dump(mode="json"),
                },
            )
            for participant in event.participants
        ]
    if isinstance(event, ev.PrivacyErasureRequestSubmitted):
        return [MailIntent(template, event.recipient, payload)]
    # privacy.erasure_finished owes a mail too, but it was recorded (held) with the erasure: see
    # held_final_mail below and service.erase_address.
    if isinstance(event, ev._ProposalEvent):
        if event.author is None or not event.author.email:
            return []
        return [MailIntent(template, event.author, {**payload, "recipient": payload["author"]})]
    if isinstance(event, ev._MeasureEvent):
        # Authors of linked proposals and confirmed followers, each with their own unsubscribe link.
        base = {k: v for k, v in payload.items() if k != "recipients"}
        return [
            MailIntent(
                template,
                owed.recipient,
                {
                    **base,
                    "recipient": owed.recipient.model_dump(mode="json"),
                    "links": owed.links.model_dump(mode="json"),
                },
            )
            for owed in event.recipients
        ]
    if isinstance(event, ev.MeasureFollowRequested):
        return [MailIntent(template, event.recipient, payload)]
    return []


# Mails a person may stop (a List-Unsubscribe header, RFC 8058): reminders and the follow-up mails about a
# measure. Confirmations, calendar updates and erasure mails are transactional and carry none.
UNSUBSCRIBABLE_TEMPLATES = frozenset(
    {
        template_name(ev.MeetingReminderDue.event_type),
        template_name(ev.MeasureCouncilDecided.event_type),
        template_name(ev.MeasureProgressed.event_type),
    }
)


def unsubscribe_url_of(template: str, context: dict[str, Any]) -> str | None:
    """The one-click unsubscribe link a mail carries in its header, or None (a mail one cannot stop, or no
    link)."""
    if template not in UNSUBSCRIBABLE_TEMPLATES:
        return None
    links = context.get("links")
    url = links.get("unsubscribe_url") if isinstance(links, dict) else None
    return url if isinstance(url, str) else None


# --- erasure on request (Art. 17) and retention ------------------------------------------------------------

FINAL_MAIL_TEMPLATE = template_name(ev.PrivacyErasureFinished.event_type)
# Rows that will not be sent (again): their recipients can go after the retention period.
SETTLED_STATUSES = ("sent", "failed", "bounced", "suppressed")
# What a delivery's context may hold about a person or their links (event-carried state).
PERSONAL_CONTEXT_KEYS = ["links", "edit_url", "status_url", "recipient", "author"]


def final_mail_key(request_id: uuid.UUID | str) -> str:
    """The last mail's deduplication key: one per request, and without the address."""
    return f"{request_id}:{FINAL_MAIL_TEMPLATE}"


def final_mail_context(request_id: uuid.UUID | str, language: str) -> dict[str, Any]:
    """What the last mail of an erasure may show: no name, no address."""
    return {"request_id": str(request_id), "recipient": {"name": "", "email": "", "language": language}}


def address_hash(secret: str, email: str) -> str:
    """The keyed hash (HMAC-SHA256) an erased address is remembered by: it matches the address again,
    without keeping it."""
    return hmac.new(secret.encode(), normalised(email).encode(), hashlib.sha256).hexdigest()


def dedup_key(event_id: str, template: str, email: str) -> str:
    """The delivery's unique key: one mail per event, template and recipient, however often it arrives."""
    return f"{event_id}:{template}:{normalised(email)}"


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    max_age_hours: float

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with equal jitter: between half the ceiling and the ceiling."""
        return equal_jitter(exponential_delay(attempts, self.base_seconds, self.max_seconds))


@dataclass(frozen=True)
class Mark:
    """What became of one attempt, as written to its row."""

    id: uuid.UUID
    attempt: int
    status: str
    last_error: str | None
    subject: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    at: datetime


def mark_for(
    delivery: Any, outcome: Outcome, detail: str, subject: str | None, now: datetime, policy: RetryPolicy
) -> Mark:
    """The delivery's state after an attempt (``delivery`` has ``id``, ``attempts``, ``created_at``)."""
    status, error, next_attempt_at, sent_at = "failed", detail or None, None, None
    if outcome == "sent":
        status, error, sent_at = "sent", None, now
    elif outcome == "handed_back":
        # Nothing reached the relay: due again at once, in the state it was claimed from (an 'unknown'
        # stays unknown; the claim returns it as ``previous_status``).
        status = getattr(delivery, "previous_status", None) or "retrying"
        error, next_attempt_at = getattr(delivery, "last_error", None), now
    elif outcome in ("retry", "unknown"):
        if now - delivery.created_at > timedelta(hours=policy.max_age_hours):
            error = f"gave up after {policy.max_age_hours} h: {detail}"
        else:
            status = "unknown" if outcome == "unknown" else "retrying"
            next_attempt_at = now + timedelta(seconds=policy.backoff(delivery.attempts))
    return Mark(
        id=delivery.id,
        attempt=delivery.attempts,
        status=status,
        last_error=error,
        subject=subject,
        next_attempt_at=next_attempt_at,
        sent_at=sent_at,
        at=now,
    )


# --- the return path: which delivery a bounce is about (VERP) -----------------------------------------------

# The envelope sender of a mail is the bounce address with the delivery's id and a signature in its local
# part (``bounces+<id>-<signature>@…``): a bounce names the delivery it is about, and a forged one (someone
# guessing ids to get other people's addresses suppressed) fails the signature.
_SIGNATURE_CHARS = 16  # 80 bits of HMAC-SHA256
# What the tag adds to the bounce address's local part: "+", the id (26), "-", the signature.
VERP_TAG_LENGTH = 1 + 26 + 1 + _SIGNATURE_CHARS


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _bounce_signature(key: str, delivery_id: uuid.UUID) -> str:
    digest = hmac.new(key.encode(), b"verp:" + delivery_id.bytes, hashlib.sha256).digest()
    return _b32(digest)[:_SIGNATURE_CHARS]


def bounce_sender(bounce_address: str, delivery_id: uuid.UUID, key: str) -> str:
    """The envelope sender of the mail of ``delivery_id``: ``bounce_address`` tagged with it, signed."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{_b32(delivery_id.bytes)}-{_bounce_signature(key, delivery_id)}@{domain}"


def delivery_of_bounce(address: str, bounce_address: str, key: str) -> uuid.UUID | None:
    """The delivery a bounce sent to ``address`` is about, or None when the address is not a tagged
    bounce address of ours or its signature is wrong."""
    local, _, domain = normalised(address).rpartition("@")
    own_local, _, own_domain = normalised(bounce_address).rpartition("@")
    base, plus, tag = local.partition("+")
    encoded, dash, signature = tag.partition("-")
    if not (plus and dash) or base != own_local or domain != own_domain or len(encoded) != 26:
        return None
    try:
        delivery_id = uuid.UUID(bytes=base64.b32decode(encoded.upper() + "======"))
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(signature, _bounce_signature(key, delivery_id)):
        return None
    return delivery_id


# --- bounces and the suppression list -----------------------------------------------------------------------

_ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ADDRESS = re.compile(r"<?[^\s<>@\"']+@[^\s<>@\"']+>?")
DIAGNOSTIC_CHARS = 500


def enhanced_status(text: str) -> str | None:
    """The first enhanced status code (RFC 3463, e.g. "5.1.1") in ``text``."""
    found = _ENHANCED_STATUS.search(text or "")
    return ".".join(found.groups()) if found else None


def without_addresses(text: str) -> str:
    """``text`` with every mail address in it replaced, on one line, shortened: what the suppression list and
    ``mail.bounced`` keep of a diagnostic (the list holds no address, and the event needs none)."""
    flat = " ".join((text or "").split())
    return _ADDRESS.sub("<address>", flat)[:DIAGNOSTIC_CHARS]


_TOKEN_IN_BYTES = re.compile(rb"(token=)[A-Za-z0-9_\-%]+")


def without_tokens(raw: bytes) -> bytes:
    """A bounce mail kept for staff may quote our mail: no working link at rest (``token=`` values in plain
    text go; an encoded part of the quoted mail is not decoded)."""
    return _TOKEN_IN_BYTES.sub(rb"\1(removed)", raw)


def address_is_gone(status: str) -> bool:
    """Whether a permanent failure means the address takes no mail (suppress it): any 5.x.x but 5.7.x, which
    is the receiving system refusing *this mail* (spam policy, a blocked relay), not the address. Suppressing
    on those would silence every address of a provider that blocks the city for a day."""
    return status.startswith("5.") and not status.startswith("5.7.")


def refused_address_status(detail: str) -> str | None:
    """The status of a relay's 5xx answer to RCPT when it says the address is gone (5.1.x: no such mailbox or
    domain; 5.2.x: mailbox disabled), else None. A refusal without such a code ("550 Relaying denied", a
    misconfigured relay) suppresses nobody: the mail is only ``failed``."""
    status = enhanced_status(detail)
    return status if status is not None and status[:4] in ("5.1.", "5.2.") else None


def registration_of(context: dict[str, Any] | None) -> uuid.UUID | None:
    """The registration a mail was about, when its context names one."""
    value = (context or {}).get("registration_id")
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
