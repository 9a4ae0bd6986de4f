"""The one notion of an address: exact identity for erasure, mailbox for counting budgets."""

import pytest

from shared.addresses import mailbox, normalised


def test_normalised_is_exact_identity_not_a_pattern() -> None:
    assert normalised("  A.S@Example.org ") == "a.s@example.org"
    assert normalised("a_b@example.org") != normalised("axb@example.org")


@pytest.mark.parametrize(
    ("given", "counted_as"),
    [
        ("Victim+1@Example.org", "victim@example.org"),
        ("victim+news+x@example.org", "victim@example.org"),
        ("j.doe+x@gmail.com", "jdoe@gmail.com"),
        ("J.Doe@googlemail.com", "jdoe@gmail.com"),
        ("j.doe@example.org", "j.doe@example.org"),
        ("+only@example.org", "+only@example.org"),
    ],
)
def test_mailbox_counts_the_inbox(given: str, counted_as: str) -> None:
    assert mailbox(given) == counted_as
