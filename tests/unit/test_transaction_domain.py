"""The transaction domain without I/O: the fold, every allowed and every forbidden move of API.md's state
diagram, capture ≤ authorized, refunds (pending ones included) ≤ captured, each refund its own id."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from payments_shared.eventstore.port import RecordedEvent
from payments_shared.providers.port import Outcome, ProviderResult
from payments_transactions.domain import decisions
from payments_transactions.domain import events as ev
from payments_transactions.domain.decisions import DomainError, can_move
from payments_transactions.domain.events import DomainEvent
from payments_transactions.domain.state import OperationKind, Status, Transaction
from payments_transactions.views import outcome_reply, transaction_json

S = Status
API_MOVES = {
    (S.PENDING, S.AUTHORIZED),
    (S.PENDING, S.CAPTURED),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.REQUIRES_ACTION),
    (S.REQUIRES_ACTION, S.AUTHORIZED),
    (S.REQUIRES_ACTION, S.CAPTURED),
    (S.REQUIRES_ACTION, S.FAILED),
    (S.AUTHORIZED, S.CAPTURED),
    (S.AUTHORIZED, S.VOIDED),
    (S.CAPTURED, S.PARTIALLY_REFUNDED),
    (S.CAPTURED, S.REFUNDED),
    (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED),
    (S.PARTIALLY_REFUNDED, S.REFUNDED),
}
APPROVED = ProviderResult(Outcome.APPROVED, reference="sbx_1", amount=None)
START = datetime(2026, 1, 1, tzinfo=UTC)


def to_recorded(events: list[DomainEvent], workspace: str = "ws_a") -> list[RecordedEvent]:
    return [
        RecordedEvent(
            id=uuid.UUID(int=version + 1),
            stream="transaction-txn_1",
            type=event.type,
            data=dict(event.data),
            metadata={"workspace": workspace, "occurred_at": f"2026-01-01T00:00:{version:02d}.000000Z"},
            version=version,
            position=version + 1,
            recorded_at=START + timedelta(seconds=version),
        )
        for version, event in enumerate(events)
    ]


class History:
    """A transaction's events, grown by the decision functions as the service would."""

    def __init__(self, kind: str = "authorize", amount: int = 1000) -> None:
        self.events = [
            decisions.request_payment(
                transaction_id="txn_1",
                kind=kind,
                amount=amount,
                currency="usd",
                provider="sandbox",
                payment_method={"type": "token", "token": "pm_card_visa"},
                customer_id=None,
                description=None,
                metadata={},
                command_id="cmd_pay",
                message_id="msg_1",
                fingerprint="fp",
            )
        ]
        self._commands = itertools.count(1)

    @property
    def state(self) -> Transaction:
        transaction = Transaction.from_events(to_recorded(self.events))
        assert transaction is not None
        return transaction

    def add(self, event: DomainEvent) -> History:
        self.events.append(event)
        return self

    def approve(self) -> History:
        return self.add(decisions.payment_outcome(self.state, APPROVED))

    def answer(self, result: ProviderResult) -> History:
        return self.add(decisions.payment_outcome(self.state, result))

    def capture(self, amount: int | None = None, *, finish: bool = True) -> str:
        command_id = f"cmd_capture_{next(self._commands)}"
        self.add(decisions.request_capture(self.state, command_id, amount, "msg", None))
        if finish:
            self.add(decisions.capture_outcome(self.state, command_id, APPROVED))
        return command_id

    def void(self, *, finish: bool = True) -> str:
        command_id = f"cmd_void_{next(self._commands)}"
        self.add(decisions.request_void(self.state, command_id, "msg", None))
        if finish:
            self.add(decisions.void_outcome(self.state, command_id, APPROVED))
        return command_id

    def refund(self, amount: int | None = None, *, finish: bool = True) -> str:
        number = next(self._commands)
        command_id = f"cmd_refund_{number}"
        self.add(decisions.request_refund(self.state, command_id, f"re_{number}", amount, None, "msg", None))
        if finish:
            self.add(decisions.refund_outcome(self.state, command_id, APPROVED))
        return command_id


