"""The console's sign-in and sign-out (OpenID Connect, the development sign-in), its key set for the
services, the language switch and the overview page. Sign-ins and sign-outs are logged with the
subject, never with a token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from services.console import domain, service
from services.console.domain import KNOWN_ROLES, CsrfRejected, SessionMissing
from services.console.oidc import SignInFailed
from services.console.pages import (
    Visit,
    anonymous_frame,
    backend_of,
    cookie_name,
    form_of,
    provider_of,
    render,
    render_anonymous,
    runtime_of,
    see_other,
    settings_of,
    stylesheet,
    visit,
)
from shared.observability import get_logger
from shared.pages import Frame

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)


def _f(request: Request) -> Frame:
    return anonymous_frame(request)


def _not_available(request: Request) -> HTMLResponse:
    title = _f(request).pgettext("console", "Not available")
    return render_anonymous(request, title, "message.html.j2", 404, lines=[])


def _set_session_cookie(request: Request, response: Response, session_id: str) -> None:
    settings = settings_of(request)
    response.set_cookie(
        cookie_name(settings),
        session_id,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        path="/",
    )


def _clear_session_cookie(request: Request, response: Response) -> None:
    settings = settings_of(request)
    response.delete_cookie(
        cookie_name(settings), path="/", secure=settings.secure_cookies, httponly=True, samesite="lax"
    )


@router.get("/console.css")
async def console_css() -> Response:
    return stylesheet()


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    """The public key of the tokens the console signs for the services (STAFF_JWT_JWKS_URL)."""
    return JSONResponse(request.app.state.signer.jwks(), headers={"Cache-Control": "max-age=60"})


@router.get("/auth/login")
async def login(request: Request) -> Response:
    settings = settings_of(request)
    if not settings.oidc_issuer:
        if settings.development_sign_in:
            return see_other("/auth/development")
        return render_anonymous(
            request,
            _f(request).pgettext("console", "Sign-in is not configured"),
            "message.html.j2",
            503,
            lines=[],
        )
    try:
        url, pending = await provider_of(request).authorization_request()
    except Exception as exc:
        log.warning("identity provider not reachable", error=type(exc).__name__)
        return render_anonymous(
            request,
            _f(request).pgettext("console", "The sign-in service is not reachable"),
            "message.html.j2",
            503,
            lines=[_f(request).pgettext("console", "Please try again in a few minutes.")],
        )
    async with runtime_of(request).transaction() as conn:
        session_id = await service.begin_sign_in(conn, request.cookies.get(cookie_name(settings)), pending)
    response = see_other(url)
    _set_session_cookie(request, response, session_id)
    return response


@router.get("/auth/callback")
async def callback(request: Request, state: str = "", code: str = "", error: str = "") -> Response:
    settings = settings_of(request)
    try:
        async with runtime_of(request).transaction() as conn:
            pending = await service.pending_sign_in(conn, request.cookies.get(cookie_name(settings)), state)
        if error or not code:
            raise SignInFailed(error[:40] or "no code")
        tokens = await provider_of(request).finish(code, pending)
    except (SessionMissing, SignInFailed) as exc:
        log.info("sign-in failed", reason=type(exc).__name__, detail=str(exc)[:60])
        response = render_anonymous(
            request, _f(request).pgettext("console", "Sign-in failed"), "signed_out.html.j2", 400, failed=True
        )
        _clear_session_cookie(request, response)
        return response
    claims = tokens.claims
    roles = domain.roles_from_claims(claims, settings.oidc_roles_claim)
    name = str(claims.get("name") or claims.get("preferred_username") or claims["sub"])[:200]
    expires_at = datetime.fromtimestamp(tokens.expires_at, UTC) if tokens.expires_at else None
    async with runtime_of(request).transaction() as conn:
        session_id = await service.sign_in(
            conn,
            subject=str(claims["sub"]),
            name=name,
            roles=roles,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            access_expires_at=expires_at,
        )
    log.info("signed in", subject=str(claims["sub"]), roles=roles, method="oidc")
    response = see_other("/")
    _set_session_cookie(request, response, session_id)
    return response


@router.get("/auth/development")
async def development_form(request: Request) -> Response:
    settings = settings_of(request)
    if not settings.development_sign_in:
        return _not_available(request)
    async with runtime_of(request).transaction() as conn:
        session_id = await service.begin_sign_in(
            conn, request.cookies.get(cookie_name(settings)), {"development": "1"}
        )
        csrf_token = await service.csrf_of(conn, session_id)
    response = render_anonymous(
        request,
        _f(request).pgettext("console", "Development sign-in"),
        "development.html.j2",
        csrf_token=csrf_token,
        roles=KNOWN_ROLES,
    )
    _set_session_cookie(request, response, session_id)
    return response


@router.post("/auth/development")
async def development_sign_in(request: Request) -> Response:
    """Development only: a name and roles, no provider. Refused in every other environment."""
    settings = settings_of(request)
    if not settings.development_sign_in:
        return _not_available(request)
    values = parse_qs((await request.body())[:4096].decode("utf-8", errors="replace"), max_num_fields=10)
    name = (values.get("name") or [""])[0].strip()[:100]
    roles = sorted({r for r in values.get("roles", []) if r in KNOWN_ROLES})
    old_id = request.cookies.get(cookie_name(settings))
    async with runtime_of(request).transaction() as conn:
        row = await service.sign_out(conn, old_id)
        if row is None or not domain.csrf_matches(row["csrf_token"], (values.get("csrf") or [""])[0]):
            raise CsrfRejected()
        if not name or not roles or any(c in name for c in "\r\n"):
            return see_other("/auth/development")
        subject = "dev:" + "".join(c if c.isalnum() or c in ".-_" else "-" for c in name.lower())
        session_id = await service.sign_in(conn, subject=subject, name=name, roles=roles)
    log.info("signed in", subject=subject, roles=roles, method="development")
    response = see_other("/")
    _set_session_cookie(request, response, session_id)
    return response


@router.post("/auth/logout")
async def logout(request: Request) -> Response:
    v = await visit(request)
    await form_of(request, v)
    async with runtime_of(request).transaction() as conn:
        await service.sign_out(conn, v.session_id)
    log.info("signed out", subject=v.person.subject)
    target = await provider_of(request).logout_url() if settings_of(request).oidc_issuer else None
    response = see_other(target or "/auth/signed-out")
    _clear_session_cookie(request, response)
    return response


@router.get("/auth/signed-out")
async def signed_out(request: Request) -> HTMLResponse:
    return render_anonymous(
        request, _f(request).pgettext("console", "You are signed out"), "signed_out.html.j2", failed=False
    )


@router.post("/language")
async def choose_language(request: Request) -> Response:
    v = await visit(request)
    form = await form_of(request, v)
    async with runtime_of(request).transaction() as conn:
        await service.choose_language(conn, v.session_id, form.get("language", ""))
    back = form.get("back", "/")
    return see_other(back if back.startswith("/") and not back.startswith("//") else "/")


# --- the overview --------------------------------------------------------------------------------------


async def _json(v: Visit, service_name: str, path: str, **params: Any) -> Any:
    response = await backend_of(v.request).call(v.caller, service_name, "GET", path, params=params)
    return response.json() if response.status_code == 200 else None


@router.get("/")
async def overview(request: Request) -> Response:
    """Per working group: what waits for moderation and since when, the next meetings with seats,
    waitlist and interpreter needs, and mail problems; each part only for the roles it needs."""
    v = await visit(request)
    backend = backend_of(request)
    groups = [dict(g) for g in await backend.catalog("registration", "/v1/working-groups")]
    tasks: dict[str, Any] = {}
    if v.person.may("moderator"):
        # The same for every moderator and without personal data: kept a few seconds (an aggregate over
        # every proposal, the dearest call of the page).
        tasks["counts"] = backend.shared_json(
            "proposals",
            "/v1/moderation/counts",
            settings_of(request).cache_seconds / 3,
            lambda: _json(v, "proposals", "/v1/moderation/counts"),
        )
    if v.person.may("staff"):
        for group in groups:
            tasks[f"planning:{group['id']}"] = _json(
                v, "registration", f"/v1/working-groups/{group['id']}/planning"
            )
        tasks["failed"] = _json(v, "notification", "/v1/deliveries", status="failed", limit=1000)
        tasks["bounced"] = _json(v, "notification", "/v1/deliveries", status="bounced", limit=1000)
    results = dict(zip(tasks, await asyncio.gather(*tasks.values()), strict=True))
    waiting = _waiting_by_group(results.get("counts"))
    now = datetime.now(UTC)
    for group in groups:
        group["waiting"] = waiting.get(group["id"], [])
        group["interpretation"] = _interpretation(results.get(f"planning:{group['id']}"))
        group["next_meeting"] = next(
            (
                m
                for m in group["meetings"]
                if m.get("starts_at")
                and not m.get("cancelled")
                and datetime.fromisoformat(m["starts_at"]) > now
            ),
            None,
        )
    mail = None
    if v.person.may("staff"):
        mail = {"failed": len(results.get("failed") or []), "bounced": len(results.get("bounced") or [])}
    return render(
        v,
        v.frame.pgettext("console", "Overview"),
        "overview.html.j2",
        groups=groups,
        counts=results.get("counts"),
        mail=mail,
    )


def _waiting_by_group(counts: dict | None) -> dict[str, list[dict]]:
    """Submitted proposals per working group and district, the longest waiting first."""
    out: dict[str, list[dict]] = {}
    for row in (counts or {}).get("counts", []):
        if row["status"] == "submitted":
            out.setdefault(row["working_group_id"], []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: r["oldest_submitted_at"])
    return out


def _interpretation(planning: dict | None) -> dict[str, int] | None:
    if not planning:
        return None
    for meeting in planning.get("meetings", []):
        if meeting.get("figures"):
            return dict(meeting["figures"]["confirmed"]["interpretation_language"])
    return {}
