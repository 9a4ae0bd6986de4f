"""A bounded schemathesis run against each service's OpenAPI document: no input gives a 5xx, and every
response conforms to the schema its operation documents.

The suite runs ``FUZZ_EXAMPLES`` (default 8) examples per operation, derandomised; for a longer run by
hand: ``FUZZ_EXAMPLES=200 .venv/bin/pytest tests/fuzz -s`` (each service prints its figures).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from dataclasses import dataclass, field

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from services.notification.app import create_app as notification_app
from services.proposals.app import create_app as proposals_app
from services.registration.app import create_app as registration_app
from shared.auth import mint_token
from tests.conftest import running

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
# /readyz answers 503 by design while the broker is not connected (the apps run without their lifespan
# here); /metrics is plain text for Prometheus.
SKIPPED = {"/readyz", "/metrics"}


@dataclass
class FuzzReport:
    service: str
    operations: int = 0
    examples: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def fuzz(service: str, app, settings) -> FuzzReport:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # An admin token: staff routes are exercised past authentication (admin implies every role).
    headers = {"Authorization": f"Bearer {mint_token(settings, 'fuzz', ['admin'])}"}
    report = FuzzReport(service)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED:
            continue
        report.operations += 1

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy())
        def run(case) -> None:
            report.examples += 1
            try:
                case.call_and_validate(
                    headers=headers, checks=[not_a_server_error, response_schema_conformance]
                )
            except Exception as exc:  # record every failing operation, not only the first
                label = f"{case.operation.method.upper()} {case.operation.path}"
                report.failures.setdefault(label, f"{type(exc).__name__}: {str(exc)[:600]}")

        run()
    print(
        f"\nfuzz {service}: {report.operations} operations, {report.examples} examples, {len(report.failures)} failing"
    )
    return report


@pytest.mark.parametrize("service", ["registration", "notification", "proposals"])
def test_no_input_gives_a_5xx_or_an_undocumented_response(
    service, registration_settings, notification_settings, proposals_settings
):
    settings, factory = {
        "registration": (registration_settings, registration_app),
        "notification": (notification_settings, notification_app),
        "proposals": (proposals_settings, proposals_app),
    }[service]
    # One request at a time: a small pool, so the run holds few connections of the shared server.
    app = factory(settings.model_copy(update={"rate_limit_per_minute": 0, "database_pool_size": 5}))
    try:
        report = fuzz(service, app, settings)
    finally:
        # The connections belong to the test client's loop, gone by now: drop them without awaiting.
        app.state.runtime.engine.sync_engine.dispose(close=False)
    assert report.operations > 3 and report.examples >= report.operations
    assert report.failures == {}


# --- forged cursors -------------------------------------------------------------------------------------
# A cursor is base64 of JSON the client may forge at will: any JSON shape, well-formed base64 or not.

_JSON = hypothesis.strategies.recursive(
    hypothesis.strategies.none()
    | hypothesis.strategies.booleans()
    | hypothesis.strategies.integers()
    | hypothesis.strategies.floats(allow_nan=False)
    | hypothesis.strategies.text(max_size=30)
    | hypothesis.strategies.datetimes(timezones=hypothesis.strategies.timezones()).map(
        lambda d: d.isoformat()
    )
    | hypothesis.strategies.uuids().map(str),
    lambda inner: (
        hypothesis.strategies.lists(inner, max_size=4)
        | hypothesis.strategies.dictionaries(hypothesis.strategies.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# ["2026-01-01T00:00:00+00:00", 5]: well-formed, the id a number (a 500 before issue 21).
ISSUE_21_CURSOR = "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgNV0"
_CURSORS = (
    _JSON.map(lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode())
    | hypothesis.strategies.binary(max_size=60).map(lambda raw: base64.urlsafe_b64encode(raw).decode())
    | hypothesis.strategies.text(max_size=60)
)


async def test_forged_cursors_are_a_422_naming_the_cursor(proposals_settings):
    """Random JSON shapes, random bytes and random text as the cursor of the public list and of the
    moderation queue: 200 (a cursor that happens to be valid) or 422 naming ``cursor``, never a 5xx."""
    app = proposals_app(
        proposals_settings.model_copy(update={"rate_limit_per_minute": 0, "database_pool_size": 2})
    )
    moderator = {"Authorization": f"Bearer {mint_token(proposals_settings, 'fuzz', ['moderator'])}"}
    seen: dict[int, int] = {}
    async with running(app) as client:
        loop = asyncio.get_running_loop()

        @hypothesis.settings(
            max_examples=max(EXAMPLES * 10, 60),
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(cursor=_CURSORS, queue=hypothesis.strategies.booleans())
        @hypothesis.example(cursor=ISSUE_21_CURSOR, queue=False)
        @hypothesis.example(cursor=ISSUE_21_CURSOR, queue=True)
        def run(cursor: str, queue: bool) -> None:
            path, headers = ("/v1/moderation/queue", moderator) if queue else ("/v1/proposals", {})
            call = client.get(path, params={"cursor": cursor}, headers=headers)
            answer = asyncio.run_coroutine_threadsafe(call, loop).result(30)
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            assert answer.status_code in (200, 422), (path, cursor, answer.status_code, answer.text[:300])
            if answer.status_code == 422:
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert [e["field"] for e in answer.json()["errors"]] == ["cursor"]

        # Hypothesis drives synchronously from a thread; the requests run on this loop, with the app.
        await asyncio.to_thread(run)
    print(f"\nforged cursors: {seen}")
    assert seen.get(422, 0) > 0
