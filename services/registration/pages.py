"""The registration's pages behind the links in mails: confirm, "your registration" (status), cancel,
and what a form post answers. A GET only shows a page (mail scanners open links); every change is a
POST from a button. Sentences come from the gettext catalogs (``pgettext("page", …)``), in the person's
language; the frame (identity, language switch, privacy link, stylesheet) is ``shared.pages``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.registration.service import PageView
from shared import i18n
from shared.pages import MESSAGE, Frame, environment, page_link
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
