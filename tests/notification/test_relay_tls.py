"""Trusting the city's relay: with STARTTLS (or TLS from the first byte) its certificate is verified —
against the city's own CA when one is configured (NOTIFICATION_SMTP_CA_FILE) — and a certificate from any
other CA is refused; a client certificate is presented where the relay asks for one. Real TLS, against an
aiosmtpd relay with certificates made in the test."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from services.notification.config import NotificationSettings
from services.notification.smtp import SmtpPool
from tests.conftest import unique_email
from tests.support.smtp import SmtpServer
from tests.support.tlscerts import Issued, issue, make_ca


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Issued]:
    city = make_ca(tmp_path, "stadt-kaiserslautern-ca")
    other = make_ca(tmp_path, "somebody-else-ca")
    return {
        "city": city,
        "other": other,
        "relay": issue(tmp_path, city, "relay", host="127.0.0.1"),
        "impostor": issue(tmp_path, other, "impostor", host="127.0.0.1"),
        "wrong_host": issue(tmp_path, city, "wrong-host", host="mail.example.org"),
        "client": issue(tmp_path, city, "mitwirkung", client=True),
    }


def _relay_context(server: Issued, client_ca: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert_file, server.key_file)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca.cert_file)
    return context


@pytest.fixture
def relay() -> Iterator:
    started: list[SmtpServer] = []

    def start(context: ssl.SSLContext, *, implicit: bool = False) -> SmtpServer:
        server = SmtpServer()
        if implicit:
            server.controller = Controller(
                server.handler, hostname="127.0.0.1", port=server.port, ssl_context=context
            )
        else:
            server.controller = Controller(
                server.handler,
                hostname="127.0.0.1",
                port=server.port,
                tls_context=context,
                require_starttls=True,
            )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def _send(settings: NotificationSettings, server: SmtpServer) -> tuple[str, str, int]:
    pool = SmtpPool(settings)
    email = unique_email("tls")
    raw = b"From: a@example.org\r\nTo: " + email.encode() + b"\r\nSubject: tls\r\n\r\nhello\r\n"
    try:
        result = await pool.send(raw, "a@example.org", email)
    finally:
        await pool.close()
    return result.outcome, result.detail, len(server.handler.to(email))


def _settings(base: NotificationSettings, server: SmtpServer, **tls: str) -> NotificationSettings:
    return base.model_copy(update={"smtp_port": server.port, "smtp_timeout": 5.0, **tls})


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_a_relay_certified_by_the_citys_ca_gets_the_mail(notification_settings, pki, relay, mode):
    server = relay(_relay_context(pki["relay"]), implicit=mode == "tls")
    settings = _settings(
        notification_settings, server, smtp_tls=mode, smtp_ca_file=str(pki["city"].cert_file)
    )
    outcome, detail, arrived = await _send(settings, server)
    assert (outcome, arrived) == ("sent", 1), detail


@pytest.mark.parametrize("impostor", ["impostor", "wrong_host"])
@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_a_certificate_from_another_ca_or_for_another_host_is_refused(
    notification_settings, pki, relay, mode, impostor
):
    server = relay(_relay_context(pki[impostor]), implicit=mode == "tls")
    settings = _settings(
        notification_settings, server, smtp_tls=mode, smtp_ca_file=str(pki["city"].cert_file)
    )
    outcome, detail, arrived = await _send(settings, server)
    # Nothing went to the impostor; the mail stays due (the relay's trouble, not the mail's).
    assert (outcome, arrived) == ("retry", 0)
    assert "certificate" in detail.lower() or "verif" in detail.lower(), detail


async def test_without_the_citys_ca_its_certificate_is_not_trusted(notification_settings, pki, relay):
    server = relay(_relay_context(pki["relay"]))
    settings = _settings(notification_settings, server, smtp_tls="starttls")  # the system's CAs only
    outcome, _, arrived = await _send(settings, server)
    assert (outcome, arrived) == ("retry", 0)


async def test_the_client_certificate_is_presented_where_the_relay_asks(notification_settings, pki, relay):
    server = relay(_relay_context(pki["relay"], client_ca=pki["city"]))
    ca = str(pki["city"].cert_file)
    without = _settings(notification_settings, server, smtp_tls="starttls", smtp_ca_file=ca)
    outcome, _, arrived = await _send(without, server)
    assert (outcome, arrived) == ("retry", 0)

    with_cert = _settings(
        notification_settings,
        server,
        smtp_tls="starttls",
        smtp_ca_file=ca,
        smtp_client_cert=str(pki["client"].cert_file),
        smtp_client_key=str(pki["client"].key_file),
    )
    outcome, detail, arrived = await _send(with_cert, server)
    assert (outcome, arrived) == ("sent", 1), detail
