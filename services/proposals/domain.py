"""A proposal's life as plain Python: states, who may move it where, what each move emits. No I/O.

    submitted ──publish──────────▶ published ──outcome──▶ published + outcome (adopted | partially | not)
        │  ├───reject──────────▶ rejected
        │  ├───mark_duplicate──▶ duplicate (merged into a published proposal)
        │  └───request_changes─▶ changes_requested ──author edits──▶ submitted
        └──author withdraws (also from changes_requested)──▶ withdrawn

Nothing is public before a moderator publishes it. Whoever is told "no" (rejected, changes requested,
duplicate, not adopted) is owed a public reason: the statement is shown with the proposal and mailed to
its author. A move the machine forbids is a :class:`TransitionNotAllowed` (409) with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["submitted", "published", "rejected", "changes_requested", "duplicate", "withdrawn"]
Decision = Literal["publish", "reject", "request_changes", "mark_duplicate"]
Outcome = Literal["adopted", "partially_adopted", "not_adopted"]

STATUSES: tuple[Status, ...] = (
    "submitted",
    "published",
    "rejected",
    "changes_requested",
    "duplicate",
    "withdrawn",
)
OUTCOMES: tuple[Outcome, ...] = ("adopted", "partially_adopted", "not_adopted")

# What a moderator's decision does to a submitted proposal, and the event it emits.
DECISIONS: dict[Decision, tuple[Status, str]] = {
    "publish": ("published", "proposal.published"),
    "reject": ("rejected", "proposal.rejected"),
    "request_changes": ("changes_requested", "proposal.changes_requested"),
    "mark_duplicate": ("duplicate", "proposal.marked_duplicate"),
}
# Decisions and outcomes after which the author is owed a public reason.
STATEMENT_REQUIRED: frozenset[str] = frozenset({"reject", "request_changes", "mark_duplicate", "not_adopted"})

WITHDRAWABLE: frozenset[Status] = frozenset({"submitted", "changes_requested"})

TITLE_LENGTH = (5, 150)
BODY_LENGTH = (20, 5000)
STATEMENT_MAX_LENGTH = 5000


class DomainError(Exception):
    """Base of the service's refusals; ``field`` names the input at fault, where there is one.
    ``api.py`` maps each kind to its HTTP status."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class TransitionNotAllowed(DomainError):
    """The proposal's state does not allow this move."""


class StatementRequired(DomainError):
    """The author is owed a public reason and none was given."""


class InvalidDuplicate(DomainError):
    """A duplicate must point at another, published proposal."""


class InvalidReference(DomainError):
    """A working group or district that does not exist, or a retired district, for a new proposal."""


class NotFound(DomainError):
    """No such proposal (or not visible to the asker), district or link."""


class StaleVersion(DomainError):
    """The moderator decided on a version of the proposal that has changed since."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the proposal has changed since (now version {current}); reload and decide again")
        self.current = current


class PreconditionRequired(DomainError):
    """A decision must name the version it was made on (If-Match)."""


class AlreadyExists(DomainError):
    """A district with this id exists already."""


@dataclass(frozen=True)
class ProposalState:
    """What the rules need to know about a proposal."""

    status: Status
    version: int = 1
    outcome: Outcome | None = None
    revision: int = 1


@dataclass(frozen=True)
class Transition:
    """The result of a move: the new state, the event to emit and the history entry's action."""

    before: ProposalState
    after: ProposalState
    event_type: str
    action: str


