"""The registration's pages behind the links in mails: confirm, "your registration" (status), cancel,
and what a form post answers. A GET only shows a page (mail scanners open links); every change is a
POST from a button. Sentences come from the gettext catalogs (``pgettext("page", …)``), in the person's
language; the frame (identity, language switch, privacy link, stylesheet) is ``shared.pages``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.registration.service import PageView
from shared import i18n
from shared.pages import LANGUAGE_NAMES, MESSAGE, Frame, environment, page_link
from shared.qr import qr_svg

CONFIRM = "/v1/registrations/confirm"
CANCEL = "/v1/registrations/cancel"
STATUS = "/v1/registrations/me"
CALENDAR = "/v1/registrations/me/calendar.ics"

_env = environment(Path(__file__).resolve().parent / "templates")
_CONFIRM = _env.get_template("confirm.html.j2")
_STATUS = _env.get_template("status.html.j2")
_CANCEL = _env.get_template("cancel.html.j2")
_ERASURE = _env.get_template("erasure.html.j2")
_ERASURE_STATUS = _env.get_template("erasure_status.html.j2")


def _meetings(frame: Frame, view: PageView) -> list[dict[str, Any]]:
    items = []
    for m in view.meetings:
        when = ""
        if m.starts_at is not None:
            when = i18n.format_datetime(m.starts_at, frame.language)
            if m.ends_at is not None:
                when += "–" + i18n.format_time_of_day(m.ends_at, frame.language)
        items.append(
            {
                "label": frame.pgettext("page", "Meeting %(number)s", number=m.number),
                "when": when,
                "iso": m.starts_at.astimezone(i18n.BERLIN).isoformat() if m.starts_at else "",
                "venue": m.venue,
                "address": m.address,
                "cancelled": m.cancelled,
            }
        )
    return items


def _status_text(frame: Frame, view: PageView) -> str:
    if view.status == "confirmed":
        return frame.pgettext("page", "Confirmed: you have a seat.")
    if view.status == "waitlisted":
        return frame.pgettext(
            "page", "On the waiting list, position %(position)s.", position=view.waitlist_position
        )
    return frame.pgettext("page", "Not confirmed yet.")


def confirm_page(frame: Frame, view: PageView, token: str, hours: float) -> str:
    return frame.render(
        frame.pgettext("page", "Confirm your registration"),
        _CONFIRM,
        view=view,
        meetings=_meetings(frame, view),
        token=token,
        action=CONFIRM,
        hours=f"{hours:g}",
    )


def status_page(frame: Frame, view: PageView, token: str, notice: str = "") -> str:
    return frame.render(
        frame.pgettext("page", "Your registration"),
        _STATUS,
        view=view,
        notice=notice,
        status_text=_status_text(frame, view),
        meetings=_meetings(frame, view),
        has_dates=any(m.starts_at is not None for m in view.meetings),
        token=token,
        confirm=CONFIRM,
        calendar=page_link(CALENDAR, token=token),
        cancel=page_link(CANCEL, token=token, lang=frame.language),
        qr=(
            qr_svg(view.check_in_code, frame.pgettext("page", "QR code of your check-in code"))
            if view.status == "confirmed" and view.check_in_code
            else ""
        ),
    )


def confirmed_notice(frame: Frame, view: PageView) -> str:
    if view.status == "waitlisted":
        return frame.pgettext(
            "page",
            "All seats are taken. You are on the waiting list, position %(position)s.",
            position=view.waitlist_position,
        )
    return frame.pgettext(
        "page", "Your registration is confirmed. You will receive an e-mail with the dates."
    )


def cancel_page(frame: Frame, view: PageView, token: str) -> str:
    return frame.render(
        frame.pgettext("page", "Cancel your registration"),
        _CANCEL,
        view=view,
        token=token,
        action=CANCEL,
        status=page_link(STATUS, token=token, lang=frame.language),
    )


def cancelled_page(frame: Frame) -> str:
    return frame.render(
        frame.pgettext("page", "Registration cancelled"),
        MESSAGE,
        lines=[frame.pgettext("page", "Your registration has been cancelled.")],
    )


# --- erasure on request (Art. 17) -----------------------------------------------------------------------

ERASURE_CONFIRM = "/v1/privacy/erasure-requests/confirm"


def erasure_status_link(request_id: object, token: str, language: str) -> str:
    return page_link(f"/v1/privacy/erasure-requests/{request_id}", token=token, lang=language)


def erasure_page(frame: Frame, token: str) -> str:
    """Behind the mailed link: what deleting means, and the button that starts it."""
    return frame.render(
        frame.pgettext("page", "Delete your data"),
        _ERASURE,
        token=token,
        action=ERASURE_CONFIRM,
    )


def erasure_status_page(frame: Frame, status: str, status_link: str = "") -> str:
    """What became of the request (after the button, and behind the status link)."""
    if status == "completed":
        line = frame.pgettext("page", "All your data has been deleted.")
    elif status == "erasing":
        line = frame.pgettext(
            "page", "We are deleting your data. When everything is deleted, you will receive one last e-mail."
        )
    else:
        line = frame.pgettext("page", "Not confirmed yet.")
    return frame.render(
        frame.pgettext("page", "Delete your data"), _ERASURE_STATUS, line=line, status_link=status_link
    )


# --- the registration form (issue 26) ---------------------------------------------------------------------

NEW = "/v1/registrations/new"
REGISTER = "/v1/registrations"
_FORM = _env.get_template("registration_form.html.j2")
_SENT = _env.get_template("registration_sent.html.j2")

# The plain choices of "Do you need anything to take part?": form field -> what the office reads in the
# participant list (German, the staff's language; the resident reads the label in theirs).
NEEDS = {
    "needs_step_free": "Stufenloser Zugang (Rollstuhl)",
    "needs_sign_language": "Gebärdensprachdolmetschung",
    "needs_hearing_loop": "Höranlage (Induktionsschleife)",
    "needs_easy_language": "Leichte Sprache",
    "needs_childcare": "Kinderbetreuung",
}
# Interpreting into: the code is stored (``interpretation_language``), the name is shown in the language
# itself (as the language switch does).
INTERPRETERS = {
    "ar": "العربية",
    "fa": "فارسی / دری",
    "ku": "Kurdî",
    "tr": "Türkçe",
    "ru": "Русский",
    "uk": "Українська",
    "en": "English",
    "fr": "Français",
    "ti": "ትግርኛ",
    "ps": "پښتو",
    "so": "Soomaali",
    "ro": "Română",
    "bg": "Български",
    "pl": "Polski",
    "sq": "Shqip",
}


def _needs(frame: Frame) -> list[dict[str, str]]:
    labels = {
        "needs_step_free": (
            frame.pgettext("page", "Step-free access"),
            frame.pgettext("page", "For a wheelchair, a walker or a pram."),
        ),
        "needs_sign_language": (
            frame.pgettext("page", "Sign language interpreting"),
            frame.pgettext("page", "German Sign Language (DGS)."),
        ),
        "needs_hearing_loop": (
            frame.pgettext("page", "Hearing loop"),
            frame.pgettext("page", "For hearing aids."),
        ),
        "needs_easy_language": (
            frame.pgettext("page", "Easy language"),
            frame.pgettext("page", "Short sentences, few foreign words."),
        ),
        "needs_childcare": (
            frame.pgettext("page", "Childcare"),
            frame.pgettext("page", "Someone looks after your children during the meeting."),
        ),
    }
    return [{"name": name, "label": labels[name][0], "hint": labels[name][1]} for name in NEEDS]


def _participant_types(frame: Frame) -> list[dict[str, str]]:
    return [
        {
            "value": "resident",
            "label": frame.pgettext("page", "As a resident"),
            "hint": frame.pgettext("page", "You live or work in the city."),
        },
        {
            "value": "expert",
            "label": frame.pgettext("page", "As an expert"),
            "hint": frame.pgettext("page", "You bring professional knowledge, for example from counselling or schools."),
        },
        {
            "value": "organization",
            "label": frame.pgettext("page", "For an organisation"),
            "hint": frame.pgettext("page", "You represent an association, an initiative or an institution."),
        },
    ]  # fmt: skip


def _seats(frame: Frame, group: dict[str, Any]) -> str:
    if group["seats_left"] > 0:
        return frame.pgettext(
            "page",
            "Seats left: %(seats)s of %(capacity)s.",
            seats=group["seats_left"],
            capacity=group["capacity"],
        )
    return frame.pgettext(
        "page",
        "All seats are taken. New registrations go on the waiting list (waiting now: %(waiting)s).",
        waiting=group["waitlisted"],
    )


def _group_meetings(frame: Frame, group: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    for m in group["meetings"]:
        when = ""
        if m["starts_at"] is not None:
            when = i18n.format_datetime(m["starts_at"], frame.language)
            if m["ends_at"] is not None:
                when += "–" + i18n.format_time_of_day(m["ends_at"], frame.language)
        items.append(
            {
                "label": frame.pgettext("page", "Meeting %(number)s", number=m["number"]),
                "when": when,
                "iso": m["starts_at"].isoformat() if m["starts_at"] else "",
                "venue": m["venue"],
                "address": m["address"],
                "cancelled": m["cancelled"],
            }
        )
    return items


def registration_form_page(
    frame: Frame,
    groups: list[dict[str, Any]],
    form: dict[str, str],
    form_key: str,
    *,
    errors: dict[str, str] | None = None,
    problem: str = "",
) -> str:
    """The registration form: the working groups with their meetings and seats, every field API.md
    names, the errors at the top and at each field, the typed values kept."""
    return frame.render(
        frame.pgettext("page", "Register for a working group"),
        _FORM,
        failed=bool(errors or problem),
        groups=[{**g, "seats": _seats(frame, g), "meetings": _group_meetings(frame, g)} for g in groups],
        form={"language": frame.language, **form},
        form_key=form_key,
        errors=errors or {},
        problem=problem,
        action=REGISTER,
        languages=[{"value": code, "label": name, "lang": code} for code, name in LANGUAGE_NAMES.items()],
        participant_types=_participant_types(frame),
        needs=_needs(frame),
        interpreters=[{"value": code, "label": name, "lang": code} for code, name in INTERPRETERS.items()],
        privacy_url=frame.identity.privacy_url,
    )


def registration_sent_page(frame: Frame, email: str, hours: float) -> str:
    """The answer to the form (the API's 202): check your mail."""
    return frame.render(
        frame.pgettext("page", "Check your e-mail"),
        _SENT,
        email=email,
        hours=f"{hours:g}",
        again=page_link(NEW, lang=frame.language),
    )


def registration_field_error(frame: Frame, field: str) -> str:
    messages = {
        "working_group_id": frame.pgettext("page", "Choose a working group."),
        "name": frame.pgettext("page", "Enter your name (one line, at most 200 characters)."),
        "email": frame.pgettext("page", "Enter an e-mail address like name@example.org."),
        "language": frame.pgettext("page", "Choose the language of your e-mails."),
        "participant_type": frame.pgettext("page", "Choose how you take part."),
        "organization": frame.pgettext("page", "The organisation may have at most 200 characters on one line."),
        "district": frame.pgettext("page", "The district may have at most 200 characters on one line."),
        "accessibility_needs": frame.pgettext("page", "Describe what you need in at most 1000 characters."),
        "interpretation_language": frame.pgettext("page", "Choose a language from the list."),
        "privacy_consent": frame.pgettext("page", "Agree to the privacy notice to register."),
    }  # fmt: skip
    return messages.get(field, frame.pgettext("page", "Please correct the marked fields."))
