"""E-mail addresses as the system compares and counts them — one place for all three services.

``normalised`` is the identity of an address: what erasure, retention and "already registered" match
**exactly** (never as a substring or a LIKE pattern). ``mailbox`` is the inbox a mail would land in: what a
per-address budget counts, so that ``victim+1@…`` and ``victim+2@…`` share one budget. It is for counting
only; mail is always sent to the address as given.
"""

from __future__ import annotations

# Providers that ignore dots in the local part (``j.doe@gmail.com`` is ``jdoe@gmail.com``).
_DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def normalised(email: str) -> str:
    """The address as stored and matched: surrounding space removed, lower case."""
    return email.strip().lower()


def mailbox(email: str) -> str:
    """The mailbox an address delivers to, for counting: lower case, a ``+tag`` removed, and the dots of
    the local part removed for the providers that ignore them."""
    address = normalised(email)
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    local = local.split("+", 1)[0] or local
    if domain == "googlemail.com":
        domain = "gmail.com"
    if domain in _DOTLESS_DOMAINS:
        local = local.replace(".", "") or local
    return f"{local}@{domain}"
