"""Unit tests of message building: stable Message-IDs, RFC 2047 headers, and no way to forge a header."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header

import pytest

from services.notification.mail import (
    UnsafeHeader,
    build_message,
    mailbox,
    message_id_for,
    one_line,
    parse_mailbox,
)
from services.notification.rendering import RenderedMail
from tests.support.mail import HEADERS_WE_WRITE

SENDER = parse_mailbox("Stadt Kaiserslautern – Mitwirkung <mitwirkung@kaiserslautern.de>")
REPLY_TO = parse_mailbox("Integrationsbeauftragter der Stadt Kaiserslautern <europa@kaiserslautern.de>")


def build(subject: str = "Bitte bestätigen Sie Ihre Anmeldung", name: str = "Ayşe Yılmaz") -> bytes:
    message = build_message(
        rendered=RenderedMail(language="de", subject=subject, text="Guten Tag\n", html="<p>Guten Tag</p>\n"),
        sender=SENDER,
        reply_to=REPLY_TO,
        recipient=mailbox(name, "ayse@example.org"),
        message_id=message_id_for("event-1:registration_submitted:ayse@example.org", "kaiserslautern.de"),
        date=datetime(2019, 3, 1, 9, 30, tzinfo=UTC),
    )
    return message.as_bytes()


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def header_names(raw: bytes) -> list[str]:
    """The names of the header fields, as a receiving server reads them (continuation lines excluded)."""
    return [line.split(b":", 1)[0].decode() for line in header_lines(raw) if not line[:1].isspace()]


def raw_header(raw: bytes, name: str) -> bytes:
    """One header's raw value, unfolded."""
    lines = header_lines(raw)
    for i, line in enumerate(lines):
        if line.lower().startswith(name.lower().encode() + b":"):
            value = [line.split(b":", 1)[1]]
            for cont in lines[i + 1 :]:
                if not cont[:1].isspace():
                    break
                value.append(cont)
            return b"".join(value).strip()
    raise AssertionError(f"no {name} header")


def parse(raw: bytes):
    return message_from_bytes(raw, policy=policy.default)


# --- Message-ID ------------------------------------------------------------------------------------------


def test_the_message_id_is_the_same_for_the_same_intended_mail():
    key = "0b7c…:registration_confirmed:ayse@example.org"
    assert message_id_for(key, "kaiserslautern.de") == message_id_for(key, "kaiserslautern.de")
    assert re.fullmatch(r"<[0-9a-f]{40}@kaiserslautern\.de>", message_id_for(key, "kaiserslautern.de"))


def test_another_intended_mail_has_another_message_id():
    one = message_id_for("event-1:registration_confirmed:ayse@example.org", "kaiserslautern.de")
    other_recipient = message_id_for("event-1:registration_confirmed:jonas@example.org", "kaiserslautern.de")
    other_event = message_id_for("event-2:registration_confirmed:ayse@example.org", "kaiserslautern.de")
    other_template = message_id_for("event-1:registration_waitlisted:ayse@example.org", "kaiserslautern.de")
    assert len({one, other_recipient, other_event, other_template}) == 4


def test_the_message_id_is_written_unchanged():
    raw = build()
    expected = message_id_for("event-1:registration_submitted:ayse@example.org", "kaiserslautern.de")
    assert raw_header(raw, "Message-ID") == expected.encode()
    assert parse(raw)["Message-ID"] == expected


# --- non-ASCII headers ----------------------------------------------------------------------------------


def test_non_ascii_subject_and_names_are_rfc2047_encoded_and_decode_back():
    subject = "Bitte bestätigen Sie Ihre Anmeldung: Arbeitskreis „Sprachförderung“"
    raw = build(subject=subject, name="Ayşe Yılmaz")
    head = b"\r\n".join(header_lines(raw))
    assert head.isascii()  # 7-bit headers: every non-ASCII character is in an encoded word
    assert b"=?utf-8?" in raw_header(raw, "Subject")
    assert b"=?utf-8?" in raw_header(raw, "To")
    assert b"=?utf-8?" in raw_header(raw, "From")  # the en dash in the sender's name
    assert str(make_header(decode_header(raw_header(raw, "Subject").decode()))) == subject
    parsed = parse(raw)
    assert parsed["Subject"] == subject
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Ayşe Yılmaz", "ayse@example.org")
    (sender,) = parsed["From"].addresses
    assert sender.display_name == "Stadt Kaiserslautern – Mitwirkung"


@pytest.mark.parametrize("name", ["Мария Иванова", "محمد العلي", "Müller, Hans", 'Jo "JJ" Smith'])
def test_names_with_other_scripts_and_specials_come_back_as_typed(name):
    (to,) = parse(build(name=name))["To"].addresses
    assert (to.display_name, to.addr_spec) == (name, "ayse@example.org")


def test_content_language_is_a_header_of_the_whole_mail():
    raw = build()
    assert raw_header(raw, "Content-Language") == b"de"


# --- header injection -----------------------------------------------------------------------------------