def in_status(status: Status) -> History:
    """A history whose transaction is in `status`."""
    if status is S.PENDING:
        return History()
    if status is S.REQUIRES_ACTION:
        return History().answer(ProviderResult(Outcome.REQUIRES_ACTION, "sbx_1", next_action={"type": "x"}))
    if status is S.FAILED:
        return History().answer(ProviderResult(Outcome.DECLINED, "sbx_1", decline_code="generic_decline"))
    if status is S.AUTHORIZED:
        return History().approve()
    if status is S.CAPTURED:
        return History("charge").approve()
    history = History("charge").approve()
    if status is S.VOIDED:
        history = History().approve()
        history.void()
    elif status is S.PARTIALLY_REFUNDED:
        history.refund(400)
    elif status is S.REFUNDED:
        history.refund()
    return history


# ---- the state diagram -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Status, Status)))
def test_only_the_moves_of_api_md_are_allowed(current: Status, target: Status) -> None:
    assert can_move(current, target) is ((current, target) in API_MOVES)


@pytest.mark.parametrize("status", list(Status))
def test_every_fixture_state_is_what_it_claims(status: Status) -> None:
    assert in_status(status).state.status is status


@pytest.mark.parametrize("status", [s for s in Status if s is not S.AUTHORIZED])
def test_capture_is_only_allowed_from_authorized(status: Status) -> None:
    with pytest.raises(DomainError) as raised:
        decisions.request_capture(in_status(status).state, "cmd_x", None, "msg", None)
    assert status.value in raised.value.message


@pytest.mark.parametrize("status", [s for s in Status if s is not S.AUTHORIZED])
def test_void_is_only_allowed_from_authorized(status: Status) -> None:
    with pytest.raises(DomainError):
        decisions.request_void(in_status(status).state, "cmd_x", "msg", None)


@pytest.mark.parametrize("status", [s for s in Status if s not in (S.CAPTURED, S.PARTIALLY_REFUNDED)])
def test_refund_is_only_allowed_from_captured_or_partially_refunded(status: Status) -> None:
    with pytest.raises(DomainError):
        decisions.request_refund(in_status(status).state, "cmd_x", "re_x", None, None, "msg", None)


@pytest.mark.parametrize("status", [s for s in Status if s is not S.PENDING])
def test_a_payment_outcome_is_recorded_once(status: Status) -> None:
    with pytest.raises(DomainError):
        decisions.payment_outcome(in_status(status).state, APPROVED)


# ---- payments ------------------------------------------------------------------------------------------------


def test_an_approved_charge_is_captured_in_full() -> None:
    state = History("charge", 1099).approve().state
    assert (state.status, state.amount_authorized, state.amount_captured) == (S.CAPTURED, 1099, 1099)
    assert state.provider_reference == "sbx_1"
    assert state.payment.finished


def test_an_approved_authorization_is_authorized_not_captured() -> None:
    state = History("authorize", 1099).approve().state
    assert (state.status, state.amount_authorized, state.amount_captured) == (S.AUTHORIZED, 1099, 0)


def test_a_decline_fails_the_transaction_with_the_decline_code() -> None:
    result = ProviderResult(Outcome.DECLINED, "sbx_1", decline_code="insufficient_funds", message="No funds.")
    history = History("charge").answer(result)
    state = history.state
    assert state.status is S.FAILED
    assert (state.failure_code, state.failure_message) == ("insufficient_funds", "No funds.")
    reply = outcome_reply(to_recorded(history.events), state.payment)
    assert reply["status"] == 402
    assert reply["body"]["error"] == {
        "type": "card_error",
        "code": "card_declined",
        "message": "No funds.",
        "transaction_id": "txn_1",
        "decline_code": "insufficient_funds",
    }


