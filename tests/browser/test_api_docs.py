"""/docs in a real browser: Swagger UI renders the service's API from the service's own files, with the
page's Content-Security-Policy in force and not one complaint, and the browser asks no other host."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlsplit

import pytest
import uvicorn
from selenium.webdriver.common.by import By

from services.registration.app import create_app
from services.registration.config import RegistrationSettings
from tests.support.infra import RUN_SECRETS

pytestmark = pytest.mark.browser


async def test_swagger_ui_renders_under_its_csp_from_local_files_only(browser) -> None:
    # No lifespan: /docs and /openapi.json need neither the database nor the broker.
    settings = RegistrationSettings(
        database_url="postgresql+asyncpg://docs:docs@127.0.0.1:1/docs",
        amqp_url="amqp://docs:docs@127.0.0.1:1/",
        staff_jwt_secret="docs-test-secret-at-least-32-bytes-long",
        token_secret=RUN_SECRETS["REGISTRATION_TOKEN_SECRET"],
        environment="test",
        log_json=False,
    )
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the service did not start"
            await asyncio.sleep(0.05)
        browser.get_log("browser")  # what earlier tests left
        browser.execute_cdp_cmd("Network.enable", {})
        await asyncio.to_thread(browser.get, f"http://127.0.0.1:{port}/docs")
        deadline = time.monotonic() + 30
        operations: list = []
        while time.monotonic() < deadline and not operations:
            operations = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
            await asyncio.sleep(0.2)
        # What the page says otherwise (e.g. "Unable to render this definition" for an OpenAPI version
        # this Swagger UI cannot read).
        assert operations, browser.find_element(By.TAG_NAME, "body").text[:1500]
        assert any("/v1/registrations" in op.text for op in operations)
        title = browser.find_element(By.CSS_SELECTOR, ".information-container .title").text
        assert title.startswith(app.title), title  # the service's own OpenAPI document, read
        complaints = [
            e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]
        ]
        assert complaints == [], complaints
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
        )
        hosts = {urlsplit(url).netloc for url in loaded if not url.startswith("data:")}
        assert hosts == {f"127.0.0.1:{port}"}, json.dumps(loaded, indent=1)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()
