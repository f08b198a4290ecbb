"""The operator's decision on a payment whose re-drive was left unresolved (domain.resolution): pure, on folded
streams."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from payments_shared.eventstore.port import RecordedEvent
from payments_shared.providers.port import Outcome, ProviderResult
from payments_transactions.domain import decisions
from payments_transactions.domain import events as ev
from payments_transactions.domain.decisions import DomainError
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.resolution import Choice, Resolution, resolve
from payments_transactions.domain.state import REDRIVE_LASTS_AT_MOST, Status, Transaction

UNRESOLVED = ProviderResult(
    Outcome.RETRYABLE, message="several", retry_after=3600.0, details={"unresolved": ["pi_1", "pi_2"]}
)
ADOPT_1 = Resolution("ana", Choice.ADOPT, "pi_1")
NOT_MADE = Resolution("ana", Choice.NOT_MADE)
PI_1_SUCCEEDED = ProviderResult(Outcome.APPROVED, "pi_1", amount=1000, details={"payment_intent": "pi_1"})
RECORDED_AT = datetime(2026, 1, 1, tzinfo=UTC)  # every event of these streams
NOW = RECORDED_AT + timedelta(hours=2)  # the operator decides after the unresolved answer's hour


def recorded(events: list[DomainEvent]) -> list[RecordedEvent]:
    at = RECORDED_AT
    metadata: dict[str, Any] = {"workspace": "ws_a"}
    return [
        RecordedEvent(uuid.uuid4(), "transaction-txn_a", e.type, e.data, metadata, n, n, at)
        for n, e in enumerate(events)
    ]


def fold(events: list[DomainEvent]) -> Transaction:
    transaction = Transaction.from_events(recorded(events))
    assert transaction is not None
    return transaction


def requested() -> DomainEvent:
    return decisions.request_payment(
        "txn_a", "charge", 1000, "usd", "stripe", {"type": "token", "token": "pm_card_visa"}, None, None, {}, "cmd",
        "m1", None,
    )  # fmt: skip


def unresolved_stream(last: ProviderResult = UNRESOLVED) -> list[DomainEvent]:
    events = [requested()]
    events.append(decisions.payment_outcome(fold(events), last))
    return events


def test_adopting_a_candidate_records_the_decision_then_its_state_as_the_payments_outcome() -> None:
    stream = unresolved_stream()
    decided = resolve(fold(stream), ADOPT_1, None, PI_1_SUCCEEDED, NOW)
    assert [e.type for e in decided] == [ev.PAYMENT_RESOLVED_BY_OPERATOR, ev.PAYMENT_CAPTURED]
    assert decided[0].data["candidates"] == ["pi_1", "pi_2"]
    after = fold([*stream, *decided])
    assert (after.status, after.provider_reference, after.payment.finished) == (Status.CAPTURED, "pi_1", True)
    assert resolve(after, ADOPT_1, None, PI_1_SUCCEEDED, NOW) == []  # the same decision again: nothing


def test_not_made_fails_the_payment_visibly_and_creates_nothing() -> None:
    stream = unresolved_stream()
    decided = resolve(fold(stream), NOT_MADE, None, None, NOW)
    after = fold([*stream, *decided])
    assert (after.status, after.failure_code, after.provider_reference) == (Status.FAILED, "payment_not_made", None)
    assert resolve(after, NOT_MADE, None, None, NOW) == []


@pytest.mark.parametrize(
    ("resolution", "owner", "code"),
    [
        (Resolution("ana", Choice.ADOPT, "pi_3"), None, "not_a_candidate"),
        (ADOPT_1, "txn_b", "owned_by_another_transaction"),
    ],
)
def test_a_decision_the_candidates_do_not_allow_is_refused(
    resolution: Resolution, owner: str | None, code: str
) -> None:
    with pytest.raises(DomainError) as refused:
        resolve(fold(unresolved_stream()), resolution, owner, PI_1_SUCCEEDED, NOW)
    assert refused.value.code == code


def test_a_payment_not_awaiting_a_decision_is_refused() -> None:
    plain_failure = unresolved_stream(ProviderResult(Outcome.RETRYABLE, message="timeout"))
    answered = unresolved_stream(PI_1_SUCCEEDED)
    for stream in (plain_failure, answered, [requested()]):
        with pytest.raises(DomainError) as refused:
            resolve(fold(stream), NOT_MADE, None, None, NOW)
        assert refused.value.code == "not_unresolved"


def test_another_decision_after_one_is_recorded_is_refused() -> None:
    stream = unresolved_stream()
    after = [*stream, *resolve(fold(stream), NOT_MADE, None, None, NOW)]
    with pytest.raises(DomainError) as refused:
        resolve(fold(after), ADOPT_1, None, PI_1_SUCCEEDED, NOW)
    assert refused.value.code == "already_resolved"


def test_an_unreadable_candidate_records_nothing() -> None:
    with pytest.raises(DomainError) as refused:
        resolve(fold(unresolved_stream()), ADOPT_1, None, ProviderResult(Outcome.RETRYABLE, "pi_1"), NOW)
    assert refused.value.code == "provider_unavailable"


def test_no_decision_is_recorded_while_a_redrive_of_the_payment_is_under_way() -> None:
    """Such a re-drive may adopt or create the payment: a decision recorded meanwhile would drop what it moved."""
    stream = unresolved_stream()
    started = [*stream, decisions.redrive_started(fold(stream).payment)]  # recorded at RECORDED_AT
    for resolution, adopted in ((NOT_MADE, None), (ADOPT_1, PI_1_SUCCEEDED)):
        with pytest.raises(DomainError) as refused:
            resolve(fold(started), resolution, None, adopted, RECORDED_AT + timedelta(minutes=1))
        assert refused.value.code == "redrive_under_way"

    # Its worker died: past REDRIVE_LASTS_AT_MOST the operator decides.
    assert resolve(fold(started), NOT_MADE, None, None, RECORDED_AT + REDRIVE_LASTS_AT_MOST)
    # It answered unresolved again: the operator decides among what it was left with.
    answered = [*started, decisions.payment_outcome(fold(started), UNRESOLVED)]
    assert resolve(fold(answered), NOT_MADE, None, None, RECORDED_AT + timedelta(minutes=1))
    # It answered with the payment's outcome: nothing left to decide.
    paid = [*started, decisions.payment_outcome(fold(started), PI_1_SUCCEEDED)]
    with pytest.raises(DomainError) as refused:
        resolve(fold(paid), NOT_MADE, None, None, RECORDED_AT + timedelta(minutes=1))
    assert refused.value.code == "not_unresolved"