def test_a_refused_parameter_is_a_400_naming_it() -> None:
    result = ProviderResult(Outcome.PERMANENT, message="Unknown.", details={"invalid_param": "payment_method"})
    history = History().answer(result)
    reply = outcome_reply(to_recorded(history.events), history.state.payment)
    assert reply["status"] == 400
    assert reply["body"]["error"]["param"] == "payment_method"
    assert reply["body"]["error"]["code"] == "parameter_invalid"
    assert history.state.failure_code == "invalid_payment_method"


def test_a_parameter_stripe_refused_keeps_stripes_code() -> None:
    """A client tells "below Stripe's minimum" from another bad amount as with Stripe itself."""
    details = {"invalid_param": "amount", "stripe_code": "amount_too_small"}
    history = History().answer(
        ProviderResult(Outcome.PERMANENT, message="Amount must be at least $0.50 usd", details=details)
    )
    reply = outcome_reply(to_recorded(history.events), history.state.payment)
    assert (reply["status"], reply["body"]["error"]["code"], reply["body"]["error"]["param"]) == (
        400,
        "amount_too_small",
        "amount",
    )


def test_a_permanent_provider_error_is_a_502() -> None:
    history = History().answer(ProviderResult(Outcome.PERMANENT, message="Processing error."))
    reply = outcome_reply(to_recorded(history.events), history.state.payment)
    assert (reply["status"], reply["body"]["error"]["type"]) == (502, "provider_error")
    assert history.state.status is S.FAILED


def test_a_payment_no_provider_here_serves_is_recorded_failed_and_answers_400_on_provider() -> None:
    requested = History("charge").events[0]
    events = decisions.refuse_payment(requested, decisions.provider_not_configured("authnet"))
    assert [event.type for event in events] == [ev.TRANSACTION_REQUESTED, ev.PAYMENT_FAILED]
    assert events[0] == requested
    state = Transaction.from_events(to_recorded(events))
    assert state is not None
    assert can_move(S.PENDING, state.status)
    assert state.status is S.FAILED and state.payment.finished and not state.open_operations()
    assert (state.failure_code, state.failure_message) == (
        "invalid_provider",
        "The provider 'authnet' is unknown or not configured.",
    )
    assert (state.amount_authorized, state.amount_captured, state.provider_reference) == (0, 0, None)
    reply = outcome_reply(to_recorded(events), state.payment)
    assert reply["status"] == 400
    assert reply["body"]["error"] == {
        "type": "invalid_request_error",
        "code": "provider_not_configured",
        "message": "The provider 'authnet' is unknown or not configured.",
        "param": "provider",
        "transaction_id": "txn_1",
    }


def test_a_refused_payment_keeps_the_refusals_own_code_as_its_failure_code() -> None:
    requested = History("authorize").events[0]
    error = {"type": "idempotency_error", "code": "idempotency_key_reused", "message": "Used for a capture."}
    state = Transaction.from_events(to_recorded(decisions.refuse_payment(requested, error)))
    assert state is not None
    assert (state.status, state.failure_code, state.failure_message) == (
        S.FAILED,
        "idempotency_key_reused",
        "Used for a capture.",
    )


def test_only_a_payments_request_can_be_refused() -> None:
    history = History().approve()
    with pytest.raises(ValueError, match="TransactionRequested"):
        decisions.refuse_payment(history.events[1], decisions.provider_not_configured("stripe"))


def test_a_refusal_in_the_payments_present_state_is_a_409_and_the_authorization_stays() -> None:
    history = History().approve()
    command_id = history.capture(finish=False)
    refused = ProviderResult(Outcome.PERMANENT, message="It is canceled.", details={"conflict": "charge_expired"})
    history.add(decisions.capture_outcome(history.state, command_id, refused))
    reply = outcome_reply(to_recorded(history.events), history.state.operations[command_id])
    assert reply["status"] == 409
    assert reply["body"]["error"] == {
        "type": "conflict",
        "code": "charge_expired",
        "message": "It is canceled.",
        "transaction_id": "txn_1",
    }
    assert history.state.status is S.AUTHORIZED