def _statement(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def submit() -> ProposalState:
    """A new proposal waits for moderation."""
    return ProposalState(status="submitted")


def decide(
    state: ProposalState,
    decision: Decision,
    *,
    public_statement: str | None = None,
    duplicate_of_status: Status | None = None,
    duplicate_of_is_self: bool = False,
) -> Transition:
    """A moderator's decision on a submitted proposal."""
    if decision not in DECISIONS:
        raise DomainError(f"unknown decision {decision!r}", field="decision")
    if state.status != "submitted":
        raise TransitionNotAllowed(
            f"only a submitted proposal can be decided on; this one is {state.status}", field="decision"
        )
    if decision in STATEMENT_REQUIRED and _statement(public_statement) is None:
        raise StatementRequired(
            f"'{decision}' owes the author a public reason: public_statement is required",
            field="public_statement",
        )
    if decision == "mark_duplicate":
        if duplicate_of_is_self:
            raise InvalidDuplicate("a proposal cannot be a duplicate of itself", field="duplicate_of")
        if duplicate_of_status is None:
            raise InvalidDuplicate("duplicate_of must name an existing proposal", field="duplicate_of")
        if duplicate_of_status != "published":
            raise InvalidDuplicate(
                f"a duplicate is merged into a published proposal; that one is {duplicate_of_status}",
                field="duplicate_of",
            )
    status, event_type = DECISIONS[decision]
    after = ProposalState(status=status, version=state.version + 1, revision=state.revision)
    return Transition(before=state, after=after, event_type=event_type, action=decision)


def decide_outcome(state: ProposalState, outcome: Outcome, *, public_statement: str | None) -> Transition:
    """The working group's decision on a published proposal; it is taken once."""
    if outcome not in OUTCOMES:
        raise DomainError(f"unknown outcome {outcome!r}", field="outcome")
    if state.status != "published":
        raise TransitionNotAllowed(
            f"an outcome is decided for published proposals only; this one is {state.status}",
            field="outcome",
        )
    if state.outcome is not None:
        raise TransitionNotAllowed(f"the outcome was already decided: {state.outcome}", field="outcome")
    if outcome in STATEMENT_REQUIRED and _statement(public_statement) is None:
        raise StatementRequired(
            f"'{outcome}' owes the author a public reason: public_statement is required",
            field="public_statement",
        )
    after = ProposalState(
        status="published", version=state.version + 1, outcome=outcome, revision=state.revision
    )
    return Transition(
        before=state, after=after, event_type="proposal.outcome_decided", action="outcome_decided"
    )


def revise(state: ProposalState) -> Transition:
    """The author edits the proposal after a moderator asked for changes; it goes back to the queue."""
    if state.status != "changes_requested":
        raise TransitionNotAllowed(
            f"a proposal can be edited only when changes were requested; this one is {state.status}"
        )
    after = ProposalState(status="submitted", version=state.version + 1, revision=state.revision + 1)
    return Transition(before=state, after=after, event_type="proposal.submitted", action="revised")


def withdraw(state: ProposalState) -> Transition:
    """The author takes the proposal back before a decision."""
    if state.status not in WITHDRAWABLE:
        raise TransitionNotAllowed(
            f"a proposal can be withdrawn only before a decision; this one is {state.status}"
        )
    after = ProposalState(status="withdrawn", version=state.version + 1, revision=state.revision)
    return Transition(before=state, after=after, event_type="proposal.withdrawn", action="withdrawn")


def is_public(status: str) -> bool:
    return status == "published"


# --- measures ------------------------------------------------------------------------------------------
#
#   proposed ──progress──▶ planned ──▶ in_progress ──▶ done
#        └──────────────────┴──────────────┴──────────▶ dropped
#   (entries may repeat a status, e.g. monthly "in progress"; nothing follows done or dropped)
#   council decision: adopted | amended | rejected, once, at any time before the measure ended.

MeasureStatus = Literal["proposed", "planned", "in_progress", "done", "dropped"]
ProgressStatus = Literal["planned", "in_progress", "done", "dropped"]
CouncilDecision = Literal["adopted", "amended", "rejected"]
MEASURE_STATUSES: tuple[MeasureStatus, ...] = ("proposed", "planned", "in_progress", "done", "dropped")
MEASURE_ENDED: frozenset[str] = frozenset({"done", "dropped"})
# Only proposals the working group adopted, fully or partly, can grow into a measure.
LINKABLE_OUTCOMES: frozenset[str] = frozenset({"adopted", "partially_adopted"})
MEASURE_TITLE_LENGTH = (5, 200)
MEASURE_DESCRIPTION_LENGTH = (20, 10000)


def unlinkable_proposals(requested: list[str], outcomes: dict[str, str | None]) -> list[str]:
    """The requested proposal ids that cannot be linked (unknown, or not adopted), in the asked order."""
    return [p for p in requested if outcomes.get(p) not in LINKABLE_OUTCOMES]


def council_decision_allowed(already_decided: bool) -> None:
    if already_decided:
        raise TransitionNotAllowed("the council's decision on this measure is recorded already")


def progress_allowed(status: str) -> None:
    if status in MEASURE_ENDED:
        raise TransitionNotAllowed(f"the measure is {status}: no progress entry can follow")
