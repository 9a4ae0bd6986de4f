"""The console's rules without a database: session ids and CSRF, inactivity, roles from the provider's
claims, what each role opens, and the moderator's forms turned into the proposals service's requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.console import domain
from services.console.domain import Person


def test_session_ids_are_random_and_stored_only_as_hashes() -> None:
    a, b = domain.new_session_id(), domain.new_session_id()
    assert a != b and len(a) >= 40
    assert domain.session_key(a) != a and len(domain.session_key(a)) == 64


def test_csrf_tokens_must_match_exactly() -> None:
    token = domain.new_csrf_token()
    assert domain.csrf_matches(token, token)
    for sent in (None, "", token[:-1], token + "x", 42):
        assert not domain.csrf_matches(token, sent)


def test_inactivity() -> None:
    now = datetime.now(UTC)
    assert not domain.idle_expired(now - timedelta(minutes=29), now, 30)
    assert domain.idle_expired(now - timedelta(minutes=31), now, 30)
    assert not domain.needs_touch(now - timedelta(seconds=30), now)
    assert domain.needs_touch(now - timedelta(seconds=61), now)


def test_roles_from_the_providers_claims() -> None:
    assert domain.roles_from_claims({"roles": ["moderator", "guest"]}, "roles") == ["moderator"]
    assert domain.roles_from_claims({"groups": "staff admin"}, "groups") == ["admin", "staff"]
    keycloak = {"realm_access": {"roles": ["staff", "offline_access"]}}
    assert domain.roles_from_claims(keycloak, "realm_access.roles") == ["staff"]
    assert domain.roles_from_claims({}, "roles") == []
    assert domain.roles_from_claims({"roles": {"admin": True}}, "roles") == []


def test_what_each_role_opens() -> None:
    moderator = Person("m", "M", frozenset({"moderator"}))
    staff = Person("s", "S", frozenset({"staff"}))
    admin = Person("a", "A", frozenset({"admin"}))
    assert [p for p, _ in domain.navigation(moderator)] == ["/", "/moderation", "/measures", "/text-blocks"]
    assert [p for p, _ in domain.navigation(staff)] == ["/", "/mail"]
    assert not moderator.may("staff") and not staff.may("moderator")
    assert admin.may("staff") and admin.may("moderator") and admin.may("admin")


def test_a_decision_form_becomes_the_services_request() -> None:
    result = domain.decision_from_form({"decision": "publish", "public_statement": "  "}, {})
    assert result.ok and result.body == {"decision": "publish"}
    owed = domain.decision_from_form({"decision": "reject"}, {})
    assert owed.errors == {"public_statement": "statement_owed"}
    block = domain.decision_from_form(
        {"decision": "request_changes", "text_block": "b1"}, {"b1": "Bitte Ort."}
    )
    assert block.ok and block.body["public_statement"] == "Bitte Ort."
    gone = domain.decision_from_form({"decision": "request_changes", "text_block": "b2"}, {"b1": "x"})
    assert "text_block" in gone.errors
    typed_wins = domain.decision_from_form(
        {"decision": "reject", "public_statement": "Eigener Text", "text_block": "b1"}, {"b1": "x"}
    )
    assert typed_wins.body["public_statement"] == "Eigener Text"
    duplicate = domain.decision_from_form(
        {"decision": "mark_duplicate", "public_statement": "Gibt es schon."}, {}
    )
    assert duplicate.errors == {"duplicate_of": "choose_original"}
    assert domain.decision_from_form({"decision": "delete"}, {}).errors == {"decision": "choose_decision"}
    assert domain.decision_from_form({"decision": "publish", "internal_note": "x" * 2001}, {}).errors == {
        "internal_note": "too_long"
    }


def test_an_outcome_form_and_the_version() -> None:
    assert domain.outcome_from_form({"outcome": "not_adopted"}).errors == {"public_statement": "reason_owed"}
    assert domain.outcome_from_form({"outcome": "adopted"}).body == {"outcome": "adopted"}
    assert domain.version_from_form({"version": "3"}) == 3
    for bad in ("", "x", "²", "-1", "1" * 12):
        assert domain.version_from_form({"version": bad}) is None
