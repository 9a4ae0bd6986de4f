"""DKIM for relays that do not sign (off by default): a mail sent by the service carries a DKIM-Signature
that dkimpy verifies against the public key (the DNS answer stubbed with the TXT record), covering the
headers that matter, List-Unsubscribe included; a changed mail fails; half a configuration refuses to
start."""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.notification.app import create_app as notification_app
from services.notification.dkim_signing import DkimSigner
from tests.conftest import running, unique_email
from tests.notification.test_sending import submitted
from tests.support.events import publish_event

DOMAIN, SELECTOR = "kaiserslautern.de", "mitwirkung2026"


@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dns_with(record: bytes):
    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        name = name.decode() if isinstance(name, bytes) else name
        return record if name.rstrip(".") == f"{SELECTOR}._domainkey.{DOMAIN}" else b""

    return dnsfunc


async def test_mails_are_signed_and_the_signature_verifies(notification_settings, smtp, dkim_key):
    path, txt = dkim_key
    settings = notification_settings.model_copy(
        update={"dkim_domain": DOMAIN, "dkim_selector": SELECTOR, "dkim_private_key_file": str(path)}
    )
    email = unique_email("dkim")
    async with running(notification_app(settings)):
        await publish_event(settings.amqp_url, submitted(email))
        [mail] = await smtp.wait_for(email)
    assert mail.raw.startswith(b"DKIM-Signature:")
    signature = mail.message["DKIM-Signature"]
    tags = dict(
        part.strip().split("=", 1) for part in "".join(str(signature).split()).split(";") if "=" in part
    )
    assert (tags["d"], tags["s"], tags["c"]) == (DOMAIN, SELECTOR, "relaxed/relaxed")
    signed = set(tags["h"].lower().split(":"))
    assert {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    } <= signed

    assert dkim.verify(mail.raw, dnsfunc=dns_with(txt))
    changed = mail.raw.replace(b"Subject:", b"Subject: Re:", 1)
    assert not dkim.verify(changed, dnsfunc=dns_with(txt))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    other = b"v=DKIM1; k=rsa; p=" + base64.b64encode(
        other_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert not dkim.verify(mail.raw, dnsfunc=dns_with(other))


def test_dkim_is_off_by_default_and_half_a_configuration_refuses(notification_settings, dkim_key):
    assert DkimSigner.from_settings(notification_settings) is None
    path, _ = dkim_key
    with pytest.raises(ValueError, match="together"):
        DkimSigner.from_settings(notification_settings.model_copy(update={"dkim_domain": DOMAIN}))
    broken = path.with_name("broken.pem")
    broken.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(Exception):  # noqa: B017 - whichever error dkimpy raises for a bad key
        DkimSigner.from_settings(
            notification_settings.model_copy(
                update={
                    "dkim_domain": DOMAIN,
                    "dkim_selector": SELECTOR,
                    "dkim_private_key_file": str(broken),
                }
            )
        )
