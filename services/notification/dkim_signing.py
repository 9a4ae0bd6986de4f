"""DKIM signatures (RFC 6376) for relays that do not sign, with dkimpy: off unless NOTIFICATION_DKIM_DOMAIN,
_SELECTOR and _PRIVATE_KEY_FILE are set. relaxed/relaxed canonicalisation (the relay may refold headers);
the signed headers include List-Unsubscribe and List-Unsubscribe-Post, as RFC 8058 asks of a one-click
unsubscribe."""

from __future__ import annotations

from pathlib import Path

import dkim

from services.notification.config import NotificationSettings

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"reply-to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"content-language",
    b"auto-submitted",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


class DkimSigner:
    def __init__(self, domain: str, selector: str, private_key: bytes) -> None:
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.private_key = private_key

    @classmethod
    def from_settings(cls, settings: NotificationSettings) -> DkimSigner | None:
        """The signer, or None when DKIM is off. A half-configured DKIM refuses to start."""
        parts = (settings.dkim_domain, settings.dkim_selector, settings.dkim_private_key_file)
        if not any(parts):
            return None
        if not all(parts):
            raise ValueError(
                "DKIM needs NOTIFICATION_DKIM_DOMAIN, NOTIFICATION_DKIM_SELECTOR and "
                "NOTIFICATION_DKIM_PRIVATE_KEY_FILE together"
            )
        signer = cls(
            settings.dkim_domain, settings.dkim_selector, Path(settings.dkim_private_key_file).read_bytes()
        )
        # A key dkimpy cannot use is found at start, not with the first mail.
        signer.sign(b"From: a@example.org\r\nSubject: test\r\n\r\ntest\r\n")
        return signer

    def sign(self, message: bytes) -> bytes:
        """``message`` with its DKIM-Signature header in front."""
        signature = dkim.sign(
            message,
            self.selector,
            self.domain,
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            # Listed whether present or not: a header absent when signed cannot be added later unnoticed.
            include_headers=list(SIGNED_HEADERS),
        )
        return signature + message
