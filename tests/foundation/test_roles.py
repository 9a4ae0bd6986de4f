"""Every staff route against every role: only `admin` implies the others (API.md); a moderator never
reads participant lists, planning figures or delivery logs."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from services.notification.app import create_app as create_notification_app
from services.notification.config import NotificationSettings
from services.registration.app import create_app as create_registration_app
from shared.auth import effective_roles, mint_token
from tests.conftest import _common, running
from tests.support.catalog import create_working_group
from tests.support.infra import RUN_SECRETS
from tests.support.smtp import SmtpServer

ROLES = ("none", "staff", "moderator", "admin")

# (service, method, path, body, the roles that may) — one line per staff route.
ROUTES = [
    ("registration", "GET", "/v1/working-groups/{wg}/participants", None, {"staff", "admin"}),
    ("registration", "GET", "/v1/working-groups/{wg}/participants?format=csv", None, {"staff", "admin"}),
    ("registration", "GET", "/v1/working-groups/{wg}/planning", None, {"staff", "admin"}),
    ("registration", "PATCH", "/v1/working-groups/{wg}", {"capacity": 25}, {"admin"}),
    ("registration", "PATCH", "/v1/working-groups/{wg}/meetings/2", {"venue": "Rathaus Nord"}, {"admin"}),
    ("notification", "GET", "/v1/deliveries", None, {"staff", "admin"}),
    ("notification", "GET", "/v1/suppressions?address=someone@example.org", None, {"staff", "admin"}),
    ("notification", "DELETE", "/v1/suppressions/someone@example.org", None, {"admin"}),
    ("notification", "GET", "/v1/bounce-mails?outcome=unparseable", None, {"staff", "admin"}),
    (
        "notification",
        "GET",
        "/v1/templates/registration_confirmed/preview",
        None,
        {"staff", "moderator", "admin"},
    ),
]


def test_only_admin_implies_the_other_roles():
    assert effective_roles(["moderator"]) == {"moderator"}
    assert effective_roles(["staff"]) == {"staff"}
    assert effective_roles(["admin"]) == {"admin", "moderator", "staff"}
    assert effective_roles(["root", 3]) == frozenset()
    assert effective_roles("admin") == frozenset()


@pytest.fixture(scope="module")
async def clients(infra, registration_settings):
    smtp = SmtpServer()
    smtp.start()
    notification_settings = NotificationSettings(
        **_common(infra, "notification"),
        address_hash_secret=RUN_SECRETS["NOTIFICATION_ADDRESS_HASH_SECRET"],
        smtp_port=smtp.port,
    )
    notification_app = create_notification_app(notification_settings)
    registration_app = create_registration_app(
        registration_settings.model_copy(update={"rate_limit_per_minute": 0})
    )
    try:
        async with (
            running(registration_app) as registration,
            running(notification_app) as notification,
        ):
            wg = await create_working_group(registration_app.state.runtime)
            yield {
                "registration": registration,
                "notification": notification,
                "wg": wg,
                "registration_runtime": registration_app.state.runtime,
                "notification_runtime": notification_app.state.runtime,
            }
    finally:
        smtp.stop()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("service,method,path,body,allowed", ROUTES, ids=[f"{r[1]} {r[2]}" for r in ROUTES])
async def test_each_staff_route_answers_each_role(
    clients, registration_settings, role, service, method, path, body, allowed
):
    client = clients[service]
    headers = {}
    if role != "none":
        headers["Authorization"] = f"Bearer {mint_token(registration_settings, 'tester@stadt', [role])}"
    if body is not None:
        body = {
            k: v.replace("{n}", uuid.uuid4().hex[:8]) if isinstance(v, str) else v for k, v in body.items()
        }
    response = await client.request(method, path.format(wg=clients["wg"]), json=body, headers=headers)
    expected = 401 if role == "none" else (None if role in allowed else 403)
    if expected is None:
        assert response.status_code in (200, 202), response.text
    else:
        assert response.status_code == expected, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


def _token(settings, **claims) -> str:
    now = int(time.time())
    body = {
        "sub": "tester@stadt",
        "roles": ["admin"],
        "iss": settings.staff_jwt_issuer,
        "aud": settings.staff_jwt_audience,
        "iat": now,
        "exp": now + 3600,
    }
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, settings.staff_jwt_secret, "HS256")


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iat": int(time.time()) - 20 * 3600}, id="issued 20 h before it expires"),
        pytest.param({"exp": int(time.time()) + 13 * 3600}, id="expires in 13 h"),
        pytest.param({"iat": None}, id="no iat"),
        pytest.param({"exp": int(time.time()) - 5}, id="expired"),
        pytest.param({"aud": "someone-else"}, id="other audience"),
        pytest.param({"iss": "mitwirkung-local"}, id="other issuer"),
    ],
)
async def test_refused_tokens_get_a_generic_401(clients, registration_settings, claims):
    token = _token(registration_settings, **claims)
    response = await clients["registration"].get(
        f"/v1/working-groups/{clients['wg']}/participants", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    problem = response.json()
    assert problem["detail"] == "The bearer token is not valid."
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_token_within_the_lifetime_cap_is_accepted(clients, registration_settings):
    token = _token(registration_settings, exp=int(time.time()) + 11 * 3600)
    response = await clients["registration"].get(
        f"/v1/working-groups/{clients['wg']}/planning", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200


async def test_reads_of_planning_figures_and_the_delivery_log_are_audited(clients, registration_settings):
    from sqlalchemy import select

    from services.notification.models import audit_log as notification_audit
    from services.registration.models import audit_log as registration_audit

    headers = {
        "Authorization": f"Bearer {mint_token(registration_settings, 'auditor-check@stadt', ['staff'])}"
    }
    wg = clients["wg"]
    assert (
        await clients["registration"].get(f"/v1/working-groups/{wg}/planning", headers=headers)
    ).status_code == 200
    searched = f"someone-{uuid.uuid4().hex[:8]}@example.org"
    response = await clients["notification"].get(
        "/v1/deliveries", params={"recipient": searched}, headers=headers
    )
    assert response.status_code == 200
    runtime = clients["registration_runtime"]
    async with runtime.transaction() as session:
        rows = (
            await session.execute(
                select(registration_audit).where(registration_audit.c.subject == "auditor-check@stadt")
            )
        ).all()
    assert [(r.action, r.target) for r in rows] == [("planning.read", wg)]
    async with clients["notification_runtime"].transaction() as session:
        rows = (
            await session.execute(
                select(notification_audit).where(notification_audit.c.subject == "auditor-check@stadt")
            )
        ).all()
    assert [(r.action, r.details["recipient_filter"]) for r in rows] == [("deliveries.read", True)]
    assert searched not in str(rows[0]._mapping)
