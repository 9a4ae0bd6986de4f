"""HTTP plumbing shared by every service: problem+json errors, correlation ids, body limits, health."""

from __future__ import annotations

import time
import uuid
from typing import Any, TypeVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import apidocs, pages
from shared.db import INFRASTRUCTURE_ERRORS, is_infrastructure_error
from shared.observability import HTTP_LATENCY, HTTP_REQUESTS, correlation_id_var, get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-ID"
_CORRELATION_KEY = CORRELATION_HEADER.lower().encode()

# On every response: no MIME sniffing, no framing (clickjacking of the confirm and cancel buttons).
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]
# Every answer of an endpoint behind a private link (a token): never stored by a browser or proxy, and
# varying by Accept (HTML or JSON). Set here, for successes and errors alike (mark with ``private``).
PRIVATE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"vary", b"Accept"),
    (b"referrer-policy", b"no-referrer"),
]
_PRIVATE_NAMES = {name for name, _ in PRIVATE_HEADERS}


def private(endpoint: Any) -> Any:
    """Marks a route's endpoint as one answering behind a private link: its every answer carries
    ``PRIVATE_HEADERS`` (RequestContextMiddleware adds them). Put it below the route decorator."""
    endpoint.private_answer = True
    return endpoint


def _is_private(scope: Scope) -> bool:
    return bool(getattr(getattr(scope.get("route"), "endpoint", None), "private_answer", False))


# The resident pages need nothing but their one inline stylesheet (allowed by its hash) and to post
# their own forms; JSON answers get the same policy.
PAGE_CSP = pages.PAGE_CSP.encode()
# The interactive API docs run Swagger UI from the service's own files (shared.apidocs).
DOCS_CSP = apidocs.DOCS_CSP.encode()
DOCS_PATHS = (apidocs.DOCS_URL,)


class Problem(Exception):
    """A domain or request error that the API answers as RFC 9457 problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        errors: list[dict[str, str]] | None = None,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.type = type_
        self.headers = headers
        self.extra = extra or {}


def problem_response(
    status: int,
    title: str,
    detail: str = "",
    *,
    errors: list[dict[str, str]] | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail or title}
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "")


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    return _field_errors(exc.errors())


def validation_errors_from(exc: ValidationError) -> list[dict[str, str]]:
    """The same field list for a pydantic error raised while parsing a body by hand."""
    return _field_errors(exc.errors())


ModelT = TypeVar("ModelT", bound=BaseModel)


async def json_or_form(request: Request, max_fields: int = 10) -> tuple[Any, bool]:
    """:func:`shared.pages.read_body` for an endpoint: ``(data, from_form)``, or a problem (415 for another
    content type, 422 for a body that cannot be read)."""
    try:
        return await pages.read_body(request, max_fields=max_fields)
    except pages.FormError as exc:
        if exc.status == 415:
            raise Problem(415, "Unsupported media type", str(exc)) from None
        raise Problem(422, "Invalid request", errors=[{"field": "body", "message": str(exc)}]) from None


def validated(model: type[ModelT], data: Any) -> ModelT:
    """``data`` (read by hand, e.g. by :func:`json_or_form`) as ``model``, or a 422 problem with the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Problem(
            422, "Invalid request", "One or more fields are invalid.", errors=validation_errors_from(exc)
        ) from None


def json_or_form_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of an endpoint that reads :func:`json_or_form`: ``model`` as JSON or
    as a page's form."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": schema}
                for media in ("application/json", "application/x-www-form-urlencoded")
            },
        }
    }


def _field_errors(raw: Any) -> list[dict[str, str]]:
    errors = []
    for err in raw:
        message = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        elif err.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        errors.append({"field": _field_path(tuple(err.get("loc", ()))), "message": message})
    return errors


DomainErrors = dict[type[Exception], tuple[int, str]]


