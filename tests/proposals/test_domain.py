"""The proposal's state machine, without a database."""

from __future__ import annotations

import pytest

from services.proposals import domain
from services.proposals.domain import ProposalState

SUBMITTED = domain.submit()


@pytest.mark.parametrize(
    ("decision", "status", "event"),
    [
        ("publish", "published", "proposal.published"),
        ("reject", "rejected", "proposal.rejected"),
        ("request_changes", "changes_requested", "proposal.changes_requested"),
        ("mark_duplicate", "duplicate", "proposal.marked_duplicate"),
    ],
)
def test_each_decision_moves_a_submitted_proposal_and_names_its_event(decision, status, event):
    t = domain.decide(SUBMITTED, decision, public_statement="Begründung", duplicate_of_status="published")
    assert (t.after.status, t.event_type, t.action) == (status, event, decision)
    assert t.after.version == SUBMITTED.version + 1


def test_publishing_needs_no_statement_but_every_no_does():
    assert domain.decide(SUBMITTED, "publish").after.status == "published"
    for decision in ("reject", "request_changes", "mark_duplicate"):
        for statement in (None, "", "   \n "):
            with pytest.raises(domain.StatementRequired) as refused:
                domain.decide(
                    SUBMITTED, decision, public_statement=statement, duplicate_of_status="published"
                )
            assert refused.value.field == "public_statement"


@pytest.mark.parametrize("status", ["published", "rejected", "changes_requested", "duplicate", "withdrawn"])
def test_only_a_submitted_proposal_can_be_decided(status):
    with pytest.raises(domain.TransitionNotAllowed) as refused:
        domain.decide(ProposalState(status=status), "publish")
    assert status in refused.value.reason


def test_a_duplicate_is_merged_into_another_published_proposal_only():
    with pytest.raises(domain.InvalidDuplicate):
        domain.decide(SUBMITTED, "mark_duplicate", public_statement="gleich", duplicate_of_status=None)
    with pytest.raises(domain.InvalidDuplicate):
        domain.decide(SUBMITTED, "mark_duplicate", public_statement="gleich", duplicate_of_status="submitted")
    with pytest.raises(domain.InvalidDuplicate):
        domain.decide(
            SUBMITTED,
            "mark_duplicate",
            public_statement="gleich",
            duplicate_of_status="published",
            duplicate_of_is_self=True,
        )


def test_an_outcome_is_decided_once_for_a_published_proposal():
    published = domain.decide(SUBMITTED, "publish").after
    t = domain.decide_outcome(published, "adopted", public_statement=None)
    assert t.after.outcome == "adopted" and t.after.status == "published"
    assert t.event_type == "proposal.outcome_decided"
    with pytest.raises(domain.TransitionNotAllowed, match="already decided"):
        domain.decide_outcome(t.after, "not_adopted", public_statement="Doch nicht")
    with pytest.raises(domain.TransitionNotAllowed):
        domain.decide_outcome(SUBMITTED, "adopted", public_statement=None)


def test_not_adopted_owes_a_reason_adopted_does_not():
    published = domain.decide(SUBMITTED, "publish").after
    with pytest.raises(domain.StatementRequired):
        domain.decide_outcome(published, "not_adopted", public_statement=" ")
    assert domain.decide_outcome(published, "partially_adopted", public_statement=None).after.outcome


def test_the_author_revises_only_when_asked_and_the_proposal_returns_to_the_queue():
    asked = domain.decide(SUBMITTED, "request_changes", public_statement="Bitte genauer").after
    t = domain.revise(asked)
    assert (t.after.status, t.after.revision, t.event_type) == ("submitted", 2, "proposal.submitted")
    for status in ("submitted", "published", "rejected", "duplicate", "withdrawn"):
        with pytest.raises(domain.TransitionNotAllowed):
            domain.revise(ProposalState(status=status))


def test_the_author_withdraws_only_before_a_decision():
    assert domain.withdraw(SUBMITTED).after.status == "withdrawn"
    assert domain.withdraw(ProposalState(status="changes_requested")).event_type == "proposal.withdrawn"
    for status in ("published", "rejected", "duplicate", "withdrawn"):
        with pytest.raises(domain.TransitionNotAllowed):
            domain.withdraw(ProposalState(status=status))


def test_only_published_proposals_are_public():
    assert [s for s in domain.STATUSES if domain.is_public(s)] == ["published"]
