"""Issue 21, item 4: fair limits. Per-client and per-mailbox budgets come before the global caps, so one
client cannot close a door for the whole city; X-Forwarded-For counts only from a configured proxy;
``victim+1@`` and ``victim+2@`` share one mailbox budget (opt-in mails, erasure mails, receipts)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from services.proposals.app import create_app as proposals_app
from services.proposals.models import outbox as proposals_outbox
from services.proposals.models import working_groups as proposals_working_groups
from services.registration.app import create_app
from services.registration.models import erasure_requests, outbox, registrations
from tests.conftest import registration_body, running, unique_email
from tests.registration.support import opt_in_mails_since


@asynccontextmanager
async def clients(app):
    """The app running, and a factory of HTTP clients that connect from a given peer address."""
    opened: list[httpx.AsyncClient] = []
    async with running(app):

        def client(peer: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(peer, 40000))
            made = httpx.AsyncClient(transport=transport, base_url="http://test")
            opened.append(made)
            return made

        try:
            yield client
        finally:
            for made in opened:
                await made.aclose()


async def _opt_in_mails_last_hour(settings) -> int:
    probe = create_app(settings)
    async with running(probe):
        async with probe.state.runtime.transaction() as session:
            return await opt_in_mails_since(session, datetime.now(UTC) - timedelta(hours=1))


async def _erasure_mails_last_hour(settings) -> int:
    probe = create_app(settings)
    async with running(probe):
        async with probe.state.runtime.transaction() as session:
            return int(
                await session.scalar(
                    select(func.count())
                    .select_from(erasure_requests)
                    .where(erasure_requests.c.origin == "self")
                    .where(erasure_requests.c.created_at > datetime.now(UTC) - timedelta(hours=1))
                )
                or 0
            )


async def test_one_client_exhausting_its_budget_does_not_close_registration_for_another(
    registration_settings, make_working_group
):
    already = await _opt_in_mails_last_hour(registration_settings)
    app = create_app(
        registration_settings.model_copy(
            update={
                "rate_limit_per_minute": 0,
                "opt_in_mails_per_hour": already + 5,  # the global cap: five more this hour
                "opt_in_requests_per_client_per_hour": 3,
            }
        )
    )
    async with clients(app) as client:
        wg = await make_working_group(app.state.runtime)
        attacker, resident = client("198.51.100.66"), client("203.0.113.7")
        answers = [
            (
                await attacker.post("/v1/registrations", json=registration_body(working_group_id=wg))
            ).status_code
            for _ in range(6)
        ]
        assert answers == [202, 202, 202, 429, 429, 429]
        # The attacker spent its own budget, not the city's: the door stays open for the resident.
        resident_answer = await resident.post(
            "/v1/registrations", json=registration_body(working_group_id=wg)
        )
        assert resident_answer.status_code == 202


async def test_one_client_exhausting_its_budget_does_not_close_the_erasure_door(registration_settings):
    already = await _erasure_mails_last_hour(registration_settings)
    app = create_app(
        registration_settings.model_copy(
            update={
                "rate_limit_per_minute": 0,
                "erasure_mails_per_hour": already + 3,
                "erasure_requests_per_client_per_hour": 2,
            }
        )
    )
    async with clients(app) as client:
        attacker, resident = client("198.51.100.67"), client("2001:db8:5::1")
        answers = [
            (await attacker.post("/v1/privacy/erasure-requests", json={"email": unique_email()})).status_code
            for _ in range(5)
        ]
        assert answers == [202, 202, 429, 429, 429]
        mine = unique_email("resident")
        assert (await resident.post("/v1/privacy/erasure-requests", json={"email": mine})).status_code == 202


async def test_x_forwarded_for_from_an_untrusted_peer_gives_no_new_budget(registration_settings):
    app = create_app(
        registration_settings.model_copy(
            update={"rate_limit_per_minute": 0, "erasure_requests_per_client_per_hour": 2}
        )
    )
    async with clients(app) as client:
        # 127.0.0.1 is no proxy unless configured: its X-Forwarded-For is not believed either.
        for peer in ("198.51.100.68", "127.0.0.1"):
            direct = client(peer)
            answers = [
                (
                    await direct.post(
                        "/v1/privacy/erasure-requests",
                        json={"email": unique_email()},
                        headers={"X-Forwarded-For": f"192.0.2.{n}"},
                    )
                ).status_code
                for n in range(4)
            ]
            assert answers == [202, 202, 429, 429], peer


async def test_x_forwarded_for_from_a_configured_proxy_counts_the_rightmost_untrusted_hop(
    registration_settings,
):
    app = create_app(
        registration_settings.model_copy(
            update={
                "rate_limit_per_minute": 0,
                "erasure_requests_per_client_per_hour": 2,
                "forwarded_allow_ips": "10.20.0.0/16, 10.30.0.5",
            }
        )
    )
    async with clients(app) as client:
        proxy = client("10.20.1.1")

        async def ask(forwarded: str) -> int:
            answer = await proxy.post(
                "/v1/privacy/erasure-requests",
                json={"email": unique_email()},
                headers={"X-Forwarded-For": forwarded},
            )
            return answer.status_code

        # Behind the proxy, each resident has a budget of their own.
        assert [await ask("192.0.2.10") for _ in range(3)] == [202, 202, 429]
        assert [await ask("192.0.2.11") for _ in range(2)] == [202, 202]
        # What the client writes to the left of the hop our proxies appended changes nothing; configured
        # proxies in the chain (10.30.0.5) are skipped.
        spoofed = [await ask(f"203.0.113.{n}, 192.0.2.12, 10.30.0.5") for n in range(3)]
        assert spoofed == [202, 202, 429]


async def _opt_in_events(runtime, mailbox_local: str) -> list[str]:
    async with runtime.transaction() as session:
        rows = await session.execute(
            select(outbox.c.payload["recipient"]["email"].astext).where(
                outbox.c.payload["recipient"]["email"].astext.like(f"{mailbox_local}%")
            )
        )
        return sorted(rows.scalars())


async def test_tagged_addresses_share_one_opt_in_budget(registration_settings, make_working_group):
    app = create_app(
        registration_settings.model_copy(
            update={"rate_limit_per_minute": 0, "opt_in_mails_per_mailbox_per_day": 2}
        )
    )
    async with running(app) as api:
        wg = await make_working_group(app.state.runtime)
        victim = unique_email("victim")
        local, domain = victim.split("@")
        for tag in ("1", "2", "3", "4"):
            body = registration_body(working_group_id=wg, email=f"{local}+{tag}@{domain}")
            assert (await api.post("/v1/registrations", json=body)).status_code == 202
        # The exact address in other case: the same mailbox too.
        upper = registration_body(working_group_id=wg, email=f"{local.upper()}+5@{domain}")
        assert (await api.post("/v1/registrations", json=upper)).status_code == 202
        sent = await _opt_in_events(app.state.runtime, local)
        assert sent == [f"{local}+1@{domain}", f"{local}+2@{domain}"]  # mail goes to the address as typed
        async with app.state.runtime.transaction() as session:
            stored = await session.scalar(
                select(func.count())
                .select_from(registrations)
                .where(registrations.c.email_key.like(f"{local}%"))
            )
        assert stored == 2

        # Gmail ignores dots: j.doe@ and jdoe@ are one mailbox.
        base = unique_email("g").split("@")[0].replace("-", "")
        for address in (f"{base[:3]}.{base[3:]}@gmail.com", f"{base}+x@googlemail.com", f"{base}@gmail.com"):
            body = registration_body(working_group_id=wg, email=address)
            assert (await api.post("/v1/registrations", json=body)).status_code == 202
        async with app.state.runtime.transaction() as session:
            gmail = await session.scalar(
                select(func.count())
                .select_from(registrations)
                .where(
                    registrations.c.email_key.in_(
                        [f"{base[:3]}.{base[3:]}@gmail.com", f"{base}+x@googlemail.com", f"{base}@gmail.com"]
                    )
                )
            )
        assert gmail == 2


async def test_tagged_addresses_share_one_erasure_budget(registration_settings):
    app = create_app(
        registration_settings.model_copy(
            update={"rate_limit_per_minute": 0, "erasure_mails_per_mailbox_per_day": 2}
        )
    )
    async with running(app) as api:
        victim = unique_email("erase")
        local, domain = victim.split("@")
        for tag in ("a", "b", "c", "d"):
            answer = await api.post("/v1/privacy/erasure-requests", json={"email": f"{local}+{tag}@{domain}"})
            assert answer.status_code == 202
            assert answer.json() == {"status": "pending_verification"}
        async with app.state.runtime.transaction() as session:
            rows = await session.execute(
                select(outbox.c.payload["recipient"]["email"].astext)
                .where(outbox.c.event_type == "privacy.erasure_request_submitted")
                .where(outbox.c.payload["recipient"]["email"].astext.like(f"{local}%"))
            )
            assert sorted(rows.scalars()) == [f"{local}+a@{domain}", f"{local}+b@{domain}"]


async def test_tagged_addresses_share_one_receipt_budget(proposals_settings):
    import uuid

    from sqlalchemy import insert

    from tests.proposals.conftest import proposal_body

    app = proposals_app(
        proposals_settings.model_copy(
            update={"rate_limit_per_minute": 0, "receipt_mails_per_address_per_day": 2}
        )
    )
    async with running(app) as api:
        wg = f"wg-{uuid.uuid4().hex[:10]}"
        async with app.state.runtime.transaction() as session:
            await session.execute(insert(proposals_working_groups).values(id=wg, title="Arbeitskreis"))
        victim = unique_email("author")
        local, domain = victim.split("@")
        for tag in ("1", "2", "3", "4"):
            body = proposal_body(wg, author_email=f"{local}+{tag}@{domain}")
            assert (await api.post("/v1/proposals", json=body)).status_code == 202
        async with app.state.runtime.transaction() as session:
            rows = await session.execute(
                select(proposals_outbox.c.payload["author"]["email"].astext)
                .where(proposals_outbox.c.event_type == "proposal.submitted")
                .where(proposals_outbox.c.payload["author"]["email"].astext.like(f"{local}%"))
            )
            assert sorted(rows.scalars()) == [f"{local}+1@{domain}", f"{local}+2@{domain}"]


async def test_the_proposal_intake_has_a_per_client_hourly_budget(proposals_settings):
    from tests.proposals.conftest import proposal_body

    app = proposals_app(
        proposals_settings.model_copy(
            update={"rate_limit_per_minute": 0, "submissions_per_client_per_hour": 2}
        )
    )
    async with clients(app) as client:
        import uuid

        from sqlalchemy import insert

        wg = f"wg-{uuid.uuid4().hex[:10]}"
        async with app.state.runtime.transaction() as session:
            await session.execute(insert(proposals_working_groups).values(id=wg, title="Arbeitskreis"))
        attacker, resident = client("198.51.100.69"), client("203.0.113.9")
        answers = [
            (await attacker.post("/v1/proposals", json=proposal_body(wg))).status_code for _ in range(3)
        ]
        assert answers == [202, 202, 429]
        assert (await resident.post("/v1/proposals", json=proposal_body(wg))).status_code == 202


def test_the_default_budgets_follow_the_sizing_rule():
    """A single client (one replica) reaches at most a tenth of a global cap with the defaults."""
    from services.proposals.config import ProposalsSettings
    from services.registration.config import RegistrationSettings

    defaults = RegistrationSettings.model_fields
    assert (
        defaults["opt_in_requests_per_client_per_hour"].default * 10
        <= defaults["opt_in_mails_per_hour"].default
    )
    assert (
        defaults["erasure_requests_per_client_per_hour"].default * 10
        <= defaults["erasure_mails_per_hour"].default
    )
    assert ProposalsSettings.model_fields["submissions_per_client_per_hour"].default > 0
    assert RegistrationSettings.model_fields["forwarded_allow_ips"].default == ""


def test_forwarded_allow_ips_is_parsed_strictly():
    import pytest

    from shared.ratelimit import trusted_proxies

    assert trusted_proxies("") == ()
    assert [str(n) for n in trusted_proxies(" 10.0.0.1, 2001:db8::/48 ")] == ["10.0.0.1/32", "2001:db8::/48"]
    for wrong in ("*", "10.0.0.300", "proxy.example"):
        with pytest.raises(ValueError):
            trusted_proxies(wrong)


def test_the_server_never_rewrites_the_client_from_x_forwarded_for(monkeypatch, registration_settings):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default and rewrites the peer before the app
    sees it; ``mitwirkung serve`` turns that off (the services read the header only from
    FORWARDED_ALLOW_IPS)."""
    import argparse

    import uvicorn

    from shared import cli

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(cli, "load_settings", lambda service: registration_settings)
    for name in ("collect", "freeze", "set_threshold"):
        monkeypatch.setattr(cli.gc, name, lambda *args: None)
    assert cli.cmd_serve(argparse.Namespace(service="registration")) == 0
    assert calls and calls[0]["proxy_headers"] is False


