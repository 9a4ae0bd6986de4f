"""Issue 21, item 8b: ``/readyz`` shows each worker's health as a summary that identifies nobody and no
host (healthy, since when, the error's class); the message goes to the log."""

from __future__ import annotations

import logging

from services.registration.app import create_app
from shared.observability import WorkerHealth, configure_logging
from tests.conftest import running
from tests.support.logs import collected

SECRET_DETAIL = "connect to db-7.intern.kaiserslautern.example:5432 refused for victim@example.org"


def test_the_summary_names_the_error_class_never_its_message():
    configure_logging("test", "INFO", json=False)
    health = WorkerHealth("test")
    health.register("mail-sender")
    with collected("shared.observability", logging.WARNING) as records:
        health.failed("mail-sender", ConnectionRefusedError(SECRET_DETAIL))
        health.failed("mail-sender", ConnectionRefusedError(SECRET_DETAIL))  # a retry: logged once
    report = health.report()["mail-sender"]
    assert report["healthy"] is False and report["since"] is not None
    assert report["error_class"] == "ConnectionRefusedError"
    assert "intern" not in str(report) and "victim" not in str(report)
    logged = [r for r in records if "db-7.intern" in str(r.msg)]
    assert len(logged) == 1
    since = report["since"]
    health.failed("mail-sender", TimeoutError("again"))
    assert health.report()["mail-sender"]["since"] == since  # unhealthy since the first failure
    health.ok("mail-sender")
    assert health.report()["mail-sender"]["error_class"] is None
    assert health.report()["mail-sender"]["since"] is None


async def test_readyz_shows_no_error_message(registration_settings):
    app = create_app(registration_settings)
    async with running(app) as client:
        app.state.runtime.health.failed("job:expiry", OSError(SECRET_DETAIL))
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
    worker = ready.json()["workers"]["job:expiry"]
    assert worker["healthy"] is False and worker["error_class"] == "OSError"
    for answer in (ready, metrics):
        assert "intern.kaiserslautern" not in answer.text and "victim@" not in answer.text
