"""The frame of the resident pages: what every page behind a mailed link has in common, whichever
service owns the link.

A page speaks the person's language (their registration's or proposal's; ``?lang=xx`` switches, German
is the fallback, Arabic is right-to-left) with sentences from the gettext catalogs that the mails use
(``pgettext("page", …)``), shows the city's identity from the settings (the values of the mail footer)
and the privacy link, and needs nothing from elsewhere: one inline stylesheet allowed by its hash in the
Content-Security-Policy, no scripts, no fonts, no images. Every value is HTML-escaped.

Content negotiation: :func:`wants_html` says whether a request prefers a page (a browser) to JSON (an
API client, ``curl``, ``Accept: */*``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template
from markupsafe import Markup

from shared import i18n
from shared.languages import TABLE

# The names of the languages, each in itself (the language switch).
LANGUAGE_NAMES = {code: spoken.name for code, spoken in TABLE.items()}

# Phone first; contrast at least 4.5:1 (links #0b4f9c and text #1a1a1a on white: 8:1 and 17:1); a
# visible focus ring; every control and link in a list at least 44 px high. No quotes in here, so the
# text in the page is exactly the text hashed below.
CSS = (
    "html{font-family:system-ui,-apple-system,Segoe UI,Roboto,Arial,sans-serif;line-height:1.5;"
    "color:#1a1a1a;background:#fff;-webkit-text-size-adjust:100%}"
    "body{margin:0 auto;max-width:40rem;padding:0 1rem 2rem}"
    "header{border-bottom:4px solid #0b4f9c;padding:.5rem 0}"
    ".office{font-weight:bold;margin:.5rem 0}"
    "a{color:#0b4f9c;text-decoration:underline}"
    "a:focus-visible,button:focus-visible,input:focus-visible,textarea:focus-visible,"
    "select:focus-visible{outline:3px solid #1a1a1a;outline-offset:2px;box-shadow:0 0 0 6px #ffd500}"
    ".langs{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem}"
    ".langs a{display:inline-flex;align-items:center;min-height:44px;min-width:44px;padding:0 .5rem}"
    ".langs a[aria-current]{font-weight:bold;text-decoration:none;box-shadow:inset 0 -3px 0 #0b4f9c}"
    "h1{font-size:1.6rem;line-height:1.25;margin:1.25rem 0 .75rem}"
    "h2{font-size:1.2rem;margin:1.5rem 0 .5rem}"
    ".notice{border-inline-start:6px solid #0b4f9c;background:#eef4fb;padding:.75rem 1rem;margin:1rem 0}"
    ".problem{border-inline-start:6px solid #a4161a;background:#fdf0f0;padding:.75rem 1rem;margin:1rem 0}"
    ".problem a{display:inline-flex;align-items:center;min-height:44px}"
    ".meetings{list-style:none;padding:0;margin:0}"
    ".meetings li{border:1px solid #767676;border-radius:6px;padding:.75rem 1rem;margin:.5rem 0}"
    ".meetings strong{display:block}"
    ".text{white-space:pre-line;overflow-wrap:anywhere;border-inline-start:4px solid #767676;"
    "padding-inline-start:1rem;margin:.5rem 0}"
    "dl{margin:0}dt{font-weight:bold;margin-top:.5rem}dd{margin:0}"
    "form{margin:1.25rem 0}"
    "button,.button{display:inline-flex;align-items:center;justify-content:center;box-sizing:border-box;"
    "min-height:48px;min-width:44px;padding:.6rem 1.2rem;font:inherit;font-weight:bold;border-radius:6px;"
    "border:2px solid #0b4f9c;background:#0b4f9c;color:#fff;cursor:pointer;text-decoration:none}"
    ".secondary{background:#fff;color:#0b4f9c}"
    ".danger{background:#a4161a;border-color:#a4161a;color:#fff}"
    "label{display:block;font-weight:bold;margin:1rem 0 .25rem}"
    "input,textarea,select{display:block;width:100%;box-sizing:border-box;min-height:44px;font:inherit;"
    "padding:.5rem;border:2px solid #555;border-radius:4px;background:#fff;color:#1a1a1a}"
    "textarea{min-height:10rem}"
    ".hint{color:#4a4a4a;margin:0 0 .25rem}"
    ".field-error{color:#a4161a;font-weight:bold;margin:.25rem 0}"
    "footer{margin-top:2.5rem;border-top:1px solid #767676;padding-top:.75rem}"
    "footer address{font-style:normal}"
    "footer a{display:inline-flex;align-items:center;min-height:44px}"
    "bdi{unicode-bidi:isolate}"
    # The forms (GOV.UK patterns): groups of choices, the error summary, the honeypot out of sight.
    "fieldset{border:0;padding:0;margin:1.25rem 0 0}"
    "legend{font-weight:bold;font-size:1.1rem;padding:0}"
    ".choice{display:flex;align-items:flex-start;gap:.6rem;margin:.5rem 0;min-height:44px}"
    ".choice input{width:1.6rem;height:1.6rem;min-height:0;margin:.6rem 0 0;flex:none}"
    ".choice label{margin:.5rem 0 0;font-weight:normal}"
    ".choice .hint{margin:0}"
    ".error-summary{border:4px solid #a4161a;padding:.75rem 1rem;margin:1rem 0}"
    ".error-summary:focus{outline:3px solid #1a1a1a;box-shadow:0 0 0 6px #ffd500}"
    ".error-summary h2{margin-top:0}"
    ".error-summary a{color:#a4161a;font-weight:bold;display:inline-flex;min-height:44px;align-items:center}"
    ".invalid{border-inline-start:5px solid #a4161a;padding-inline-start:.75rem}"
    ".hp{position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;clip:rect(0 0 0 0);"
    "clip-path:inset(50%);white-space:nowrap;border:0}"
    ".groups{list-style:none;padding:0;margin:0}"
    ".group{border:1px solid #767676;border-radius:6px;padding:.5rem 1rem;margin:.5rem 0}"
    ".count{color:#4a4a4a;margin:.25rem 0}"
    ".results{list-style:none;padding:0}"
    ".results li{border-bottom:1px solid #767676;padding:.75rem 0}"
    ".results a{display:inline-flex;min-height:44px;align-items:center;font-weight:bold}"
    "table.list{border-collapse:collapse;width:100%;table-layout:fixed;margin:1rem 0}"
    "caption{text-align:start;font-weight:bold}"
    "table.list th,table.list td{border:1px solid #767676;padding:.25rem;text-align:start;"
    "overflow-wrap:anywhere;hyphens:auto}"
    "td.signature{height:2.5rem}svg.qr{display:block;margin:.5rem 0;background:#fff}"
    ".code{font-family:monospace;font-size:1.5rem;letter-spacing:.1em}"
    ".minutes a,.links a{display:inline-flex;align-items:center;min-height:44px;min-width:44px}"
)
CSS_SOURCE = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
# The one script a page may load (an enhancement only: the forms work without it), from the service
# itself: the live character count of the proposal form.
SCRIPT_PATH = "/v1/static/forms.js"
SCRIPT_FILE = Path(__file__).resolve().parent / "static" / "forms.js"


def page_csp(frame_ancestors: str = "'none'", *, scripts: bool = False) -> str:
    """Nothing but the inline stylesheet above, posting to the page's own service and, for a page that
    loads it, the service's own script file (never an inline script). ``frame_ancestors`` are the pages
    that may embed this one (``<SVC>_FRAME_ANCESTORS``: the city's CMS; ``'none'`` by default)."""
    script = "script-src 'self'; " if scripts else ""
    return (
        f"default-src 'none'; style-src '{CSS_SOURCE}'; {script}img-src 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors}; base-uri 'none'"
    )


PAGE_CSP = page_csp()
# Links carry a token in their URL: it must reach no other site through the Referer header.
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "Vary": "Accept"}

