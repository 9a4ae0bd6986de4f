"""The proposals' pages behind the links in mails: the author's private page (follow the proposal,
change it when the moderation asked for changes — a form —, withdraw it) and a published proposal's
public page. A GET only shows; every change is a POST from a button. Sentences come from the gettext
catalogs (``pgettext("page", …)``) in the proposal's language; the frame is ``shared.pages``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.proposals.domain import BODY_LENGTH, TITLE_LENGTH
from shared.pages import LANGUAGE_NAMES, Frame, environment, page_link

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


def public_page(frame: Frame, view: dict[str, Any], share_url: str = "", list_url: str = "") -> str:
    return frame.render(
        view["title"],
        _PUBLIC,
        view=view,
        status_text=status_text(frame, view["status"]),
        outcome_text=outcome_text(frame, view.get("outcome")),
        share_url=share_url,
        list_url=list_url,
    )


# --- the proposal form and the published proposals (issue 26) --------------------------------------------

NEW = "/v1/proposals/new"
SUBMIT = "/v1/proposals"
PUBLISHED = "/v1/proposals"
_FORM = _env.get_template("proposal_form.html.j2")
_SENT = _env.get_template("proposal_sent.html.j2")
_LIST = _env.get_template("published_list.html.j2")


def _options(rows: list[dict[str, Any]], label: str) -> list[dict[str, str]]:
    return [{"value": r["id"], "label": r[label]} for r in rows]


def proposal_form_page(
    frame: Frame,
    groups: list[dict[str, Any]],
    districts: list[dict[str, Any]],
    form: dict[str, str],
    form_key: str,
    *,
    errors: dict[str, str] | None = None,
    problem: str = "",
) -> str:
    """The proposal form: working group, district, title, text (its live count is the script's
    enhancement), the language, the optional name and address with what happens to them, consent."""
    return frame.render(
        frame.pgettext("page", "Send a proposal"),
        _FORM,
        failed=bool(errors or problem),
        script=True,
        groups=_options(groups, "title"),
        districts=_options(districts, "name"),
        form={"language": frame.language, **form},
        form_key=form_key,
        errors=errors or {},
        problem=problem,
        action=SUBMIT,
        limits={"title": TITLE_LENGTH, "body": BODY_LENGTH},
        count_text=frame.pgettext("page", "%(count)s of %(max)s characters"),
        languages=[{"value": code, "label": name, "lang": code} for code, name in LANGUAGE_NAMES.items()],
        privacy_url=frame.identity.privacy_url,
    )


def proposal_sent_page(frame: Frame, with_address: bool) -> str:
    """The answer to the form (the API's 202): what pre-moderation means."""
    return frame.render(
        frame.pgettext("page", "Proposal received"),
        _SENT,
        with_address=with_address,
        published=page_link(PUBLISHED, lang=frame.language),
        again=page_link(NEW, lang=frame.language),
    )


def proposal_field_error(frame: Frame, field: str) -> str:
    if field in ("title", "body", "district_id"):
        return field_error(frame, field)
    messages = {
        "working_group_id": frame.pgettext("page", "Choose a working group."),
        "language": frame.pgettext("page", "Choose the language of your proposal."),
        "author_name": frame.pgettext("page", "The name may have at most 100 characters on one line."),
        "author_email": frame.pgettext("page", "Enter an e-mail address like name@example.org."),
        "privacy_consent": frame.pgettext("page", "Agree to the privacy notice to send your proposal."),
    }
    return messages.get(field, invalid_form(frame))


def published_list_page(
    frame: Frame,
    page: dict[str, Any],
    groups: list[dict[str, Any]],
    districts: list[dict[str, Any]],
    filters: dict[str, str],
) -> str:
    """The published proposals by working group and district, with search; the API's keyset pages as
    "more" links (each a plain link, shareable)."""
    items = [
        {
            **item,
            "href": page_link(f"{PUBLISHED}/{item['id']}", lang=frame.language),
            "outcome_text": outcome_text(frame, item.get("outcome")),
        }
        for item in page["items"]
    ]
    more = ""
    if page.get("next_cursor"):
        more = page_link(PUBLISHED, **filters, cursor=page["next_cursor"], lang=frame.language)
    return frame.render(
        frame.pgettext("page", "Proposals of the residents"),
        _LIST,
        items=items,
        more=more,
        groups=_options(groups, "title"),
        districts=_options(districts, "name"),
        filters={"q": "", "working_group_id": "", "district_id": "", **filters},
        action=PUBLISHED,
        new=page_link(NEW, lang=frame.language),
    )
