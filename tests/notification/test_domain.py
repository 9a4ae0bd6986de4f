"""The notification rules without I/O: which mails an event owes, a delivery's states, the backoff."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from services.notification import domain
from services.notification.samples import SAMPLE_EVENTS
from shared import events as ev

NOW = datetime(2019, 3, 6, 12, tzinfo=UTC)
POLICY = domain.RetryPolicy(base_seconds=30, max_seconds=3600, max_age_hours=48)


def delivery(attempts: int = 1, age: timedelta = timedelta(minutes=5)) -> SimpleNamespace:
    return SimpleNamespace(id=uuid.uuid4(), attempts=attempts, created_at=NOW - age)


def test_a_sent_mail_is_sent_and_forgets_its_error():
    mark = domain.mark_for(delivery(), "sent", "", "Betreff", NOW, POLICY)
    assert (mark.status, mark.sent_at, mark.last_error, mark.next_attempt_at) == ("sent", NOW, None, None)


def test_a_temporary_refusal_is_retried_later_and_a_broken_connection_after_data_is_unknown():
    retry = domain.mark_for(delivery(attempts=3), "retry", "451 busy", None, NOW, POLICY)
    assert retry.status == "retrying" and retry.last_error == "451 busy"
    assert NOW + timedelta(seconds=60) <= retry.next_attempt_at <= NOW + timedelta(seconds=120)
    unknown = domain.mark_for(delivery(), "unknown", "lost after DATA", None, NOW, POLICY)
    assert unknown.status == "unknown" and unknown.next_attempt_at is not None


def test_a_permanent_refusal_fails_and_old_mails_are_given_up():
    assert domain.mark_for(delivery(), "failed", "550 no such user", None, NOW, POLICY).status == "failed"
    old = domain.mark_for(delivery(age=timedelta(hours=49)), "retry", "451 busy", None, NOW, POLICY)
    assert old.status == "failed" and old.last_error.startswith("gave up after 48")
    assert old.next_attempt_at is None


@pytest.mark.parametrize("attempts", [1, 2, 5, 20])
def test_backoff_doubles_with_equal_jitter_up_to_the_maximum(attempts):
    ceiling = min(3600, 30 * 2 ** (attempts - 1))
    for _ in range(50):
        assert ceiling / 2 <= POLICY.backoff(attempts) <= ceiling


def test_every_sample_event_owes_one_mail_to_its_person_and_the_key_ignores_case():
    for event in SAMPLE_EVENTS:
        [intent] = domain.intents_for(event)
        assert intent.template == domain.template_name(event.event_type)
        assert intent.recipient.email == "ayse.yilmaz@example.org"
    assert domain.dedup_key("e1", "t", " Ayse@Example.org ") == domain.dedup_key(
        "e1", "t", "ayse@example.org"
    )


def test_a_measure_event_owes_one_mail_per_recipient_each_with_its_own_unsubscribe_link():
    sample = next(e for e in SAMPLE_EVENTS if isinstance(e, ev.MeasureProgressed))
    author = ev.MeasureRecipient(
        recipient=ev.Recipient(email="autor@example.org", name="Oleh", language="uk"),
        links=ev.SelfServiceLinks(unsubscribe_url="http://localhost:8003/v1/measures/x/unsubscribe?token=A"),
    )
    event = sample.model_copy(update={"recipients": [*sample.recipients, author]})
    intents = domain.intents_for(event)
    assert [(i.recipient.email, i.recipient.language) for i in intents] == [
        ("ayse.yilmaz@example.org", "de"),
        ("autor@example.org", "uk"),
    ]
    links = [domain.unsubscribe_url_of(i.template, i.context) for i in intents]
    assert links == [sample.recipients[0].links.unsubscribe_url, author.links.unsubscribe_url]
    # The author never proved the address: the mail drops the typed name, keeps the staff's measure title.
    assert intents[1].recipient.name == "" and intents[1].context["measure_title"] == sample.measure_title
    assert domain.intents_for(sample.model_copy(update={"recipients": []})) == []
    opt_in = next(e for e in SAMPLE_EVENTS if isinstance(e, ev.MeasureFollowRequested))
    [intent] = domain.intents_for(opt_in)
    assert domain.unsubscribe_url_of(intent.template, intent.context) is None  # transactional


def test_an_anonymous_proposal_owes_no_mail():
    proposal = next(e for e in SAMPLE_EVENTS if isinstance(e, ev.ProposalPublished))
    assert domain.intents_for(proposal.model_copy(update={"author": None})) == []
