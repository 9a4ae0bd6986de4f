"""Staff and the suppression list: staff ask whether an address is suppressed (since when, why), an admin
lifts it (audited, without the address), the delivery log shows the bounce with its diagnostic, and the
bounce counter is in the metrics. Bad input is a 4xx, never a 5xx."""

from __future__ import annotations

from urllib.parse import quote

from services.notification.app import create_app as notification_app
from tests.conftest import running, unique_email
from tests.notification.test_bounces import BOUNCES, _bounced, database
from tests.notification.test_sending import submitted
from tests.support.events import publish_event
from tests.support.staff import auth
from tests.support.wait import eventually


async def test_staff_see_and_an_admin_lifts_a_suppression(notification_settings, smtp):
    settings = notification_settings.model_copy(update={"bounce_address": BOUNCES})
    email = unique_email("suppressed")
    smtp.handler.refuse_rcpt.add(email)
    staff, admin = auth(settings, "staff"), auth(settings, "admin")
    app = notification_app(settings)
    async with running(app) as client:
        await publish_event(settings.amqp_url, submitted(email))
        await eventually(lambda: _bounced(settings, email), "the delivery bounced")

        answer = await client.get("/v1/suppressions", params={"address": email.upper()}, headers=staff)
        assert answer.status_code == 200
        body = answer.json()
        assert body["suppressed"] is True and body["since"] and "5.1.1" in body["reason"]
        assert email not in answer.text
        other = await client.get("/v1/suppressions", params={"address": unique_email()}, headers=staff)
        assert other.json() == {"suppressed": False}

        log = await client.get("/v1/deliveries", params={"recipient": email}, headers=staff)
        [row] = log.json()
        assert row["status"] == "bounced" and "550 5.1.1" in row["last_error"]
        assert (
            await client.get("/v1/deliveries", params={"status": "bounced"}, headers=staff)
        ).status_code == 200

        metrics = (await client.get("/metrics")).text
        assert 'mitwirkung_mail_bounces_total{kind="permanent"}' in metrics

        # Bad input: 4xx, never 5xx.
        for params in ({"address": ""}, {"address": "x" * 300}, {}):
            assert (await client.get("/v1/suppressions", params=params, headers=staff)).status_code == 422
        assert (await client.delete("/v1/suppressions/" + "x" * 300, headers=admin)).status_code == 422
        assert (await client.get("/v1/suppressions", params={"address": email})).status_code == 401
        moderator = auth(settings, "moderator")
        assert (
            await client.get("/v1/suppressions", params={"address": email}, headers=moderator)
        ).status_code == 403

        path = "/v1/suppressions/" + quote(email)
        assert (await client.delete(path, headers=staff)).status_code == 403
        lifted = await client.delete(path, headers=admin)
        assert lifted.status_code == 200 and lifted.json() == {"suppressed": False, "lifted": True}
        again = await client.delete(path, headers=admin)
        assert again.status_code == 200 and again.json() == {"suppressed": False, "lifted": False}
        after = await client.get("/v1/suppressions", params={"address": email}, headers=staff)
        assert after.json() == {"suppressed": False}

        # Mail goes to the address again.
        smtp.handler.refuse_rcpt.clear()
        await publish_event(settings.amqp_url, submitted(email))
        await smtp.wait_for(email)

    async with database(settings) as conn:
        audited = await conn.fetch(
            "SELECT action, details::text AS details FROM notification.audit_log "
            "WHERE action IN ('suppression.lifted', 'suppressions.read') AND subject = 'tester@stadt' "
            "ORDER BY id DESC LIMIT 5"
        )
    assert "suppression.lifted" in [a["action"] for a in audited]
    assert all(email not in a["details"] for a in audited)
