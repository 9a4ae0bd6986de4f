"""The rules after the meetings (``domain``, section "After the meetings"), no database."""

from __future__ import annotations

import pytest

from services.registration import domain


@pytest.mark.parametrize("typed", ["K7M2-9QXD", "k7m29qxd", " k7m2 9qxd ", "K7M2-9QXD".lower()])
def test_a_code_is_read_however_it_is_typed(typed):
    assert domain.normalise_check_in_code(typed) == "K7M29QXD"


def test_lookalike_letters_are_read_as_digits():
    assert domain.normalise_check_in_code("OIL0-1234") == "0110" + "1234"


@pytest.mark.parametrize("typed", ["", "K7M2", "K7M2-9QXD-1", "K7M2-9QXU", "K7M2_9QXD", "ÄÖÜ12345"])
def test_anything_else_is_refused_naming_the_field(typed):
    with pytest.raises(domain.InvalidRequest) as refused:
        domain.normalise_check_in_code(typed)
    assert refused.value.field == "check_in_code"


def test_the_code_is_shown_in_two_groups():
    assert domain.display_check_in_code("K7M29QXD") == "K7M2-9QXD"
    assert set(domain.CHECK_IN_ALPHABET).isdisjoint("ILOU") and len(domain.CHECK_IN_ALPHABET) == 32


@pytest.mark.parametrize(
    ("status", "group", "allowed"),
    [
        ("confirmed", "a", True),
        ("cancelled", "a", False),
        ("waitlisted", "a", False),
        ("confirmed", "b", False),
    ],
)
def test_only_a_confirmed_registration_of_the_meetings_group_is_checked_in(status, group, allowed):
    if allowed:
        domain.check_in_allowed(status, group, "a", "registration_id")
    else:
        with pytest.raises(domain.InvalidRequest) as refused:
            domain.check_in_allowed(status, group, "a", "registration_id")
        assert refused.value.field == "registration_id"


def test_counts():
    counts = domain.MeetingCounts(
        registered=10, present_registered=7, walk_ins=3, by_language={"tr": 2, "de": 8}
    )
    assert counts.as_dict() == {
        "registered": 10,
        "present": 10,
        "no_show": 3,
        "walk_ins": 3,
        "by_language": {"de": 8, "tr": 2},
    }
    # Someone checked in and erased since (no longer registered): never a negative no-show.
    assert domain.MeetingCounts(0, 1, 0, {}).no_show == 0


def test_interpreters_needed_against_present():
    assert domain.interpreters({"ar": 2, "tr": 1}, {"ar": 1}) == [
        {"language": "ar", "needed": 2, "present": 1},
        {"language": "tr", "needed": 1, "present": 0},
    ]


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "ftp://example.org/x", "//x.org"])
def test_the_document_link_is_http_or_https(url):
    with pytest.raises(domain.InvalidRequest) as refused:
        domain.check_document_url(url)
    assert refused.value.field == "document_url"
    domain.check_document_url("https://www.kaiserslautern.de/protokoll.pdf")
    domain.check_document_url(None)


def test_minutes_versions_count_up():
    assert domain.next_minutes_version(None) == 1 and domain.next_minutes_version(3) == 4
