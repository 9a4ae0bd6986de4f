"""An author's journey by mail: receipt with a private link, a request for changes with its reason,
the edit through the link, publication, the outcome — every transition a mail, internal notes never."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select

from services.notification.app import create_app as notification_app
from services.notification.models import deliveries
from services.notification.models import inbox as notification_inbox
from services.proposals.models import outbox
from tests.conftest import running, unique_email
from tests.proposals.conftest import proposal_body, staff_headers
from tests.support.wait import eventually


def text_of(mail) -> str:
    return mail.message.get_body(("plain",)).get_content()


def token_in(mail) -> str:
    return re.search(r"mine\?token=([A-Za-z0-9_\-]+)", text_of(mail)).group(1)


async def test_every_transition_reaches_the_author_and_internal_notes_never_do(
    proposals_api, make_working_group, proposals_settings, notification_settings, smtp
):
    app = proposals_api.app
    wg = await make_working_group(app, title="Sprachförderung")
    moderator = {**staff_headers(proposals_settings, "moderator")}
    note = f"INTERN-{uuid.uuid4().hex}"
    email = unique_email("oleh")
    async with running(notification_app(notification_settings)):
        answer = await proposals_api.post(
            "/v1/proposals",
            json=proposal_body(wg, language="uk", author_name="Олег Шевченко", author_email=email),
        )
        proposal_id = answer.json()["id"]
        receipt = (await smtp.wait_for(email, 1))[0]
        assert "Олег Шевченко" not in receipt.raw.decode("utf-8", errors="replace")  # unproven address
        token = token_in(receipt)

        mine = (await proposals_api.get("/v1/proposals/mine", params={"token": token})).json()
        assert (mine["id"], mine["status"], mine["can_edit"], mine["can_withdraw"]) == (
            proposal_id,
            "submitted",
            False,
            True,
        )

        reason = "Bitte nennen Sie einen Ort für das Sprachcafé."
        asked = await proposals_api.post(
            f"/v1/moderation/proposals/{proposal_id}/decision",
            json={"decision": "request_changes", "public_statement": reason, "internal_note": note},
            headers={**moderator, "If-Match": '"1"'},
        )
        assert asked.status_code == 200
        changes_mail = (await smtp.wait_for(email, 2))[1]
        assert reason in text_of(changes_mail)
        assert "Олег Шевченко" not in text_of(changes_mail)  # still nobody proved the address
        assert f"mine?token={token}" in text_of(changes_mail)

        early = await proposals_api.post(
            "/v1/proposals/mine/edit",
            json={"token": "x" * 43, "title": "Sprachcafé im Stadtteiltreff", "body": "b" * 30},
        )
        assert early.status_code == 404
        edited = await proposals_api.post(
            "/v1/proposals/mine/edit",
            json={
                "token": token,
                "title": "Sprachcafé im Stadtteiltreff Betzenberg",
                "body": "Jeden Mittwoch um 18 Uhr im Stadtteiltreff Betzenberg, offen für alle.",
                "district_id": "betzenberg",
            },
        )
        assert edited.status_code == 200, edited.text
        assert (edited.json()["status"], edited.json()["public_statement"]) == ("submitted", None)
        assert (await smtp.wait_for(email, 3))[2]  # a receipt for the edited text

        published = await proposals_api.post(
            f"/v1/moderation/proposals/{proposal_id}/decision",
            json={"decision": "publish", "internal_note": note},
            headers={**moderator, "If-Match": '"3"'},
        )
        assert published.status_code == 200, published.text
        published_mail = (await smtp.wait_for(email, 4))[3]
        assert f"/v1/proposals/{proposal_id}" in text_of(published_mail)
        # The title was typed by whoever sent the form: the author's address is unproven, so no mail
        # carries it (the page behind the private link shows it).
        assert "Betzenberg" not in published_mail.raw.decode("utf-8", errors="replace")

        outcome = "Der Arbeitskreis empfiehlt es, das Geld fehlt aber in diesem Jahr."
        decided = await proposals_api.post(
            f"/v1/moderation/proposals/{proposal_id}/outcome",
            json={"outcome": "not_adopted", "public_statement": outcome, "internal_note": note},
            headers=moderator,
        )
        assert decided.status_code == 200
        mails = await smtp.wait_for(email, 5)
        assert outcome in text_of(mails[4])

        for mail in mails:
            assert note not in mail.raw.decode("utf-8", errors="replace")
            assert mail.message["Content-Language"] == "uk"
        history = [h["action"] for h in published.json()["history"]]
        assert history == ["submitted", "request_changes", "revised", "publish"]


async def test_the_author_withdraws_through_the_private_link(
    proposals_api, make_working_group, notification_settings, smtp
):
    wg = await make_working_group(proposals_api.app)
    email = unique_email("ayse")
    async with running(notification_app(notification_settings)):
        await proposals_api.post("/v1/proposals", json=proposal_body(wg, author_email=email))
        token = token_in((await smtp.wait_for(email, 1))[0])
        withdrawn = await proposals_api.post("/v1/proposals/mine/withdraw", json={"token": token})
        assert withdrawn.status_code == 200
        assert (withdrawn.json()["status"], withdrawn.json()["can_withdraw"]) == ("withdrawn", False)
        mail = (await smtp.wait_for(email, 2))[1]
        assert "zurückgezogen" in mail.message["Subject"]
        again = await proposals_api.post("/v1/proposals/mine/withdraw", json={"token": token})
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("application/problem+json")


async def test_an_anonymous_proposal_mails_nobody(
    proposals_api, make_working_group, notification_settings, smtp
):
    app = proposals_api.app
    wg = await make_working_group(app)
    notification = notification_app(notification_settings)
    async with running(notification):
        answer = await proposals_api.post("/v1/proposals", json=proposal_body(wg))
        proposal_id = answer.json()["id"]
        async with app.state.runtime.transaction() as session:
            event_id = (
                await session.execute(
                    select(outbox.c.id).where(outbox.c.payload["proposal_id"].astext == proposal_id)
                )
            ).scalar_one()

        # Once the notification service has consumed the event, it has decided on its mails.
        async def consumed() -> list | None:
            async with notification.state.runtime.transaction() as session:
                seen = (
                    await session.execute(
                        select(notification_inbox.c.message_id).where(
                            notification_inbox.c.message_id == str(event_id)
                        )
                    )
                ).first()
                mails = (
                    await session.execute(
                        select(deliveries.c.id).where(deliveries.c.event_id == str(event_id))
                    )
                ).all()
            return [mails] if seen else None

        [mails] = await eventually(consumed, "the notification service to consume the event")
        assert mails == []


async def test_a_rejection_and_a_duplicate_mail_their_reasons(
    proposals_api, make_working_group, proposals_settings, notification_settings, smtp
):
    wg = await make_working_group(proposals_api.app)
    moderator = staff_headers(proposals_settings, "moderator")
    original = (
        await proposals_api.post("/v1/proposals", json=proposal_body(wg, title="Das Original"))
    ).json()["id"]
    await proposals_api.post(
        f"/v1/moderation/proposals/{original}/decision",
        json={"decision": "publish"},
        headers={**moderator, "If-Match": "1"},
    )
    rejected_by, duplicate_by = unique_email("tuna"), unique_email("maria")
    async with running(notification_app(notification_settings)):
        rejected = (
            await proposals_api.post(
                "/v1/proposals", json=proposal_body(wg, language="tr", author_email=rejected_by)
            )
        ).json()["id"]
        duplicate = (
            await proposals_api.post(
                "/v1/proposals", json=proposal_body(wg, language="ru", author_email=duplicate_by)
            )
        ).json()["id"]
        reason = "Das betrifft nicht die Stadt Kaiserslautern."
        answer = await proposals_api.post(
            f"/v1/moderation/proposals/{rejected}/decision",
            json={"decision": "reject", "public_statement": reason, "internal_note": "INTERN-R"},
            headers={**moderator, "If-Match": "1"},
        )
        assert answer.status_code == 200
        same = "Den gleichen Vorschlag gibt es schon."
        answer = await proposals_api.post(
            f"/v1/moderation/proposals/{duplicate}/decision",
            json={"decision": "mark_duplicate", "public_statement": same, "duplicate_of": original},
            headers={**moderator, "If-Match": "1"},
        )
        assert answer.status_code == 200
        rejection = (await smtp.wait_for(rejected_by, 2))[1]
        assert reason in text_of(rejection) and "INTERN-R" not in rejection.raw.decode()
        assert rejection.message["Content-Language"] == "tr"
        merged = (await smtp.wait_for(duplicate_by, 2))[1]
        assert same in text_of(merged)
        assert "Das Original" not in text_of(merged) and f"/v1/proposals/{original}" in text_of(merged)
