"""The small pages behind the links in mails. A GET only shows a page with a button (mail scanners open
links); the button POSTs the form. Sentences come from the gettext catalogs (``shared/locale``), in
the person's language; everything is HTML-escaped."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape

from shared import i18n

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_PAGE = _env.from_string(
    """<!DOCTYPE html>
<html lang="{{ lang }}" dir="{{ dir }}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{ title }}</title></head>
<body style="font-family: Arial, Helvetica, sans-serif; max-width: 36em; margin: 2em auto; padding: 0 1em;">
<h1>{{ title }}</h1>
<p>{{ message }}</p>
{% if action %}
<form method="post" action="{{ action }}">
<input type="hidden" name="token" value="{{ token }}">
<button type="submit" style="font-size: 1.1em; padding: 0.6em 1.2em;">{{ button }}</button>
</form>
{% endif %}
</body></html>"""
)


def _page(language: str, title: str, message: str, **form: Any) -> str:
    language = i18n.resolve(language)
    return _PAGE.render(
        lang=language, dir=i18n.text_direction(language), title=title, message=message, **form
    )


def action_page(language: str, kind: str, working_group_title: str, action: str, token: str) -> str:
    pgettext = i18n.translations(language).pgettext
    if kind == "confirm":
        title = pgettext("page", "Confirm your registration")
        intro = pgettext("page", "Please confirm your registration for the working group “%(title)s”.")
        button = pgettext("page", "Confirm registration")
    else:
        title = pgettext("page", "Cancel your registration")
        intro = pgettext(
            "page",
            "Do you want to cancel your registration for the working group “%(title)s”? Your seat goes"
            " to the next person on the waiting list.",
        )
        button = pgettext("page", "Cancel registration")
    message = intro % {"title": working_group_title}
    return _page(language, title, message, button=button, action=action, token=token)


def result_page(language: str, state: dict) -> str:
    pgettext = i18n.translations(language).pgettext
    messages = {
        "confirmed": pgettext(
            "page", "Your registration is confirmed. You will receive an e-mail with the dates."
        ),
        "waitlisted": pgettext(
            "page", "All seats are taken. You are on the waiting list, position %(position)s."
        ),
        "cancelled": pgettext("page", "Your registration has been cancelled."),
    }
    message = messages.get(state.get("status", ""), "") % {"position": state.get("waitlist_position", "")}
    return _page(language, pgettext("page", "Confirm your registration"), message)


def not_found_page(language: str = "de") -> str:
    pgettext = i18n.translations(language).pgettext
    return _page(
        language,
        pgettext("page", "Confirm your registration"),
        pgettext("page", "This link is unknown or has expired."),
    )


# --- erasure on request (Art. 17) -----------------------------------------------------------------------


def erasure_page(language: str, action: str, token: str) -> str:
    pgettext = i18n.translations(language).pgettext
    return _page(
        language,
        pgettext("page", "Delete your data"),
        pgettext(
            "page",
            "Do you want us to delete all data about your e-mail address? Registrations for working groups"
            " will be cancelled; your proposals stay, without your name.",
        ),
        button=pgettext("page", "Delete my data now"),
        action=action,
        token=token,
    )


def erasure_started_page(language: str) -> str:
    pgettext = i18n.translations(language).pgettext
    return _page(
        language,
        pgettext("page", "Delete your data"),
        pgettext(
            "page", "We are deleting your data. When everything is deleted, you will receive one last e-mail."
        ),
    )
