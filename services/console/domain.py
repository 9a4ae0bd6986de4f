"""The console's rules as plain Python: sessions (ids, CSRF, inactivity), roles from the provider's claims,
what each role may see, and turning a moderator's form into the proposals service's request. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# The roles API.md knows; ``admin`` implies the other two (as shared.auth does for the services).
KNOWN_ROLES = ("staff", "moderator", "admin")
ROLE_IMPLIES = {"admin": {"admin", "moderator", "staff"}, "moderator": {"moderator"}, "staff": {"staff"}}
DECISIONS = ("publish", "reject", "request_changes", "mark_duplicate")
# Decisions that owe the author a reason (API.md: 422 without one).
STATEMENT_OWED = frozenset({"reject", "request_changes", "mark_duplicate"})
OUTCOMES = ("adopted", "partially_adopted", "not_adopted")
STATUSES = ("submitted", "changes_requested", "published", "rejected", "merged", "withdrawn")
MAX_STATEMENT = 2000
CONSOLE_LANGUAGES = ("de", "en")


class SessionMissing(Exception):
    """No signed-in session behind the request (none, unknown, expired or ended)."""


class CsrfRejected(Exception):
    """A form posted without this session's CSRF token."""


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def session_key(session_id: str) -> str:
    """What the table stores of a session id: its SHA-256 (a copy of the table signs nobody in)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_matches(expected: str, sent: object) -> bool:
    return isinstance(sent, str) and bool(sent) and hmac.compare_digest(expected.encode(), sent.encode())


def idle_expired(last_seen_at: datetime, now: datetime, idle_minutes: float) -> bool:
    return now - last_seen_at > timedelta(minutes=idle_minutes)


def needs_touch(last_seen_at: datetime, now: datetime) -> bool:
    """Record activity at most once a minute: a page view should not cost a write each time."""
    return now - last_seen_at > timedelta(seconds=60)


def claim_at(claims: dict[str, Any], path: str) -> object:
    """A claim by name, or by a dotted path for providers that nest roles (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def roles_from_claims(claims: dict[str, Any], claim: str) -> list[str]:
    """The known roles in the provider's claim (a list, or one space-separated string); others dropped."""
    raw = claim_at(claims, claim)
    if isinstance(raw, str):
        raw = raw.split()
    if not isinstance(raw, list):
        return []
    return sorted({r for r in raw if isinstance(r, str) and r in KNOWN_ROLES})


@dataclass(frozen=True)
class Person:
    """The signed-in member of staff as the console knows them (for showing pages, never for deciding
    what the services allow: they check every token themselves)."""

    subject: str
    name: str
    roles: frozenset[str]
    language: str = "de"
    csrf_token: str = ""

    @property
    def effective(self) -> frozenset[str]:
        out: set[str] = set()
        for role in self.roles:
            out |= ROLE_IMPLIES.get(role, set())
        return frozenset(out)

    def may(self, role: str) -> bool:
        return role in self.effective


def navigation(person: Person) -> list[tuple[str, str]]:
    """(path, label key) of the pages this person's roles open."""
    items = [("/", "Overview")]
    if person.may("moderator"):
        items += [("/moderation", "Moderation"), ("/measures", "Measures"), ("/text-blocks", "Text blocks")]
    if person.may("staff"):
        items += [("/mail", "Mail")]
    return items


@dataclass
class FormResult:
    """A form turned into an API body, or the errors beside its fields (field -> an error code the page
    puts into words)."""

    body: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _statement(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def decision_from_form(form: dict[str, str], blocks: dict[str, str]) -> FormResult:
    """The decision form: decision, public statement (typed, or a chosen text block), internal note,
    the original of a duplicate. ``blocks``: text block id -> its text."""
    result = FormResult()
    decision = form.get("decision", "")
    if decision not in DECISIONS:
        result.errors["decision"] = "choose_decision"
        return result
    statement = _statement(form.get("public_statement"))
    if not statement and form.get("text_block"):
        statement = blocks.get(form["text_block"], "")
        if not statement:
            result.errors["text_block"] = "text_block_gone"
    if decision in STATEMENT_OWED and not statement:
        result.errors["public_statement"] = "statement_owed"
    note = _statement(form.get("internal_note"))
    for name, value in (("public_statement", statement), ("internal_note", note)):
        if len(value) > MAX_STATEMENT:
            result.errors[name] = "too_long"
    body: dict[str, Any] = {"decision": decision}
    if statement:
        body["public_statement"] = statement
    if note:
        body["internal_note"] = note
    if decision == "mark_duplicate":
        original = form.get("duplicate_of", "").strip()
        if not original:
            result.errors["duplicate_of"] = "choose_original"
        body["duplicate_of"] = original
    result.body = body
    return result


def outcome_from_form(form: dict[str, str]) -> FormResult:
    result = FormResult()
    outcome = form.get("outcome", "")
    if outcome not in OUTCOMES:
        result.errors["outcome"] = "choose_outcome"
    statement = _statement(form.get("public_statement"))
    if outcome == "not_adopted" and not statement:
        result.errors["public_statement"] = "reason_owed"
    if len(statement) > MAX_STATEMENT:
        result.errors["public_statement"] = "too_long"
    result.body = {"outcome": outcome}
    if statement:
        result.body["public_statement"] = statement
    return result


def version_from_form(form: dict[str, str]) -> int | None:
    value = form.get("version", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else None
