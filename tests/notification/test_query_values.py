"""Issue 21, item 7: the delivery log's filters are client values too: a NUL (which Postgres refuses in
text) or another control character is a 422 naming the field, never a 500."""

from __future__ import annotations

from services.notification.app import create_app as notification_app
from shared.auth import mint_token
from tests.conftest import running


async def test_control_characters_in_the_delivery_log_filters_are_a_422(notification_settings):
    app = notification_app(notification_settings)
    staff = {"Authorization": f"Bearer {mint_token(notification_settings, 'staff.a', ['staff'])}"}
    async with running(app) as client:
        for field in ("recipient", "event_id"):
            for value in ("a\x00b@example.org", "\x00", "a\rb"):
                answer = await client.get("/v1/deliveries", params={field: value}, headers=staff)
                assert answer.status_code == 422, (field, value, answer.status_code)
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert [e["field"] for e in answer.json()["errors"]] == [field]
        fine = await client.get("/v1/deliveries", params={"recipient": "a@example.org"}, headers=staff)
        assert fine.status_code == 200