def test_requires_action_keeps_the_next_action() -> None:
    state = in_status(S.REQUIRES_ACTION).state
    assert state.next_action == {"type": "x"}
    assert state.payment.finished


def test_a_retryable_failure_is_recorded_but_is_no_outcome() -> None:
    history = History().answer(ProviderResult(Outcome.RETRYABLE, message="Timeout.", retry_after=2))
    state = history.state
    assert history.events[-1].type == ev.PROVIDER_CALL_FAILED
    assert state.status is S.PENDING
    assert not state.payment.finished
    assert state.payment.attempt_open is False  # nobody is working on it: the next delivery takes over
    assert [op.kind for op in state.open_operations()] == [OperationKind.PAYMENT]
    assert decisions.payment_outcome(state, APPROVED).type == ev.PAYMENT_AUTHORIZED


# ---- capture and void -------------------------------------------------------------------------------------


def test_capture_defaults_to_everything_authorized() -> None:
    history = History(amount=1000).approve()
    history.capture()
    state = history.state
    assert (state.status, state.amount_captured) == (S.CAPTURED, 1000)


def test_a_partial_capture_releases_the_rest() -> None:
    history = History(amount=1000).approve()
    history.capture(600)
    state = history.state
    assert (state.status, state.amount_authorized, state.amount_captured) == (S.CAPTURED, 1000, 600)
    assert history.events[-1].data["released"] == 400
    assert state.refundable == 600


def test_capture_above_the_authorized_amount_is_refused() -> None:
    with pytest.raises(DomainError) as raised:
        decisions.request_capture(History(amount=1000).approve().state, "cmd_x", 1001, "msg", None)
    assert raised.value.code == "amount_too_large"


def test_capture_and_void_exclude_each_other_while_pending() -> None:
    history = History().approve()
    history.capture(finish=False)
    with pytest.raises(DomainError):
        decisions.request_void(history.state, "cmd_v", "msg", None)
    with pytest.raises(DomainError):
        decisions.request_capture(history.state, "cmd_c", None, "msg", None)
    other = History().approve()
    other.void(finish=False)
    with pytest.raises(DomainError):
        decisions.request_capture(other.state, "cmd_c", None, "msg", None)


def test_a_failed_capture_leaves_the_transaction_authorized() -> None:
    history = History().approve()
    command_id = history.capture(finish=False)
    history.add(decisions.capture_outcome(history.state, command_id, ProviderResult(Outcome.PERMANENT)))
    state = history.state
    assert state.status is S.AUTHORIZED
    assert state.operations[command_id].error is not None
    assert decisions.request_capture(state, "cmd_again", None, "msg", None).type == ev.CAPTURE_REQUESTED


def test_void_releases_the_authorization() -> None:
    history = History(amount=700).approve()
    history.void()
    assert history.state.status is S.VOIDED
    assert history.events[-1].data["released"] == 700


# ---- refunds ------------------------------------------------------------------------------------------------


def test_partial_refunds_then_the_rest() -> None:
    history = History("charge", 1000).approve()
    history.refund(300)
    assert (history.state.status, history.state.amount_refunded) == (S.PARTIALLY_REFUNDED, 300)
    history.refund(200)
    assert (history.state.status, history.state.amount_refunded) == (S.PARTIALLY_REFUNDED, 500)
    history.refund()  # default: all that remains
    state = history.state
    assert (state.status, state.amount_refunded, state.refundable) == (S.REFUNDED, 1000, 0)
    assert [refund.amount for refund in state.refunds] == [300, 200, 500]
    assert len({refund.id for refund in state.refunds}) == 3


