"""What every console page shares: the signed-in person behind the session cookie (renewed with the
refresh token, gone after inactivity), the CSRF check of every form, the frame with the navigation the
person's roles open, and the answers for a missing session, a refused call or a service that is away.

The frame is the resident pages' (``shared.pages``): the same gettext catalogs (``pgettext("console", …)``),
escaping and headers; the console adds its layout and one stylesheet of its own (``/console.css``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console import domain, service
from services.console.backend import Backend, Caller
from services.console.config import ConsoleSettings
from services.console.domain import CsrfRejected, Person, SessionMissing
from services.console.oidc import OpenIdProvider, SignInFailed
from shared import i18n
from shared.pages import PAGE_HEADERS, Frame, Identity, environment
from shared.runtime import ServiceRuntime

TEMPLATES = Path(__file__).resolve().parent / "templates"
ENV = environment(TEMPLATES)
ENV.globals["format_datetime"] = i18n.format_datetime
LAYOUT = ENV.get_template("layout.html.j2")
STYLESHEET = (TEMPLATES / "console.css").read_text(encoding="utf-8")
MAX_FORM_BYTES = 32 * 1024


def cookie_name(settings: ConsoleSettings) -> str:
    # __Host-: only over https, for exactly this host and path "/" (no subdomain can set or read it).
    return "__Host-mitwirkung-console" if settings.secure_cookies else "mitwirkung-console"


def content_security_policy(settings: ConsoleSettings) -> str:
    """No script at all, the console's own stylesheet, forms to itself and to the provider's sign-out."""
    provider = settings.oidc_issuer.split("/", 3)
    form_targets = "'self'" + (f" {provider[0]}//{provider[2]}" if len(provider) >= 3 else "")
    return (
        f"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action {form_targets}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


@dataclass
class Visit:
    """One request of a signed-in person."""

    session_id: str
    person: Person
    caller: Caller
    frame: Frame
    request: Request

    def t(self, message: str, **values: Any) -> str:
        return self.frame.pgettext("console", message, **values)


def runtime_of(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def settings_of(request: Request) -> ConsoleSettings:
    return request.app.state.settings


def backend_of(request: Request) -> Backend:
    return request.app.state.backend


def provider_of(request: Request) -> OpenIdProvider:
    return request.app.state.provider


def frame_for(request: Request, language: str) -> Frame:
    return Frame(i18n.resolve(language), Identity.of(settings_of(request)))


async def visit(request: Request) -> Visit:
    """The signed-in person behind the cookie, or SessionMissing (a redirect to the sign-in)."""
    settings = settings_of(request)
    session_id = request.cookies.get(cookie_name(settings))
    async with runtime_of(request).transaction() as conn:
        row = await service.signed_in(conn, session_id, settings.session_idle_minutes)
    assert session_id is not None
    access_token = row["access_token"]
    expires = row["access_expires_at"]
    if row["refresh_token"] and expires is not None and expires - timedelta(seconds=30) < datetime.now(UTC):
        access_token = await _renew(request, session_id, row["refresh_token"])
    person = service.person_of(row)
    caller = Caller(person, development=settings.development_sign_in, provider_token=access_token)
    return Visit(session_id, person, caller, frame_for(request, person.language), request)


async def _renew(request: Request, session_id: str, refresh_token: str) -> str | None:
    """New provider tokens; a refusal (the person was signed out or locked at the provider) ends the
    session here too."""
    settings = settings_of(request)
    try:
        tokens = await provider_of(request).refresh(refresh_token)
    except SignInFailed:
        async with runtime_of(request).transaction() as conn:
            await service.sign_out(conn, session_id)
        raise SessionMissing() from None
    roles = (
        domain.roles_from_claims(tokens.claims, settings.oidc_roles_claim)
        if settings.oidc_roles_claim in tokens.claims
        else None
    )
    expires_at = datetime.fromtimestamp(tokens.expires_at, UTC) if tokens.expires_at else None
    async with runtime_of(request).transaction() as conn:
        await service.renewed(
            conn,
            session_id,
            roles,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            access_expires_at=expires_at,
        )
    return tokens.access_token


async def form_of(request: Request, v: Visit) -> dict[str, str]:
    """The posted form's first values, after its CSRF token matched the session's."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise CsrfRejected()
    values = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=40)
    form = {k: vs[0] for k, vs in values.items()}
    if not domain.csrf_matches(v.person.csrf_token, form.get("csrf")):
        raise CsrfRejected()
    return form


def render(v: Visit, title: str, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    labels = {
        "Overview": v.frame.pgettext("console", "Overview"),
        "Moderation": v.frame.pgettext("console", "Moderation"),
        "Measures": v.frame.pgettext("console", "Measures"),
        "Text blocks": v.frame.pgettext("console", "Text blocks"),
        "Mail": v.frame.pgettext("console", "Mail"),
    }
    nav = [(path, labels[label]) for path, label in domain.navigation(v.person)]
    html = v.frame.render(
        title,
        ENV.get_template(template),
        layout=LAYOUT,
        t=v.t,
        person=v.person,
        csrf=v.person.csrf_token,
        nav=nav,
        current=v.request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def anonymous_frame(request: Request) -> Frame:
    """The frame of a page before sign-in: German, or English with ``?lang=en``."""
    asked = request.query_params.get("lang") or "de"
    return frame_for(request, asked if asked in domain.CONSOLE_LANGUAGES else "de")


def render_anonymous(
    request: Request, title: str, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page before sign-in (the development sign-in, signed out, a failed sign-in)."""
    frame = anonymous_frame(request)

    def t(message: str, **values: Any) -> str:
        return frame.pgettext("console", message, **values)

    html = frame.render(
        title,
        ENV.get_template(template),
        layout=LAYOUT,
        t=t,
        person=None,
        csrf="",
        nav=[],
        current=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def stylesheet() -> Response:
    return Response(STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})
