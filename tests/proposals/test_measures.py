"""Measures: what the council made of adopted proposals and what became of it. The whole story against real
Postgres, RabbitMQ and SMTP: linking only adopted proposals (422), the council's decision once (409),
progress until done (then 409), followers by double opt-in, mails to authors and followers exactly once in
their language with one-click unsubscribe headers, the public JSON and pages, and the author's page."""

from __future__ import annotations

import asyncio
import re
import uuid

from sqlalchemy import func, select

from services.notification.app import create_app as notification_app
from services.proposals.models import measure_followers
from tests.conftest import running, unique_email
from tests.proposals.conftest import proposal_body, staff_headers

HTML = {"Accept": "text/html"}


def text_of(mail) -> str:
    return mail.message.get_body(("plain",)).get_content()


async def published_with_outcome(api, settings, wg: str, outcome: str | None, **fields) -> str:
    """A proposal, published, with the working group's outcome (None: none yet)."""
    moderator = staff_headers(settings, "moderator")
    answer = await api.post("/v1/proposals", json=proposal_body(wg, **fields))
    assert answer.status_code == 202, answer.text
    pid = answer.json()["id"]
    published = await api.post(
        f"/v1/moderation/proposals/{pid}/decision",
        json={"decision": "publish"},
        headers={**moderator, "If-Match": "1"},
    )
    assert published.status_code == 200, published.text
    if outcome:
        decided = await api.post(
            f"/v1/moderation/proposals/{pid}/outcome",
            json={"outcome": outcome, "public_statement": "Die Arbeitsgruppe hat entschieden."},
            headers=moderator,
        )
        assert decided.status_code == 200, decided.text
    return pid


def measure_body(wg: str, linked: list[str], /, **overrides) -> dict:
    body = {
        "working_group_id": wg,
        "district_id": "innenstadt-ost",
        "title": "Sprachcafés in den Stadtteilen",
        "description": "Drei Sprachcafés in Stadtteiltreffs, betreut von Ehrenamtlichen und der VHS.",
        "proposal_ids": linked,
    }
    body.update(overrides)
    return body


async def test_only_adopted_proposals_can_be_linked_and_staff_only_write(
    proposals_api, make_working_group, proposals_settings
):
    app = proposals_api.app
    wg = await make_working_group(app)
    moderator = staff_headers(proposals_settings, "moderator")
    adopted = await published_with_outcome(proposals_api, proposals_settings, wg, "adopted")
    partly = await published_with_outcome(proposals_api, proposals_settings, wg, "partially_adopted")
    refused = await published_with_outcome(proposals_api, proposals_settings, wg, "not_adopted")
    open_one = await published_with_outcome(proposals_api, proposals_settings, wg, None)
    unknown = str(uuid.uuid4())

    answer = await proposals_api.post(
        "/v1/measures", json=measure_body(wg, [adopted, refused, open_one, unknown]), headers=moderator
    )
    assert answer.status_code == 422
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in problem["errors"]] == ["proposal_ids"]
    for pid in (refused, open_one, unknown):
        assert pid in problem["errors"][0]["message"]
    assert adopted not in problem["errors"][0]["message"]

    for bad, field in (
        ({"working_group_id": "no-such-group"}, "working_group_id"),
        ({"title": "x"}, "title"),
        ({"description": "kurz"}, "description"),
        ({"proposal_ids": []}, "proposal_ids"),
        ({"title": "Zeile\r\nBcc: x@example.org"}, "title"),
    ):
        answer = await proposals_api.post(
            "/v1/measures", json=measure_body(wg, [adopted], **bad), headers=moderator
        )
        assert answer.status_code == 422, (bad, answer.text)
        assert field in str(answer.json()["errors"])

    resident = await proposals_api.post("/v1/measures", json=measure_body(wg, [adopted]))
    assert resident.status_code == 401
    created = await proposals_api.post(
        "/v1/measures", json=measure_body(wg, [adopted, partly]), headers=moderator
    )
    assert created.status_code == 201, created.text
    measure = (await proposals_api.get(f"/v1/measures/{created.json()['id']}")).json()
    assert {p["id"] for p in measure["proposals"]} == {adopted, partly}
    assert (measure["status"], measure["council_decision"], measure["timeline"]) == ("proposed", None, [])


