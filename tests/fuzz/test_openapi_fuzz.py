"""A bounded schemathesis run against each service's OpenAPI document: no input gives a 5xx, and every
response conforms to the schema its operation documents.

The suite runs ``FUZZ_EXAMPLES`` (default 8) examples per operation, derandomised; for a longer run by
hand: ``FUZZ_EXAMPLES=200 .venv/bin/pytest tests/fuzz -s`` (each service prints its figures).
"""

from __future__ import annotations

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