def install_error_handlers(app: FastAPI, domain_errors: DomainErrors | None = None) -> None:
    """The one error path: every error becomes problem+json. ``domain_errors`` maps a service's domain
    exceptions (carrying ``reason`` and, optionally, the ``field`` at fault, a list of ``errors`` or
    ``retry_after`` seconds) to a status and title."""
    for error_type, (status, title) in (domain_errors or {}).items():
        app.add_exception_handler(error_type, _domain_handler(status, title))

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            errors=exc.errors,
            type_=exc.type,
            headers=exc.headers,
            instance=request.url.path,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(
            422,
            "Invalid request",
            "One or more fields are invalid.",
            errors=validation_errors(exc),
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            413: "Request body too large",
            415: "Unsupported media type",
        }
        return problem_response(
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            str(exc.detail or ""),
            headers=getattr(exc, "headers", None),
            instance=request.url.path,
        )

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not is_infrastructure_error(exc):
            return await _unexpected(request, exc)
        # The database is unreachable: nothing was stored; the client may try again shortly.
        log.warning("database unreachable", path=request.url.path, error=repr(exc))
        return problem_response(
            503,
            "Service unavailable",
            "The request could not be stored just now. Please try again in a moment.",
            headers={"Retry-After": "5"},
            instance=request.url.path,
        )

    # Registered per class (not only under Exception), so the answer is the response and nothing is
    # re-raised to the server.
    # asyncpg's InternalClientError too: raised on a connection the server ended while it sat in the pool
    # (a failover); _unavailable hands its other kinds on to _unexpected.
    for infrastructure in (*INFRASTRUCTURE_ERRORS, DBAPIError, asyncpg.InternalClientError):
        app.add_exception_handler(infrastructure, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        # Starlette answers an unexpected exception from its outermost middleware, outside
        # RequestContextMiddleware: this answer carries the security headers and the correlation id itself.
        headers = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
        headers["Content-Security-Policy"] = PAGE_CSP.decode()
        cid = getattr(request.state, "correlation_id", None)
        if cid:
            headers[CORRELATION_HEADER] = cid
        return problem_response(
            500,
            "Internal error",
            "The request could not be completed. It has been logged.",
            headers=headers,
            instance=request.url.path,
        )


def _domain_handler(status: int, title: str) -> Any:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        reason = getattr(exc, "reason", str(exc))
        field = getattr(exc, "field", None)
        errors = getattr(exc, "errors", None)
        if errors is None and field and status == 422:
            errors = [{"field": field, "message": reason}]
        retry_after = getattr(exc, "retry_after", None)
        return problem_response(
            status,
            title,
            reason,
            errors=errors,
            instance=request.url.path,
            headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
        )

    return handle


class RequestContextMiddleware:
    """Correlation id in and out, a hard body-size limit, and request metrics — as plain ASGI."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_body_bytes: int,
        frame_ancestors: str = "'none'",
        page_csp: str | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        # Who may embed the pages (``<SVC>_FRAME_ANCESTORS``): with anyone allowed besides nobody, the
        # legacy X-Frame-Options header (which knows no list) gives way to the CSP's frame-ancestors.
        # The console's pages have a policy of their own (its stylesheet, the provider's sign-out).
        self.page_csp = (page_csp or pages.page_csp(frame_ancestors)).encode()
        if frame_ancestors == "'none'":
            self.security_headers = SECURITY_HEADERS
        elif frame_ancestors == "'self'":
            self.security_headers = [SECURITY_HEADERS[0], (b"x-frame-options", b"SAMEORIGIN")]
        else:
            self.security_headers = [SECURITY_HEADERS[0]]
        # Route paths are templates, methods and statuses few: bounded by the app's routes.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming, declared = "", None
        for raw_name, value in scope.get("headers", ()):
            name = raw_name.lower()
            if name == _CORRELATION_KEY:
                incoming = value.decode("latin-1")
            elif name == b"content-length":
                declared = value.decode("latin-1")
        cid = incoming if _is_safe_id(incoming) else str(uuid.uuid4())
        token = correlation_id_var.set(cid)
        # Also for the answer to an unexpected error, sent after this middleware has finished.
        scope.setdefault("state", {})["correlation_id"] = cid
        started = time.perf_counter()
        status_holder = {"status": 500}

        if declared is not None and (
            not (declared.isascii() and declared.isdigit()) or int(declared) > self.max_body_bytes
        ):
            response = problem_response(
                413,
                "Request body too large",
                f"The body may be at most {self.max_body_bytes} bytes.",
                headers={CORRELATION_HEADER: cid},
            )
            await response(scope, receive, send)
            correlation_id_var.reset(token)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge()
            return message

        path = scope.get("path", "")
        csp = DOCS_CSP if path.startswith(DOCS_PATHS) else self.page_csp

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", ()))
                if _is_private(scope):
                    headers = [(k, v) for k, v in headers if k.lower() not in _PRIVATE_NAMES]
                    headers.extend(PRIVATE_HEADERS)
                # A page that loads the service's script sets its own policy (pages.page_csp).
                own_csp = any(k.lower() == b"content-security-policy" for k, _ in headers)
                message["headers"] = [
                    *headers,
                    (CORRELATION_HEADER.encode(), cid.encode()),
                    *self.security_headers,
                    *(() if own_csp else ((b"content-security-policy", csp),)),
                ]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            response = problem_response(
                413,
                "Request body too large",
                f"The body may be at most {self.max_body_bytes} bytes.",
                headers={CORRELATION_HEADER: cid},
            )
            await response(scope, receive, send)
            status_holder["status"] = 413
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            requests, latency = self._metrics(scope["method"], path, status_holder["status"])
            requests.inc()
            latency.observe(time.perf_counter() - started)
            correlation_id_var.reset(token)

    def _metrics(self, method: str, path: str, status: int) -> tuple[Any, Any]:
        """The labelled children, looked up once per route and status (``labels`` takes a lock)."""
        key = (method, path, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                HTTP_REQUESTS.labels(self.service, method, path, str(status)),
                HTTP_LATENCY.labels(self.service, method, path),
            )
        return found


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read; FastAPI passes HTTP exceptions through to the problem handler."""

    def __init__(self) -> None:
        super().__init__(413, "The request body is too large.")


def _is_safe_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(c.isalnum() or c in "-_.:" for c in value)
