"""Golden tests of the mail templates: every template renders in every language, with the facts it owes.

No database, no broker: the templates are rendered from ``services.notification.samples`` exactly as the
dispatcher renders them, plus a few variants of the samples for the optional values (null district, no
previous meeting, a meeting without a date, ...).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from icalendar import Calendar
from markupsafe import escape

from services.notification.calendar import CALENDAR_TEMPLATES, CANCEL_TEMPLATES, calendar_for, event_uid
from services.notification.domain import template_name
from services.notification.rendering import FALLBACK_LANGUAGE, RenderedMail, TemplateRenderer
from services.notification.samples import sample_context, templates
from shared.languages import LANGUAGES
from shared.topology import NOTIFICATION_MAIL

FOOTER = {
    "office_name": "Integrationsbeauftragter der Stadt Kaiserslautern",
    "office_address": "Willy-Brandt-Platz 1, 67657 Kaiserslautern",
    "office_phone": "0631 365-1121",
    "office_email": "europa@kaiserslautern.de",
    "privacy_url": "https://www.kaiserslautern.de/datenschutz",
}
TEMPLATES = templates()
RENDERER = TemplateRenderer()


def ctx(name: str) -> dict[str, Any]:
    context = sample_context(name)
    assert context is not None, name
    return copy.deepcopy(context)


def render(name: str, lang: str, context: dict[str, Any] | None = None) -> RenderedMail:
    return RENDERER.render(name, lang, ctx(name) if context is None else context, FOOTER)


def when(value: str, lang: str) -> str:
    """A date as the templates show it (the ``datetime`` filter)."""
    return RENDERER.environment(lang).filters["datetime"](value, lang)


def assert_in_both(mail: RenderedMail, *facts: str) -> None:
    for fact in facts:
        assert fact in mail.text, f"{fact!r} missing in the text part"
        assert str(escape(fact)) in mail.html, f"{fact!r} missing in the HTML part"


def assert_in_neither(mail: RenderedMail, *facts: str) -> None:
    for fact in facts:
        assert fact not in mail.text, f"{fact!r} must not be in the text part"
        assert str(escape(fact)) not in mail.html, f"{fact!r} must not be in the HTML part"


def assert_clean(mail: RenderedMail) -> None:
    """No null leaked into the mail, no template syntax left over."""
    for part in (mail.subject, mail.text, mail.html):
        assert "None" not in part
        assert "{{" not in part and "{%" not in part and "}}" not in part


def key_facts(name: str, c: dict[str, Any], lang: str) -> tuple[list[str], list[str]]:
    """(facts the mail must show, facts it must not show) for the sample context of a template."""
    links = c.get("links") or {}
    meeting = c.get("meeting") or {}
    wg = (c.get("working_group") or {}).get("title", "")
    first_date = when(c["meetings"][0]["starts_at"], lang) if "meetings" in c else ""
    facts: dict[str, tuple[list[str], list[str]]] = {
        "registration_submitted": ([wg, links.get("confirm_url", ""), first_date], []),
        "registration_resubmitted": (
            [wg, str(c.get("waitlist_position")), links.get("status_url", ""), links.get("cancel_url", "")],
            [links.get("confirm_url", "")],
        ),
        "registration_confirmed": (
            [
                wg,
                first_date,
                links.get("status_url", ""),
                links.get("cancel_url", ""),
                c.get("check_in_code", ""),
            ],
            [links.get("confirm_url", "")],
        ),
        "registration_waitlisted": (
            [wg, str(c.get("waitlist_position")), links.get("cancel_url", "")],
            [links.get("confirm_url", "")],
        ),
        "registration_promoted": (
            [
                wg,
                first_date,
                links.get("status_url", ""),
                links.get("cancel_url", ""),
                c.get("check_in_code", ""),
            ],
            [links.get("confirm_url", "")],
        ),
        "registration_cancelled": ([wg], [links.get("confirm_url", ""), links.get("cancel_url", "")]),
        "registration_expired": ([wg], [links.get("confirm_url", ""), links.get("cancel_url", "")]),
        "meeting_rescheduled": (
            [wg, meeting.get("venue", ""), links.get("cancel_url", "")]
            + [when(m["starts_at"], lang) for m in (meeting, c.get("previous")) if m and m["starts_at"]],
            [links.get("confirm_url", "")],
        ),
        "meeting_cancelled": (
            [wg, when(meeting.get("starts_at", ""), lang) if meeting.get("starts_at") else ""],
            [links.get("confirm_url", "")],
        ),
        "meeting_reminder_due": (
            [
                wg,
                when(meeting["starts_at"], lang) if meeting.get("starts_at") else "",
                meeting.get("venue", ""),
                meeting.get("address", ""),
                links.get("cancel_url", ""),
            ],
            [links.get("confirm_url", "")],
        ),
        # The link to the minutes (in the mail's language), never the minutes' own text.
        "meeting_minutes_published": (
            [wg, f"{c.get('minutes_url', '')}?lang={lang}"],
            [links.get("confirm_url", ""), links.get("cancel_url", "")],
        ),
        "proposal_submitted": (
            [wg, c.get("status_url") or ""],
            [c.get("public_url") or "", *TYPED_BY_AUTHORS],
        ),
        "proposal_withdrawn": ([wg], [c.get("status_url") or "", *TYPED_BY_AUTHORS]),
        "proposal_published": (
            [c.get("public_statement") or "", c.get("public_url") or ""],
            [*TYPED_BY_AUTHORS],
        ),
        "proposal_rejected": ([c.get("public_statement", "")], [*TYPED_BY_AUTHORS]),
        "proposal_changes_requested": (
            [c.get("public_statement", ""), c.get("edit_url", "")],
            [c.get("public_url") or "-", *TYPED_BY_AUTHORS],
        ),
        "proposal_marked_duplicate": (
            [c.get("public_statement", ""), c.get("duplicate_of_url") or ""],
            [*TYPED_BY_AUTHORS, "Sprachcafé für alle"],
        ),
        "proposal_outcome_decided": (
            [wg, c.get("public_statement", ""), c.get("public_url") or ""],
            [c.get("outcome", ""), *TYPED_BY_AUTHORS],
        ),
        "privacy_erasure_request_submitted": ([c.get("confirm_url", ""), str(c.get("valid_hours"))], []),
        # The last mail of an erasure: no link, no address, nothing about the person.
        "privacy_erasure_finished": ([], ["http://", "https://localhost", "@example.org"]),
    }
    present, absent = facts[name]
    return [f for f in present if f], [f for f in absent if f]


def opening_tag(html: str, tag: str) -> str:
    match = re.search(rf"<{tag}\b[^>]*>", html)
    assert match, f"no <{tag}> element"
    return match.group(0)


# --- completeness -------------------------------------------------------------------------------------


def test_samples_cover_one_template_per_event() -> None:
    assert len(TEMPLATES) == len(set(TEMPLATES))
    assert set(TEMPLATES) == {template_name(key) for key in NOTIFICATION_MAIL.routing_keys}


def test_every_language_has_a_catalog_and_every_template_every_part() -> None:
    assert set(RENDERER.languages()) == set(LANGUAGES)
    missing = [
        f"{name}.{part}.j2"
        for name in TEMPLATES
        for part in ("subject", "txt", "html")
        if not (RENDERER.directory / f"{name}.{part}.j2").exists()
    ]
    assert missing == []


def test_templates_never_mark_values_safe() -> None:
    offenders = [
        str(path.relative_to(RENDERER.directory))
        for path in RENDERER.directory.rglob("*.j2")
        if re.search(r"\|\s*safe\b", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


# --- golden: every template in every language ----------------------------------------------------------


OPT_IN_TEMPLATES = ("registration_submitted", "registration_resubmitted")
PROPOSAL_TEMPLATES = tuple(name for name in TEMPLATES if name.startswith("proposal_"))
# Mails that address nobody by name: mails to an address nobody has proven (opt-in mails, an expired
# registration, every mail to a proposal's author) and the erasure mails (the request names nobody; the
# last mail is sent when nothing about the person is left).
NAMELESS_TEMPLATES = (
    *OPT_IN_TEMPLATES,
    "registration_expired",
    *PROPOSAL_TEMPLATES,
    "privacy_erasure_request_submitted",
    "privacy_erasure_finished",
)
# What the sample proposals' authors typed: never in a mail, since their address is not proven.
TYPED_BY_AUTHORS = ("Sprachcafé im Stadtteiltreff",)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", TEMPLATES)
def test_template_renders_in_language(name: str, lang: str) -> None:
    context = ctx(name)
    mail = render(name, lang, context)

    assert mail.language == lang  # no fallback: every language is complete
    assert mail.subject.strip() and "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.text.strip() and mail.html.strip()
    assert_clean(mail)

    name_of_recipient = context["recipient"]["name"]
    if name in NAMELESS_TEMPLATES:
        # Whoever typed the name has not proven the address yet: an opt-in mail never shows it.
        for typed in filter(None, (name_of_recipient, "Ayşe Yılmaz")):
            assert typed not in mail.text and typed not in mail.html
    else:
        assert name_of_recipient in mail.text
        assert name_of_recipient in mail.html

    direction = "rtl" if lang == "ar" else "ltr"
    html_tag = opening_tag(mail.html, "html")
    container = opening_tag(mail.html, "div")
    for tag in (html_tag, container):
        assert f'lang="{lang}"' in tag
        assert f'dir="{direction}"' in tag

    # The office footer, in both parts.
    for value in FOOTER.values():
        assert value in mail.text
        assert str(escape(value)) in mail.html
    assert mail.text.rstrip().endswith(FOOTER["privacy_url"])

    present, absent = key_facts(name, context, lang)
    assert_in_both(mail, *present)
    assert_in_neither(mail, *absent)


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != FALLBACK_LANGUAGE])
@pytest.mark.parametrize("name", TEMPLATES)
def test_text_and_html_differ_by_language(name: str, lang: str) -> None:
    """A translated template must not be a copy of the German one."""
    mail, german = render(name, lang), render(name, FALLBACK_LANGUAGE)
    assert mail.subject != german.subject
    assert mail.text != german.text
    assert mail.html != german.html


# --- escaping and fallback ----------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_html_part_escapes_what_a_person_typed(lang: str) -> None:
    context = ctx("registration_confirmed")
    context["recipient"]["name"] = "<script>alert(1)</script>"
    mail = render("registration_confirmed", lang, context)
    assert "<script>" not in mail.html
    assert "&lt;script&gt;" in mail.html
    assert "<script>alert(1)</script>" in mail.text  # plain text is not HTML


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_working_group_title_is_escaped_and_subject_stays_one_line(lang: str) -> None:
    context = ctx("registration_submitted")
    context["working_group"]["title"] = "Café <b>für</b>\r\nalle & jeden"
    mail = render("registration_submitted", lang, context)
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert "Café <b>für</b> alle & jeden" in mail.subject
    assert "<b>" not in mail.html
    assert "&lt;b&gt;für&lt;/b&gt;" in mail.html
    assert "&amp; jeden" in mail.html


def test_unknown_language_falls_back_to_german() -> None:
    mail = render("registration_confirmed", "fr")
    german = render("registration_confirmed", "de")
    assert mail.language == "de"
    assert (mail.subject, mail.text, mail.html) == (german.subject, german.text, german.html)
    assert 'lang="de"' in opening_tag(mail.html, "html")
    assert 'dir="ltr"' in opening_tag(mail.html, "html")


# --- variants: statuses and optional values -----------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_resubmitted_pending_confirmation_asks_to_confirm(lang: str) -> None:
    context = ctx("registration_resubmitted")
    context.update(status="pending_confirmation", waitlist_position=None)
    mail = render("registration_resubmitted", lang, context)
    assert_clean(mail)
    assert_in_both(mail, context["links"]["confirm_url"])
    assert_in_neither(mail, context["links"]["cancel_url"], context["links"]["status_url"])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_resubmitted_confirmed_gives_status_and_cancel_links(lang: str) -> None:
    context = ctx("registration_resubmitted")
    context.update(status="confirmed", waitlist_position=None)
    mail = render("registration_resubmitted", lang, context)
    assert_clean(mail)
    assert_in_both(mail, context["links"]["status_url"], context["links"]["cancel_url"])
    assert_in_neither(mail, context["links"]["confirm_url"])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_resubmitted_statuses_read_differently(lang: str) -> None:
    texts = set()
    for status, position in (("pending_confirmation", None), ("confirmed", None), ("waitlisted", 7)):
        context = ctx("registration_resubmitted")
        context.update(status=status, waitlist_position=position)
        texts.add(render("registration_resubmitted", lang, context).text)
    assert len(texts) == 3
    context = ctx("registration_resubmitted")
    context.update(status="waitlisted", waitlist_position=7)
    assert_in_both(render("registration_resubmitted", lang, context), "7")
    context["waitlist_position"] = None  # a waitlisted status without a known position still renders
    assert_clean(render("registration_resubmitted", lang, context))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_outcome_is_translated_not_shown_raw(lang: str) -> None:
    texts = set()
    for outcome in ("adopted", "partially_adopted", "not_adopted"):
        context = ctx("proposal_outcome_decided")
        context["outcome"] = outcome
        mail = render("proposal_outcome_decided", lang, context)
        assert_clean(mail)
        if "_" in outcome:  # "adopted" is also the English word; the others must never show raw
            assert_in_neither(mail, outcome)
        texts.add(mail.text)
    assert len(texts) == 3


def _variants() -> list[tuple[str, dict[str, Any]]]:
    variants: list[tuple[str, dict[str, Any]]] = []
    undated = {"starts_at": None, "venue": "", "address": ""}
    for name in TEMPLATES:
        context = ctx(name)
        if "meetings" in context:
            context["meetings"] = [{**m, **undated} for m in context["meetings"]]
            if name != "registration_submitted":  # the double opt-in mail always has its confirm link
                context["links"] = {"confirm_url": None, "status_url": None, "cancel_url": None}
            variants.append((name, context))
        if "meeting" in context:
            context["meeting"] = {**context["meeting"], **undated}
            if "previous" in context:
                context["previous"] = None
            context["links"] = {"confirm_url": None, "status_url": None, "cancel_url": None}
            variants.append((name, context))
        if "proposal_id" in context:
            context["district"] = None
            context["public_url"] = None
            if "public_statement" in context and name == "proposal_published":
                context["public_statement"] = None
            if name == "proposal_marked_duplicate":
                context.update(duplicate_of_title="", duplicate_of_url=None)
            variants.append((name, context))
    return variants


VARIANTS = _variants()


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(("name", "context"), VARIANTS, ids=[name for name, _ in VARIANTS])
def test_optional_values_may_be_null(name: str, context: dict[str, Any], lang: str) -> None:
    mail = render(name, lang, copy.deepcopy(context))
    assert mail.language == lang
    assert_clean(mail)
    named = context["recipient"]["name"]
    assert bool(named and named in mail.text) is (name not in NAMELESS_TEMPLATES)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_rescheduled_without_previous_and_with_previous_date(lang: str) -> None:
    context = ctx("meeting_rescheduled")
    previous_date = when(context["previous"]["starts_at"], lang)
    new_date = when(context["meeting"]["starts_at"], lang)
    assert previous_date != new_date
    with_previous = render("meeting_rescheduled", lang, context)
    assert_in_both(with_previous, new_date, previous_date)
    context["previous"] = None
    without_previous = render("meeting_rescheduled", lang, context)
    assert_clean(without_previous)
    assert_in_both(without_previous, new_date)
    assert_in_neither(without_previous, previous_date)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_calendar_sentence_only_when_a_calendar_is_attached(lang: str) -> None:
    """The confirmed mail says a calendar entry is attached; with no dated meeting there is none."""
    dated = render("registration_confirmed", lang)
    context = ctx("registration_confirmed")
    context["meetings"] = [{**m, "starts_at": None} for m in context["meetings"]]
    assert calendar_for("registration_confirmed", context, "de") is None
    undated = render("registration_confirmed", lang, context)
    assert_clean(undated)
    # The same mail, less the one paragraph about the attachment.
    assert len(dated.text.split("\n\n")) == len(undated.text.split("\n\n")) + 1
    assert len(re.findall(r"<p>", dated.html)) == len(re.findall(r"<p>", undated.html)) + 1


# --- calendar attachments -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CALENDAR_TEMPLATES))
def test_calendar_parses_back(name: str) -> None:
    context = ctx(name)
    part = calendar_for(name, context, "de")
    assert part is not None
    expected_method = "CANCEL" if name in CANCEL_TEMPLATES else "PUBLISH"
    assert part.method == expected_method

    cal = Calendar.from_ical(part.data)
    assert str(cal["METHOD"]) == expected_method
    events = list(cal.walk("VEVENT"))
    meetings = context.get("meetings") or [context["meeting"]]
    dated = [m for m in meetings if m.get("starts_at")]
    assert len(events) == len(dated) >= 1
    for vevent, meeting in zip(events, dated, strict=True):
        assert str(vevent["UID"]) == event_uid(context["registration_id"], meeting["number"])
        # A registration's cancellation outranks the meeting's latest version, which the person was sent.
        bump = 1 if name == "registration_cancelled" else 0
        assert int(vevent["SEQUENCE"]) == meeting["sequence"] + bump
        starts = vevent["DTSTART"].dt
        assert starts == datetime.fromisoformat(meeting["starts_at"]).astimezone(UTC)
        expected_status = "CANCELLED" if name in CANCEL_TEMPLATES else "CONFIRMED"
        assert str(vevent["STATUS"]) == expected_status


def test_no_calendar_when_cancelling_from_the_waitlist() -> None:
    context = {**ctx("registration_cancelled"), "previous_status": "waitlisted"}
    assert calendar_for("registration_cancelled", context, "de") is None


def test_no_calendar_for_the_other_templates() -> None:
    for name in TEMPLATES:
        if name in CALENDAR_TEMPLATES:
            continue
        context = ctx(name)
        assert calendar_for(name, context, "de") is None


# --- sentences translated when a template is compiled --------------------------------------------------


def _rendered_with_lookups_at_render_time(name: str, lang: str, context: dict[str, Any]) -> RenderedMail:
    """The same template through a plain environment: every sentence looked up in the catalog as the
    template renders, the way Jinja's i18n extension does it."""
    from jinja2 import FileSystemLoader

    from services.notification import rendering
    from services.notification.mail import one_line
    from shared import i18n

    env = i18n.template_environment(FileSystemLoader(str(rendering.TEMPLATES_DIR)))
    env.filters.update(RENDERER.environment(lang).filters)
    language = i18n.resolve(lang)
    full = {
        **context,
        **i18n.gettext_callables(language),
        "lang": language,
        "dir": i18n.text_direction(language),
        "footer": FOOTER,
    }
    subject, text, html = (env.get_template(f"{name}.{part}.j2").render(full) for part in rendering.PARTS)
    return RenderedMail(language=language, subject=one_line(subject), text=text, html=html)


@pytest.mark.parametrize("lang", [*sorted(LANGUAGES), "xx"])
def test_translating_when_compiling_renders_every_mail_exactly_as_looking_up_when_rendering(lang):
    """The renderer translates each sentence once, when it compiles a template for a language: every
    template, in every language (and the fallback), with a value that needs escaping in a placeholder,
    comes out character for character as with the lookups at render time."""
    for name in TEMPLATES:
        context = ctx(name)
        if "recipient" in context:
            context["recipient"]["name"] = "Ayşe <b>&</b> O'Brien"
        if "working_group" in context:
            context["working_group"]["title"] = "Sprache & <Arbeit>"
        assert RENDERER.render(
            name, lang, copy.deepcopy(context), FOOTER
        ) == _rendered_with_lookups_at_render_time(name, lang, copy.deepcopy(context)), (name, lang)