async def test_a_measure_s_story_mails_authors_and_followers_once_each_in_their_language(
    proposals_api, make_working_group, proposals_settings, notification_settings, smtp
):
    app = proposals_api.app
    wg = await make_working_group(app, title="Sprachförderung")
    moderator = staff_headers(proposals_settings, "moderator")
    author_tr, author_de, follower = unique_email("aylin"), unique_email("jonas"), unique_email("olga")
    anonymous = await published_with_outcome(proposals_api, proposals_settings, wg, "adopted")
    p_tr = await published_with_outcome(
        proposals_api,
        proposals_settings,
        wg,
        "adopted",
        language="tr",
        author_name="Aylin",
        author_email=author_tr,
    )
    p_de = await published_with_outcome(
        proposals_api,
        proposals_settings,
        wg,
        "partially_adopted",
        author_name="Jonas",
        author_email=author_de,
    )
    async with running(notification_app(notification_settings)):
        await smtp.wait_for(author_tr, 3)  # receipt, published, outcome
        await smtp.wait_for(author_de, 3)
        created = await proposals_api.post(
            "/v1/measures", json=measure_body(wg, [anonymous, p_tr, p_de]), headers=moderator
        )
        measure_id = created.json()["id"]

        # Following: the double opt-in mail, once, whatever is asked again.
        for _ in range(2):
            asked = await proposals_api.post(
                f"/v1/measures/{measure_id}/followers", json={"email": follower, "language": "ru"}
            )
            assert asked.status_code == 202
            assert asked.json() == {"status": "check your mail"}
        opt_in = (await smtp.wait_for(follower, 1))[0]
        assert "List-Unsubscribe" not in opt_in.message  # a transactional mail
        token = re.search(r"confirm\?token=([A-Za-z0-9_\-]+)", text_of(opt_in)).group(1)
        unknown = await proposals_api.post(f"/v1/measures/{uuid.uuid4()}/followers", json={"email": follower})
        assert unknown.status_code == 404
        bad = await proposals_api.post(f"/v1/measures/{measure_id}/followers", json={"email": "kein-at"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "email"

        # A GET shows the button (a mail scanner confirms nothing); the POST confirms.
        page = await proposals_api.get(
            "/v1/measures/followers/confirm", params={"token": token}, headers=HTML
        )
        assert page.status_code == 200 and 'lang="ru"' in page.text and "<form" in page.text
        assert (await proposals_api.get("/v1/measures/followers/confirm", params={"token": token})).json()[
            "confirmed"
        ] is False
        confirmed = await proposals_api.post("/v1/measures/followers/confirm", params={"token": token})
        assert confirmed.status_code == 200 and confirmed.json()["confirmed"] is True

        decision = {
            "decided_on": "2027-03-15",
            "reference": "0123/2027",
            "decision": "amended",
            "public_statement": "Zwei statt drei Standorte.",
        }
        decided = await proposals_api.post(
            f"/v1/measures/{measure_id}/council-decision", json=decision, headers=moderator
        )
        assert decided.status_code == 200, decided.text
        again = await proposals_api.post(
            f"/v1/measures/{measure_id}/council-decision", json=decision, headers=moderator
        )
        assert again.status_code == 409

        tr_mail = (await smtp.wait_for(author_tr, 4))[3]
        de_mail = (await smtp.wait_for(author_de, 4))[3]
        ru_mail = (await smtp.wait_for(follower, 2))[1]
        assert "belediye meclisi" in str(tr_mail.message["Subject"])
        assert "Stadtratsbeschluss" in str(de_mail.message["Subject"])
        assert "городского совета" in str(ru_mail.message["Subject"])
        for mail in (tr_mail, de_mail, ru_mail):
            body = text_of(mail)
            assert "0123/2027" in body and "Zwei statt drei Standorte." in body
            assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            link = re.fullmatch(r"<(.+)>", str(mail.message["List-Unsubscribe"]).strip()).group(1)
            assert link in body and f"/v1/measures/{measure_id}/unsubscribe?token=" in link
        follower_link = re.fullmatch(r"<(.+)>", str(ru_mail.message["List-Unsubscribe"]).strip()).group(1)

        progressed = await proposals_api.post(
            f"/v1/measures/{measure_id}/progress",
            json={"status": "planned", "on": "2027-04-01", "public_statement": "Standorte werden gesucht."},
            headers=moderator,
        )
        assert progressed.status_code == 200
        await smtp.wait_for(follower, 3)
        await smtp.wait_for(author_tr, 5)

        # One click (RFC 8058): the follower's address is gone at once.
        path = follower_link.split(proposals_settings.public_url, 1)[1]
        clicked = await proposals_api.post(path, content="List-Unsubscribe=One-Click",
                                           headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert clicked.status_code == 200, clicked.text
        async with app.state.runtime.transaction() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(measure_followers)
                .where(measure_followers.c.email == follower)
            )
        assert left == 0

        for status, on in (("in_progress", "2027-05-01"), ("done", "2027-09-30")):
            entry = {"status": status, "on": on, "public_statement": f"Stand {on}."}
            answer = await proposals_api.post(
                f"/v1/measures/{measure_id}/progress", json=entry, headers=moderator
            )
            assert answer.status_code == 200, answer.text
        after_done = await proposals_api.post(
            f"/v1/measures/{measure_id}/progress",
            json={"status": "in_progress", "on": "2027-10-01", "public_statement": "Noch etwas."},
            headers=moderator,
        )
        assert after_done.status_code == 409
        await smtp.wait_for(author_tr, 7)
        await smtp.wait_for(author_de, 7)
        await asyncio.sleep(2)  # room for a duplicate to arrive

    # Exactly once each: 3 proposal mails + decision + 3 progress entries; the follower stopped after 1.
    assert len(smtp.handler.to(author_tr)) == 7
    assert len(smtp.handler.to(author_de)) == 7
    assert len(smtp.handler.to(follower)) == 3

    view = (await proposals_api.get(f"/v1/measures/{measure_id}")).json()
    assert view["council_decision"] == {**decision, "decided_on": "2027-03-15"}
    assert [e["status"] for e in view["timeline"]] == ["planned", "in_progress", "done"]
    assert view["status"] == "done"
    page = await proposals_api.get(f"/v1/measures/{measure_id}", headers=HTML, params={"lang": "ar"})
    assert page.status_code == 200 and 'dir="rtl"' in page.text and "0123/2027" in page.text

    # The proposal's public page and JSON name the measure.
    public = (await proposals_api.get(f"/v1/proposals/{p_tr}")).json()
    assert [m["id"] for m in public["measures"]] == [measure_id]
    assert (
        "Sprachcafés in den Stadtteilen"
        in (await proposals_api.get(f"/v1/proposals/{p_tr}", headers=HTML)).text
    )


async def test_the_author_s_page_shows_the_measures_and_the_author_can_unsubscribe(
    proposals_api, make_working_group, proposals_settings, notification_settings, smtp
):
    app = proposals_api.app
    wg = await make_working_group(app)
    moderator = staff_headers(proposals_settings, "moderator")
    author = unique_email("mina")
    async with running(notification_app(notification_settings)):
        pid = await published_with_outcome(
            proposals_api, proposals_settings, wg, "adopted", author_name="Mina", author_email=author
        )
        receipt = (await smtp.wait_for(author, 3))[0]
        token = re.search(r"mine\?token=([A-Za-z0-9_\-]+)", text_of(receipt)).group(1)
        created = await proposals_api.post("/v1/measures", json=measure_body(wg, [pid]), headers=moderator)
        measure_id = created.json()["id"]
        mine = (await proposals_api.get("/v1/proposals/mine", params={"token": token})).json()
        assert [m["id"] for m in mine["measures"]] == [measure_id]
        page = await proposals_api.get("/v1/proposals/mine", params={"token": token}, headers=HTML)
        assert f"/v1/measures/{measure_id}" in page.text

        entry = {"status": "planned", "on": "2027-01-10", "public_statement": "Geplant ab Januar."}
        await proposals_api.post(f"/v1/measures/{measure_id}/progress", json=entry, headers=moderator)
        planned = (await smtp.wait_for(author, 4))[3]
        link = re.fullmatch(r"<(.+)>", str(planned.message["List-Unsubscribe"]).strip()).group(1)
        path = link.split(proposals_settings.public_url, 1)[1]
        shown = await proposals_api.get(path, headers=HTML)
        assert shown.status_code == 200 and "<form" in shown.text
        assert (await proposals_api.post(path)).status_code == 200
        wrong = await proposals_api.post(f"/v1/measures/{measure_id}/unsubscribe", params={"token": "x" * 43})
        assert wrong.status_code == 404

        await proposals_api.post(
            f"/v1/measures/{measure_id}/progress",
            json={"status": "dropped", "on": "2027-02-01", "public_statement": "Keine Räume."},
            headers=moderator,
        )
        await asyncio.sleep(3)
    assert len(smtp.handler.to(author)) == 4  # nothing after the unsubscribe


async def test_public_list_filters_and_pages_by_keyset(proposals_api, make_working_group, proposals_settings):
    app = proposals_api.app
    wg, other = await make_working_group(app), await make_working_group(app)
    moderator = staff_headers(proposals_settings, "moderator")
    pid = await published_with_outcome(proposals_api, proposals_settings, wg, "adopted")
    ids = []
    for i in range(5):
        answer = await proposals_api.post(
            "/v1/measures", json=measure_body(wg, [pid], title=f"Maßnahme Nummer {i}"), headers=moderator
        )
        ids.append(answer.json()["id"])
    other_pid = await published_with_outcome(proposals_api, proposals_settings, other, "adopted")
    await proposals_api.post("/v1/measures", json=measure_body(other, [other_pid]), headers=moderator)
    await proposals_api.post(
        f"/v1/measures/{ids[0]}/progress",
        json={"status": "in_progress", "on": "2027-01-01", "public_statement": "Läuft."},
        headers=moderator,
    )

    seen, cursor = [], None
    while True:
        params = {"working_group_id": wg, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await proposals_api.get("/v1/measures", params=params)).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    running_ = (
        await proposals_api.get("/v1/measures", params={"working_group_id": wg, "status": "in_progress"})
    ).json()
    assert [m["id"] for m in running_["items"]] == [ids[0]]
    for bad in ({"status": "finished"}, {"cursor": "nonsense"}, {"working_group_id": "a b"}):
        assert (await proposals_api.get("/v1/measures", params=bad)).status_code == 422
