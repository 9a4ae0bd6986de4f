"""The console process: pages for staff, signed in with the city's OpenID provider, calling the three
services' public APIs on their behalf. It connects to no broker; its database holds its sessions."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.console import api, groups, moderation, office, pages, service
from services.console.backend import Backend, ServiceUnreachable
from services.console.config import ConsoleSettings
from services.console.domain import CsrfRejected, SessionMissing
from services.console.oidc import OpenIdProvider
from services.console.signing import Signer
from shared.observability import get_logger
from shared.runtime import PeriodicJob, ServiceRuntime, build_runtime, create_service_app

log = get_logger(__name__)


def build(settings: ConsoleSettings | None = None) -> ServiceRuntime:
    settings = settings or ConsoleSettings()
    runtime = build_runtime(settings, outbox=None)
    runtime.uses_broker = False
    runtime.broker_ready.set()

    async def forget_idle() -> None:
        async with runtime.transaction() as conn:
            await service.forget_idle_sessions(conn, settings.session_idle_minutes)

    runtime.jobs.append(PeriodicJob("idle-sessions", 300.0, forget_idle))
    return runtime


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    runtime = build(settings)
    settings = runtime.settings
    assert isinstance(settings, ConsoleSettings)
    app = create_service_app(
        runtime,
        title="Mitwirkung — console",
        description="Staff pages (backend-for-frontend): sign-in with the city's OpenID provider.",
        routers=[api.router, moderation.router, groups.router, office.router],
        page_csp=pages.content_security_policy(settings),
    )
    app.state.signer = signer = Signer.of(settings)
    app.state.backend = backend = Backend(settings, signer)
    app.state.provider = OpenIdProvider(settings)
    runtime.closing.append(backend.close)

    @app.exception_handler(SessionMissing)
    async def to_sign_in(request: Request, exc: SessionMissing) -> Response:
        response = pages.see_other("/auth/login")
        response.delete_cookie(pages.cookie_name(settings), path="/", secure=settings.secure_cookies)
        return response

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, exc: CsrfRejected) -> Response:
        log.info("form refused: CSRF token missing or wrong", path=request.url.path)
        frame = pages.anonymous_frame(request)
        return pages.render_anonymous(
            request,
            frame.pgettext("console", "Form expired"),
            "message.html.j2",
            403,
            lines=[frame.pgettext("console", "Please open the page again and send the form once more.")],
        )

    @app.exception_handler(ServiceUnreachable)
    async def unreachable(request: Request, exc: ServiceUnreachable) -> Response:
        frame = pages.anonymous_frame(request)
        return pages.render_anonymous(
            request,
            frame.pgettext("console", "A service is not reachable"),
            "message.html.j2",
            502,
            lines=[frame.pgettext("console", "Please try again in a few minutes.")],
        )

    return app