ATTACKS = [
    "Hallo\r\nBcc: victim@example.org",
    "Hallo\nBcc: victim@example.org",
    "Hallo\rBcc: victim@example.org",
    "Hallo\r\n Bcc: victim@example.org",
    "Hallo\u2028Bcc: victim@example.org",
    "Hallo\x85Bcc: victim@example.org",
    "Hällo\r\nBcc: victim@example.org",
    "Hallo\r\n\r\n<p>a body of my own</p>",
    "=?utf-8?q?Hallo=0D=0ABcc=3A_victim=40example.org?=",
    "=?utf-8?b?SGFsbG8NCkJjYzogdmljdGltQGV4YW1wbGUub3Jn?=",
    "x =?utf-8?q?=0A?=Bcc: victim@example.org",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_line_break_in_the_subject_never_makes_a_header(attack):
    raw = build(subject=attack)
    assert set(header_names(raw)) == set(HEADERS_WE_WRITE)
    assert len(header_names(raw)) == len(HEADERS_WE_WRITE)
    parsed = parse(raw)
    assert parsed["Bcc"] is None
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]
    assert parsed["Subject"].strip()


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_line_break_in_a_display_name_never_makes_a_header_or_a_recipient(attack):
    raw = build(name=attack)
    assert set(header_names(raw)) == set(HEADERS_WE_WRITE)
    assert len(header_names(raw)) == len(HEADERS_WE_WRITE)
    parsed = parse(raw)
    assert parsed["Bcc"] is None
    (to,) = parsed["To"].addresses
    assert to.addr_spec == "ayse@example.org"
    assert "\n" not in to.display_name and "\r" not in to.display_name
    assert b"\n" not in raw_header(raw, "To")


def test_one_line_keeps_the_words_and_drops_the_breaks():
    assert one_line("Ayşe\r\n  Yılmaz\t") == "Ayşe Yılmaz"
    assert one_line("a\u2028b\u2029c\x0bd\x0ce\x00f") == "a b c d e f"
    assert "=?" not in one_line("=?utf-8?q?x?=")


# --- addresses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "ayse@example.org\r\nBcc: victim@example.org",
        "ayse@example.org\n",
        "ayse\r@example.org",
        "ayse@exam\x00ple.org",
        "ayse@example.org\u2028",
    ],
)
def test_mailbox_refuses_an_address_with_a_line_break(address):
    with pytest.raises(UnsafeHeader):
        mailbox("Ayşe", address)


@pytest.mark.parametrize(
    "address",
    [
        "ayse@example.org, victim@example.org",
        "ayse@example.org>, <victim@example.org",
        "ayse example@example.org",
        '"ayse"@example.org',
        "=?utf-8?q?a=0D=0ABcc=3A_x=40y?=@example.org",
        "ayse",
        "@example.org",
        "ayse@",
        "ayse@example..org",
        "ayse@-example.org",
        "ayse@@example.org",
        "ayşe@example.org",
    ],
)
def test_mailbox_refuses_anything_but_a_plain_address(address):
    with pytest.raises(UnsafeHeader):
        mailbox("Ayşe", address)


def test_mailbox_writes_an_international_domain_in_its_ascii_form():
    assert mailbox("Ayşe", "ayse@bücher.example").addr_spec == "ayse@xn--bcher-kva.example"
    assert mailbox("", "o'brien+ak@example.org").addr_spec == "o'brien+ak@example.org"
    assert mailbox("", "dev@localhost").addr_spec == "dev@localhost"


# --- structure ------------------------------------------------------------------------------------------


def test_the_body_is_text_and_html_alternatives_that_decode_back():
    text = "Guten Tag Ayşe,\n\nFrom now on: „Sprachförderung“ – 6. März\n" + "lang " * 40 + "\n"
    html = "<p>Guten Tag Ayşe, „Sprachförderung“</p>\n"
    message = build_message(
        rendered=RenderedMail(language="de", subject="s", text=text, html=html),
        sender=SENDER,
        reply_to=None,
        recipient=mailbox("", "ayse@example.org"),
        message_id="<x@kaiserslautern.de>",
        date=datetime(2019, 3, 1, tzinfo=UTC),
    )
    raw = message.as_bytes()
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    parsed = parse(raw)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["MIME-Version"] == "1.0" and parsed["Reply-To"] is None
    # Text travels in canonical form (CRLF line ends, RFC 2046); the words come back unchanged.
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == html
    assert [p.get("MIME-Version") for p in parsed.iter_parts()] == [None, None]


def test_a_calendar_entry_is_attached_beside_the_alternatives():
    ics = b"BEGIN:VCALENDAR\r\nMETHOD:CANCEL\r\nSUMMARY:Arbeitskreis \xc3\xbc\r\nEND:VCALENDAR\r\n"
    message = build_message(
        rendered=RenderedMail(language="de", subject="Termin", text="t\n", html="<p>t</p>\n"),
        sender=SENDER,
        reply_to=REPLY_TO,
        recipient=mailbox("Ayşe Yılmaz", "ayse@example.org"),
        message_id="<x@kaiserslautern.de>",
        date=datetime(2019, 3, 1, tzinfo=UTC),
        calendar=ics,
        calendar_method="CANCEL",
    )
    parsed = parse(message.as_bytes())
    assert parsed.get_content_type() == "multipart/mixed"
    alternative, calendar = parsed.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "CANCEL"
    assert calendar.get_filename() == "termin.ics"
    assert calendar.get_payload(decode=True) == ics
    assert set(header_names(message.as_bytes())) == set(HEADERS_WE_WRITE)