SHARED_TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment(directory: Path) -> Environment:
    """The template environment of a service's page bodies (``directory``), with the frame
    (``shared/templates/page.html.j2``). Templates mark sentences ``pgettext("page", …)`` (keyword
    arguments fill placeholders) and are extracted into the catalogs like the mails (``babel.cfg``)."""
    return Environment(
        loader=FileSystemLoader([str(directory), str(SHARED_TEMPLATES)]),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
    )


_env = environment(SHARED_TEMPLATES)
LAYOUT = _env.get_template("page.html.j2")


@dataclass(frozen=True)
class Identity:
    """The city's office as the mail footer names it."""

    office_name: str
    office_address: str
    office_phone: str
    office_email: str
    privacy_url: str

    @classmethod
    def of(cls, settings: Any) -> Identity:
        return cls(
            settings.office_name,
            settings.office_address,
            settings.office_phone,
            settings.office_email,
            settings.privacy_url,
        )

    @property
    def phone_link(self) -> str:
        return "".join(c for c in self.office_phone if c.isdigit() or c == "+")


def wants_html(request: Request) -> bool:
    """Whether the client prefers a page: ``text/html`` accepted and liked at least as much as JSON.

    A browser sends ``text/html,…,*/*;q=0.8`` and gets the page; ``curl`` (``*/*``), ``httpx`` and a
    client asking for ``application/json`` get JSON as API.md says."""
    html_q = json_q = 0.0
    for part in request.headers.get("accept", "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in ("text/html", "application/xhtml+xml"):
            html_q = max(html_q, q)
        elif media in ("application/json", "application/problem+json", "*/*", "application/*"):
            json_q = max(json_q, q)
    return html_q > 0 and html_q >= json_q


def accepted_language(request: Request) -> str | None:
    """The first language of ``Accept-Language`` (by its q-values) that has a catalog, or None."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(request.headers.get("accept-language", "").split(",")[:20]):
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        code = tag.split("-")[0].lower()
        if q > 0 and code in LANGUAGE_NAMES and code in i18n.languages():
            ranked.append((-q, index, code))
    return min(ranked)[2] if ranked else None


def visitor_language(request: Request) -> str:
    """The language of a page nobody's record decides (a form, the published proposals): ``?lang=xx``,
    else the browser's ``Accept-Language``, else German."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGE_NAMES and asked in i18n.languages():
        return asked
    return accepted_language(request) or i18n.resolve(i18n.FALLBACK_LANGUAGE)


def chosen_language(request: Request | None, own: str | None) -> str:
    """The language a page speaks: ``?lang=xx`` (the switch) if there is a catalog for it, else the
    person's own, else German."""
    asked = request.query_params.get("lang") if request is not None else None
    if asked in LANGUAGE_NAMES and asked in i18n.languages():
        return asked
    return i18n.resolve(own or i18n.FALLBACK_LANGUAGE)


@dataclass(frozen=True)
class Frame:
    """One page's language, the office it speaks for, and where its language switch points."""

    language: str
    identity: Identity
    # The page the language links open (a GET that changes nothing) and its query (the token).
    switch_path: str | None = None
    switch_query: Mapping[str, str] = field(default_factory=dict)

    def pgettext(self, context: str, message: str, **values: Any) -> str:
        """A sentence in this page's language; ``values`` fill its placeholders."""
        text = str(i18n.translations(self.language).pgettext(context, message))
        return text % values if values else text

    @property
    def direction(self) -> str:
        return i18n.text_direction(self.language)

    def switch(self) -> list[dict[str, Any]]:
        if self.switch_path is None:
            return []
        return [
            {
                "code": code,
                "name": name,
                "current": code == self.language,
                "href": f"{self.switch_path}?{urlencode({**self.switch_query, 'lang': code})}",
            }
            for code, name in LANGUAGE_NAMES.items()
            if code in i18n.languages()
        ]

    def render(
        self,
        title: str,
        body: Template,
        layout: Template | None = None,
        *,
        failed: bool = False,
        script: bool = False,
        **context: Any,
    ) -> str:
        """The page: ``body`` in the frame (``layout``: the console's own, with its navigation). ``failed``:
        a form answered with errors (the browser's title says so first, as the GOV.UK pattern asks);
        ``script``: the page loads ``SCRIPT_PATH``."""
        content = Markup(
            body.render(
                pgettext=self.pgettext, lang=self.language, dir=self.direction, failed=failed, **context
            )
        )
        head = self.pgettext("page", "Error: %(title)s", title=title) if failed else title
        return (layout or LAYOUT).render(
            **({**context, "failed": failed} if layout is not None else {}),
            pgettext=self.pgettext,
            lang=self.language,
            dir=self.direction,
            title=title,
            head_title=head,
            script=SCRIPT_PATH if script else "",
            identity=self.identity,
            switch=self.switch(),
            css=Markup(CSS),
            body=content,
        )


def page_response(
    html: str, status_code: int = 200, *, csp: str | None = None, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """A rendered page with the pages' headers. ``csp``: this page's own Content-Security-Policy (one
    that loads the script); without it the service's policy applies (``shared.http``)."""
    extra = {**PAGE_HEADERS, **(headers or {})}
    if csp is not None:
        extra["Content-Security-Policy"] = csp
    return HTMLResponse(html, status_code=status_code, headers=extra)


MESSAGE = _env.get_template("message.html.j2")


def not_found_page(frame: Frame) -> str:
    """The page of a link that is unknown or has expired, whichever service owns it."""
    return frame.render(
        frame.pgettext("page", "Link not valid"),
        MESSAGE,
        lines=[
            frame.pgettext("page", "This link is unknown or has expired."),
            frame.pgettext("page", "If you have questions, please contact the office named below."),
        ],
    )


def too_many_requests(frame: Frame) -> str:
    """A form's answer when the client's rate limit or the opt-in budget says no (status 429)."""
    return frame.pgettext("page", "Too many requests just now. Please try again in a few minutes.")


def form_reused(frame: Frame) -> str:
    """A form's one-time key came back with other values (the back button, then changes)."""
    return frame.pgettext(
        "page", "This form was already sent with other values. Please check them and send again."
    )


def page_link(path: str, **query: str) -> str:
    return f"{path}?{urlencode({k: v for k, v in query.items() if v})}"


class FormError(ValueError):
    """A body that is neither JSON nor the page's form, or cannot be read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, max_fields: int = 10) -> tuple[Any, bool]:
    """The body of a POST that a page's form or an API client sends: ``(data, from_form)``.

    A form (``application/x-www-form-urlencoded``) gives a dict of its first values; JSON (or no
    content type) gives whatever the JSON holds. Raises :class:`FormError` (415 or 422)."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            values = parse_qs(
                raw.decode("utf-8", errors="replace"), max_num_fields=max_fields, keep_blank_values=True
            )
        except ValueError:
            raise FormError(422, "too many form fields") from None
        return {k: v[0] for k, v in values.items()}, True
    if content_type in ("application/json", ""):
        try:
            return json.loads(raw or b"null"), False
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            raise FormError(422, "the body is not valid JSON") from None
    raise FormError(415, "Send application/json.")


def failed_fields(errors: list[dict[str, Any]]) -> set[str]:
    """The top-level field names a pydantic or domain error list names (``loc`` or ``field``)."""
    names = set()
    for error in errors:
        loc = error.get("loc") or (error.get("field", "").split(".") if error.get("field") else ())
        if loc:
            names.add(str(loc[0]))
    return names


class PageCache:
    """Public pages rendered for a second (``ttl``): the same form or list page asked for again and again
    (a press release's link, a city's CMS embedding it) is rendered once a second, not per request. Only
    for pages that are the same for everyone (no token, nothing personal); a form's one-time key is put
    in per answer (:data:`FORM_KEY_SLOT`). What it shows (seats left, the published list) may lag a
    second behind. One per app (``app.state``), at most ``size`` pages, the least recently used go."""

    def __init__(self, ttl: float = 1.0, size: int = 512) -> None:
        self.ttl, self.size = ttl, size
        self._pages: OrderedDict[tuple[Any, ...], tuple[float, str]] = OrderedDict()
        # One rendering per page at a time: requests arriving meanwhile wait for it (no stampede of
        # renderings, each taking a database connection, when a busy page's second is over).
        self._rendering: dict[tuple[Any, ...], asyncio.Future[str]] = {}

    async def page(self, key: tuple[Any, ...], render: Callable[[], Awaitable[str]]) -> str:
        now = time.monotonic()
        found = self._pages.get(key)
        if found is not None and now - found[0] < self.ttl:
            self._pages.move_to_end(key)
            return found[1]
        pending = self._rendering.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._rendering[key] = future
        try:
            html = await render()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a rendering nobody waited for logs nothing more
            raise
        finally:
            del self._rendering[key]
        future.set_result(html)
        self._pages[key] = (now, html)
        self._pages.move_to_end(key)
        while len(self._pages) > self.size:
            self._pages.popitem(last=False)
        return html


# Where a cached form page takes its one-time key (the characters of a key, so escaping leaves it alone).
FORM_KEY_SLOT = "form-key-slot-0000000000"


def page_cache(request: Request) -> PageCache:
    state = request.app.state
    if getattr(state, "page_cache", None) is None:
        state.page_cache = PageCache()
    cache: PageCache = state.page_cache
    return cache
