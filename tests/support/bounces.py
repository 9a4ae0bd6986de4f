"""Bounce mails as the city's mail systems send them: an RFC 3464 delivery status notification built with
the ``email`` package, and a non-standard (Postfix-style, plain text) one."""

from __future__ import annotations

from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid


def dsn(
    return_path: str,
    recipient: str,
    status: str = "5.1.1",
    diagnostic: str | None = None,
    action: str | None = None,
) -> bytes:
    """A multipart/report; report-type=delivery-status to ``return_path`` about ``recipient``."""
    diagnostic = diagnostic or f"smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown"
    action = action or ("failed" if status.startswith("5") else "delayed")
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@relay.kaiserslautern.de>"
    report["To"] = return_path
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = formatdate(localtime=False)
    report["Message-ID"] = make_msgid(domain="relay.kaiserslautern.de")
    report.attach(MIMEText(f"Your message could not be delivered to <{recipient}>.\n", "plain", "utf-8"))
    per_message = Message()
    per_message["Reporting-MTA"] = "dns; relay.kaiserslautern.de"
    per_recipient = Message()
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = diagnostic
    status_part = Message()
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    original = Message()
    original["Content-Type"] = "text/rfc822-headers"
    original.set_payload(f"To: {recipient}\nSubject: Ihre Anmeldung\n")
    report.attach(original)
    return report.as_bytes()


def postfix_text_bounce(return_path: str, recipient: str) -> bytes:
    """A bounce without a delivery-status part, in the words of an older Postfix (multipart/mixed with a
    "Notification" text part): only a heuristic parser reads it."""
    text = (
        "This is the Postfix program at host relay.kaiserslautern.de.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients. It's attached below.\n\n"
        "                   The Postfix program\n\n"
        f"<{recipient}>: host mx.example.org[192.0.2.1] said: 550 5.1.1 User unknown\n"
        "    (in reply to RCPT TO command)\n"
    )
    mail = MIMEMultipart("mixed")
    mail["From"] = "MAILER-DAEMON@relay.kaiserslautern.de (Mail Delivery System)"
    mail["To"] = return_path
    mail["Subject"] = "Undelivered Mail Returned to Sender"
    notification = MIMEText(text, "plain", "us-ascii")
    notification["Content-Description"] = "Notification"
    mail.attach(notification)
    return mail.as_bytes()


def exchange_ndr(return_path: str, recipient: str) -> bytes:
    """An older Microsoft Exchange non-delivery report: plain text, no delivery-status part."""
    text = (
        "Your message\r\n\r\n"
        "  To:      Maria\r\n"
        "  Subject: Ihre Anmeldung\r\n\r\n"
        "did not reach the following recipient(s):\r\n\r\n"
        f"{recipient} on Mon, 1 Dec 2026 10:00:00 +0100\r\n"
        "    The recipient name is not recognized\r\n"
        "    The MTS-ID of the original message is: c=DE;a= ;p=STADT;l=EXCH01\r\n"
        "    MSEXCH:IMS:STADT:KL:EXCH01 0 (000C05A6) Unknown Recipient\r\n"
    )
    mail = MIMEText(text, "plain", "us-ascii")
    mail["From"] = "System Administrator <postmaster@example.org>"
    mail["To"] = return_path
    mail["Subject"] = "Undeliverable: Ihre Anmeldung"
    return mail.as_bytes()


def not_a_bounce(return_path: str) -> bytes:
    mail = MIMEText("Hallo, ich bin im Urlaub bis Montag.\n", "plain", "utf-8")
    mail["From"] = "someone@example.org"
    mail["To"] = return_path
    mail["Subject"] = "Abwesenheit"
    return mail.as_bytes()
