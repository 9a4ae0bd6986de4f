"""The measures' pages: a measure with its council decision, proposals and timeline (and the form to
follow it), and the pages behind the followers' links (confirm, unsubscribe), each a GET that only shows
and a POST from a button that acts. Sentences come from the gettext catalogs (``pgettext("page", …)``);
the frame is ``shared.pages``; staff-written text is shown as German."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.pages import Frame, environment

_env = environment(Path(__file__).resolve().parent / "templates")
_MEASURE = _env.get_template("measure.html.j2")
_FOLLOW = _env.get_template("follow.html.j2")


def status_text(frame: Frame, status: str) -> str:
    texts = {
        "proposed": frame.pgettext("page", "Proposed to the city council."),
        "planned": frame.pgettext("page", "Planned."),
        "in_progress": frame.pgettext("page", "In progress."),
        "done": frame.pgettext("page", "Done."),
        "dropped": frame.pgettext("page", "Dropped."),
    }
    return texts.get(status, status)


def decision_text(frame: Frame, decision: str | None) -> str:
    texts = {
        "adopted": frame.pgettext("page", "Adopted by the city council."),
        "amended": frame.pgettext("page", "Adopted by the city council with changes."),
        "rejected": frame.pgettext("page", "Rejected by the city council."),
    }
    return texts.get(decision or "", "")


def measure_page(frame: Frame, view: dict[str, Any], *, notice: str = "") -> str:
    timeline = [{**entry, "status_text": status_text(frame, entry["status"])} for entry in view["timeline"]]
    return frame.render(
        view["title"],
        _MEASURE,
        view=view,
        notice=notice,
        status_text=status_text(frame, view["status"]),
        decision_text=decision_text(frame, (view.get("council_decision") or {}).get("decision")),
        timeline=timeline,
        follow_action=f"/v1/measures/{view['id']}/followers",
    )


def follow_requested_notice(frame: Frame) -> str:
    return frame.pgettext("page", "Thank you. Please confirm with the link in the e-mail we are sending you.")


def _message(frame: Frame, title: str, lines: list[str], **context: Any) -> str:
    return frame.render(
        title, _FOLLOW, lines=lines, action=context.get("action", ""), button=context.get("button", ""),
        measure_url=context.get("measure_url", ""),
    )  # fmt: skip


def confirm_page(frame: Frame, view: dict[str, Any], token: str) -> str:
    if view["confirmed"]:
        return confirmed_page(frame, view)
    return _message(
        frame,
        frame.pgettext("page", "Follow this measure"),
        [frame.pgettext("page", "Do you want e-mails about “%(title)s”?", title=view["title"])],
        action=f"/v1/measures/followers/confirm?token={quote(token)}",
        button=frame.pgettext("page", "Yes, send me e-mails"),
    )


def confirmed_page(frame: Frame, view: dict[str, Any]) -> str:
    return _message(
        frame,
        frame.pgettext("page", "Follow this measure"),
        [frame.pgettext("page", "You follow “%(title)s” now.", title=view["title"])],
        measure_url=f"/v1/measures/{view['measure_id']}",
    )


def unsubscribe_page(frame: Frame, measure_id: str, token: str) -> str:
    return _message(
        frame,
        frame.pgettext("page", "No more e-mails about this measure"),
        [frame.pgettext("page", "Do you want to stop the e-mails about this measure?")],
        action=f"/v1/measures/{measure_id}/unsubscribe?token={quote(token)}",
        button=frame.pgettext("page", "Stop the e-mails"),
    )


def unsubscribed_page(frame: Frame, measure_id: str) -> str:
    return _message(
        frame,
        frame.pgettext("page", "No more e-mails about this measure"),
        [frame.pgettext("page", "You will get no more e-mails about this measure.")],
        measure_url=f"/v1/measures/{measure_id}",
    )