def test_pending_refunds_count_against_the_refundable_amount() -> None:
    history = History("charge", 1000).approve()
    history.refund(700, finish=False)
    state = history.state
    assert state.status is S.CAPTURED  # still pending: nothing refunded yet
    assert state.refundable == 300
    with pytest.raises(DomainError) as raised:
        decisions.request_refund(state, "cmd_x", "re_x", 301, None, "msg", None)
    assert raised.value.code == "amount_too_large"
    assert decisions.request_refund(state, "cmd_x", "re_x", None, None, "msg", None).data["amount"] == 300


def test_a_failed_refund_frees_its_amount() -> None:
    history = History("charge", 1000).approve()
    command_id = history.refund(700, finish=False)
    history.add(decisions.refund_outcome(history.state, command_id, ProviderResult(Outcome.PERMANENT)))
    state = history.state
    assert [refund.status for refund in state.refunds] == ["failed"]
    assert (state.status, state.refundable) == (S.CAPTURED, 1000)


def test_nothing_left_to_refund_is_refused_with_stripes_code_whether_refunds_are_done_or_pending() -> None:
    """Stripe's charge_already_refunded, the same whether the refunds that took it all are done or still pending
    (a client refunding twice at once must not see two codes)."""
    refunded = History("charge", 1000).approve()
    refunded.refund()
    taken_by_pending = History("charge", 1000).approve()
    taken_by_pending.refund(finish=False)
    for state in (refunded.state, taken_by_pending.state):
        with pytest.raises(DomainError) as raised:
            decisions.request_refund(state, "cmd_x", "re_x", None, None, "msg", None)
        assert raised.value.code == "charge_already_refunded"
        assert "refund" in raised.value.message


def test_a_partially_captured_payment_refunds_only_what_was_captured() -> None:
    history = History(amount=1000).approve()
    history.capture(400)
    with pytest.raises(DomainError):
        decisions.request_refund(history.state, "cmd_x", "re_x", 401, None, "msg", None)
    history.refund()
    assert (history.state.status, history.state.amount_refunded) == (S.REFUNDED, 400)


# ---- the fold and its rendering ---------------------------------------------------------------------------


def test_rendering_is_a_pure_function_of_the_stream() -> None:
    history = History("charge").approve()
    history.refund(100)
    first = transaction_json(history.state)
    assert transaction_json(history.state) == first
    assert first["created_at"] == "2026-01-01T00:00:00.000000Z"
    assert first["updated_at"] == "2026-01-01T00:00:03.000000Z"
    assert first["refunds"] == [
        {"id": "re_1", "amount": 100, "status": "succeeded", "created_at": "2026-01-01T00:00:02.000000Z"}
    ]
    assert list(first) == [
        "id", "object", "workspace", "status", "amount", "currency", "amount_authorized", "amount_captured",
        "amount_refunded", "provider", "provider_reference", "customer_id", "description", "metadata", "refunds",
        "failure_code", "failure_message", "next_action", "created_at", "updated_at", "dispute",
    ]  # fmt: skip
    assert first["dispute"] is None


def test_the_reply_to_a_payment_is_the_transaction_as_of_its_outcome() -> None:
    history = History("charge").approve()
    reply_before = outcome_reply(to_recorded(history.events), history.state.payment)
    history.refund(100)
    reply_after = outcome_reply(to_recorded(history.events), history.state.payment)
    assert reply_before == reply_after
    assert reply_after["status"] == 201
    assert reply_after["body"]["status"] == "captured"


def test_an_unknown_event_type_changes_nothing_but_the_version() -> None:
    history = History().approve()
    before = history.state
    history.add(DomainEvent("SomethingFromTheFuture", {"x": 1}))
    after = history.state
    assert after.status is before.status
    assert after.version == before.version + 1


def test_no_events_is_no_transaction() -> None:
    assert Transaction.from_events([]) is None
