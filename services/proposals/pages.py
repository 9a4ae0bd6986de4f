"""The proposals' pages behind the links in mails: the author's private page (follow the proposal,
change it when the moderation asked for changes — a form —, withdraw it) and a published proposal's
public page. A GET only shows; every change is a POST from a button. Sentences come from the gettext
catalogs (``pgettext("page", …)``) in the proposal's language; the frame is ``shared.pages``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.proposals.domain import BODY_LENGTH, TITLE_LENGTH
from shared.pages import Frame, environment

MINE = "/v1/proposals/mine"
EDIT = "/v1/proposals/mine/edit"
WITHDRAW = "/v1/proposals/mine/withdraw"

_env = environment(Path(__file__).resolve().parent / "templates")
_AUTHOR = _env.get_template("author.html.j2")
_PUBLIC = _env.get_template("public.html.j2")


def status_text(frame: Frame, status: str) -> str:
    texts = {
        "submitted": frame.pgettext("page", "Waiting for moderation: a moderator reads it soon."),
        "published": frame.pgettext("page", "Published."),
        "rejected": frame.pgettext("page", "Not published."),
        "changes_requested": frame.pgettext(
            "page", "The moderation asks you to change your proposal (see below)."
        ),
        "duplicate": frame.pgettext("page", "Merged with a similar proposal."),
        "withdrawn": frame.pgettext("page", "Withdrawn."),
    }
    return texts.get(status, status)


def outcome_text(frame: Frame, outcome: str | None) -> str:
    texts = {
        "adopted": frame.pgettext("page", "Adopted."),
        "partially_adopted": frame.pgettext("page", "Partly adopted."),
        "not_adopted": frame.pgettext("page", "Not adopted."),
    }
    return texts.get(outcome or "", "")


def author_page(
    frame: Frame,
    view: dict[str, Any],
    token: str,
    districts: list[dict[str, Any]],
    *,
    notice: str = "",
    problem: str = "",
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
) -> str:
    typed = {
        "title": view["title"],
        "body": view["body"],
        "district_id": (view.get("district") or {}).get("id", ""),
        **(form or {}),
    }
    return frame.render(
        frame.pgettext("page", "Your proposal"),
        _AUTHOR,
        view=view,
        token=token,
        districts=districts,
        status_text=status_text(frame, view["status"]),
        outcome_text=outcome_text(frame, view.get("outcome")),
        public_url=view.get("public_url") or "",
        notice=notice,
        problem=problem,
        errors=errors or {},
        form=typed,
        limits={"title": TITLE_LENGTH, "body": BODY_LENGTH},
        edit_action=EDIT,
        withdraw_action=WITHDRAW,
    )


def edited_notice(frame: Frame) -> str:
    return frame.pgettext(
        "page", "Thank you. Your changed proposal is back with the moderation; you will get an e-mail."
    )


def withdrawn_notice(frame: Frame) -> str:
    return frame.pgettext("page", "Your proposal has been withdrawn.")


def invalid_form(frame: Frame) -> str:
    return frame.pgettext("page", "Please correct the marked fields.")


def field_error(frame: Frame, field: str) -> str:
    if field == "title":
        return frame.pgettext(
            "page", "The title needs %(min)s to %(max)s characters on one line.",
            min=TITLE_LENGTH[0], max=TITLE_LENGTH[1],
        )  # fmt: skip
    if field == "body":
        return frame.pgettext(
            "page", "The text needs %(min)s to %(max)s characters.", min=BODY_LENGTH[0], max=BODY_LENGTH[1]
        )
    return frame.pgettext("page", "Please choose a district from the list.")


def not_possible(frame: Frame) -> str:
    return frame.pgettext("page", "This is no longer possible: the proposal's status has changed.")


def public_page(frame: Frame, view: dict[str, Any]) -> str:
    return frame.render(
        view["title"],
        _PUBLIC,
        view=view,
        status_text=status_text(frame, view["status"]),
        outcome_text=outcome_text(frame, view.get("outcome")),
    )