def test_a_forwarded_hop_counts_as_its_address_port_or_not():
    from starlette.requests import Request

    from shared.ratelimit import client_address, client_key, trusted_proxies

    proxies = trusted_proxies("10.0.0.1")

    def client(forwarded: str, peer: str = "10.0.0.1") -> str:
        scope = {
            "type": "http",
            "headers": [(b"x-forwarded-for", forwarded.encode())],
            "client": (peer, 1234),
        }
        return client_key(client_address(Request(scope), proxies))

    assert client("192.0.2.1:5000") == client("192.0.2.1:6000") == client("192.0.2.1") == "192.0.2.1"
    assert client("[2001:db8:1:2::1]:5000") == client("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    assert client("198.51.100.1, 192.0.2.1:7000") == "192.0.2.1"
    # A hop that is no address is no client of its own: it counts as the proxy.
    assert client("unknown") == client("x" * 60) == "10.0.0.1"
    # From a peer that is not a configured proxy, the header is ignored.
    assert client("192.0.2.1", peer="203.0.113.5") == "203.0.113.5"


async def test_the_mailbox_key_goes_with_the_address(
    registration_settings, proposals_settings, make_working_group
):
    """The counting key is personal data too: erasure removes it with the address (a scan for the address
    as typed would not find ``victim@`` left behind by ``victim+1@``)."""
    import uuid

    from sqlalchemy import insert

    from services.proposals import service as proposals_service
    from services.proposals.models import proposals
    from services.registration import privacy
    from tests.proposals.conftest import proposal_body

    app = create_app(registration_settings)
    async with running(app) as api:
        wg = await make_working_group(app.state.runtime)
        victim = unique_email("gone")
        local, domain = victim.split("@")
        tagged = f"{local}+1@{domain}"
        assert (
            await api.post("/v1/registrations", json=registration_body(working_group_id=wg, email=tagged))
        ).status_code == 202
        async with app.state.runtime.transaction() as session:
            assert (
                await session.scalar(
                    select(registrations.c.mailbox_key).where(registrations.c.email == tagged)
                )
                == victim
            )
            await privacy.erase_address(
                session,
                app.state.runtime.settings,
                app.state.runtime.catalog,
                tagged,
            )
        async with app.state.runtime.transaction() as session:
            left = await session.scalar(
                select(func.count()).select_from(registrations).where(registrations.c.mailbox_key == victim)
            )
        assert left == 0

    papp = proposals_app(proposals_settings)
    async with running(papp) as api:
        pwg = f"wg-{uuid.uuid4().hex[:10]}"
        async with papp.state.runtime.transaction() as session:
            await session.execute(insert(proposals_working_groups).values(id=pwg, title="Arbeitskreis"))
        assert (
            await api.post("/v1/proposals", json=proposal_body(pwg, author_email=tagged))
        ).status_code == 202
        async with papp.state.runtime.transaction() as session:
            assert (
                await session.scalar(
                    select(func.count()).select_from(proposals).where(proposals.c.author_mailbox == victim)
                )
                == 1
            )
            await proposals_service.forget_author(session, tagged)
        async with papp.state.runtime.transaction() as session:
            left = await session.scalar(
                select(func.count()).select_from(proposals).where(proposals.c.author_mailbox == victim)
            )
        assert left == 0
