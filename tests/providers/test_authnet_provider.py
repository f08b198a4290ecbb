"""AuthorizeNetProvider against the Authorize.net test server over a real socket."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

import pytest
from payments_shared.providers.authnet import arb, messages
from payments_shared.providers.authnet.messages import reference_for
from payments_shared.providers.authnet.provider import NEVER_MADE_AFTER, AuthorizeNetProvider
from payments_shared.providers.port import (
    CustomerRequest,
    OpaqueData,
    Outcome,
    PaymentRef,
    PaymentRequest,
    ProviderResult,
    SubscriptionChange,
    SubscriptionRequest,
)

from tests.authnet_server import fixture
from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer

DESCRIPTOR = "COMMON.ACCEPT.INAPP.PAYMENT"
CLIENT_TIMEOUT_S = fixture.CLIENT_TIMEOUT_S
authnet_server = fixture.authnet_server
authnet = fixture.authnet


def opaque(value: str) -> OpaqueData:
    return OpaqueData(DESCRIPTOR, value)


def payment(key: str, value: str, amount: int = 1099, capture: bool = True) -> PaymentRequest:
    return PaymentRequest(key, amount, "usd", opaque(value), capture=capture)


def ref_of(result: ProviderResult, authorized: int, captured: int) -> PaymentRef:
    assert result.reference is not None
    return PaymentRef(result.reference, authorized, captured, "usd", dict(result.details))


def server_transaction(server: AuthnetTestServer, result: ProviderResult):
    assert result.reference is not None
    return server.state.transactions[result.reference]


@pytest.mark.parametrize(
    ("amount", "currency", "sent"),
    [
        (1099, "usd", Decimal("10.99")),
        (1000, "isk", Decimal("10.00")),  # two-decimal in API amounts, as Stripe counts them
        (1000, "huf", Decimal("10.00")),
        (500, "jpy", Decimal(500)),
        (1000, "xof", Decimal(1000)),
        (1230, "kwd", Decimal("1.230")),
    ],
)
async def test_an_amount_is_sent_in_its_currencys_major_units(authnet, authnet_server, amount, currency, sent):
    authnet_server.state.currencies = [currency.upper()]
    result = await authnet.pay(PaymentRequest(f"cmd-{currency}", amount, currency, opaque(f"tok-{currency}"), True))

    assert result.outcome is Outcome.APPROVED
    assert server_transaction(authnet_server, result).amount == sent
    assert result.amount == amount


async def test_charge_is_auth_capture_with_invoice_and_last_four(authnet, authnet_server):
    result = await authnet.pay(payment("cmd-charge", "tok-charge"))

    assert result.outcome is Outcome.APPROVED
    assert result.amount == 1099
    assert result.details["last4"] == "1111"
    stored = server_transaction(authnet_server, result)
    assert (stored.kind, stored.status, stored.amount) == (
        "authCaptureTransaction",
        "capturedPendingSettlement",
        Decimal("10.99"),
    )
    assert stored.invoice_number == reference_for("cmd-charge")
    assert len(stored.invoice_number) == 20


async def test_authorize_then_partial_capture(authnet, authnet_server):
    authorized = await authnet.pay(payment("cmd-auth", "tok-auth", amount=1000, capture=False))
    assert authorized.outcome is Outcome.APPROVED
    assert server_transaction(authnet_server, authorized).status == "authorizedPendingCapture"

    captured = await authnet.capture(ref_of(authorized, 1000, 0), 600, "cmd-capture")

    assert captured.outcome is Outcome.APPROVED
    assert (captured.reference, captured.amount) == (authorized.reference, 600)
    stored = server_transaction(authnet_server, authorized)
    assert (stored.status, stored.settle_amount) == ("capturedPendingSettlement", Decimal("6.00"))


async def test_capture_above_authorized_is_permanent(authnet):
    authorized = await authnet.pay(payment("cmd-auth-small", "tok-auth-small", amount=500, capture=False))
    result = await authnet.capture(ref_of(authorized, 500, 0), 900, "cmd-capture-big")
    assert result.outcome is Outcome.PERMANENT
    assert result.details["reason_code"] == "47"


async def test_void_and_void_again(authnet, authnet_server):
    authorized = await authnet.pay(payment("cmd-auth-v", "tok-auth-v", capture=False))

    first = await authnet.void(ref_of(authorized, 1099, 0), "cmd-void")
    again = await authnet.void(ref_of(authorized, 1099, 0), "cmd-void")

    assert first.outcome is Outcome.APPROVED and again.outcome is Outcome.APPROVED
    assert again.details["reason_code"] == "310"
    assert server_transaction(authnet_server, authorized).status == "voided"


@pytest.mark.parametrize(
    ("value", "outcome", "decline_code"),
    [
        ("test-decline", Outcome.DECLINED, "generic_decline"),
        ("test-reason-27", Outcome.DECLINED, "incorrect_address"),
        ("test-reason-44", Outcome.DECLINED, "incorrect_cvc"),
        ("test-reason-8", Outcome.DECLINED, "expired_card"),
        ("test-reason-4", Outcome.DECLINED, "pickup_card"),
        ("test-review", Outcome.PENDING_REVIEW, None),
        ("test-error", Outcome.PERMANENT, None),  # reason 19: "try again in 5 minutes"
    ],
)
async def test_outcomes_of_the_answer(authnet, value, outcome, decline_code):
    result = await authnet.pay(payment(f"cmd-{value}", value))
    assert result.outcome is outcome
    assert result.decline_code == decline_code
    assert result.reference is not None


async def test_a_payment_refused_for_processor_trouble_is_failed_also_when_redriven(authnet, authnet_server):
    """Reason 19 ("An error occurred during processing. Please try again in 5 minutes."): Authorize.net keeps an
    error transaction under the invoice number. A re-drive (its Accept.js token not kept) finds that transaction:
    the payment is failed, not left pending and looked up for ever."""
    first = await authnet.pay(payment("cmd-processor-trouble", "test-error-19"))
    second = fresh_adapter(authnet_server)
    redrive = dataclasses.replace(payment("cmd-processor-trouble", ""), earlier_attempt_at=minutes_ago(1))

    again = await second.pay(redrive)

    assert first.outcome is Outcome.PERMANENT and "try again" in (first.message or "").lower()
    assert again.outcome is Outcome.PERMANENT and again.reference == first.reference
    await second.close()


async def test_held_for_review_is_pending_with_the_transaction(authnet, authnet_server):
    result = await authnet.pay(payment("cmd-review", "test-review-1"))
    assert result.outcome is Outcome.PENDING_REVIEW
    assert server_transaction(authnet_server, result).status == "FDSPendingReview"


async def test_decline_control(authnet, authnet_server):
    authnet_server.decline_next(2)
    result = await authnet.pay(payment("cmd-forced-decline", "tok-forced"))
    assert (result.outcome, result.decline_code) == (Outcome.DECLINED, "generic_decline")
    assert server_transaction(authnet_server, result).status == "declined"


async def test_full_refund_before_settlement_is_a_void(authnet, authnet_server):
    charged = await authnet.pay(payment("cmd-charge-r1", "tok-r1"))

    refunded = await authnet.refund(ref_of(charged, 1099, 1099), 1099, "cmd-refund-r1", None)

    assert refunded.outcome is Outcome.APPROVED
    assert refunded.details["refunded_by"] == "void"
    assert refunded.amount == 1099
    assert server_transaction(authnet_server, charged).status == "voided"


async def test_partial_refund_before_settlement_is_refused(authnet, authnet_server):
    charged = await authnet.pay(payment("cmd-charge-r2", "tok-r2"))

    refunded = await authnet.refund(ref_of(charged, 1099, 1099), 500, "cmd-refund-r2", None)

    assert refunded.outcome is Outcome.PERMANENT
    assert refunded.message is not None and "settle" in refunded.message
    assert server_transaction(authnet_server, charged).status == "capturedPendingSettlement"


async def test_refunds_after_settlement_use_last_four_and_add_up(authnet, authnet_server):
    charged = await authnet.pay(payment("cmd-charge-r3", "tok-r3-card-4242"))
    authnet_server.settle()
    original = ref_of(charged, 1099, 1099)
    assert original.details["last4"] == "4242"

    first = await authnet.refund(original, 600, "cmd-refund-r3a", "requested_by_customer")
    second = await authnet.refund(original, 499, "cmd-refund-r3b", None)
    too_much = await authnet.refund(original, 1, "cmd-refund-r3c", None)

    assert first.outcome is Outcome.APPROVED and second.outcome is Outcome.APPROVED
    assert first.reference != charged.reference and first.details["refund_of"] == charged.reference
    refund = server_transaction(authnet_server, first)
    assert (refund.kind, refund.status, refund.amount) == ("refundTransaction", "refundPendingSettlement", Decimal(6))
    assert refund.invoice_number == reference_for("cmd-refund-r3a")
    assert too_much.outcome is Outcome.PERMANENT and too_much.details["reason_code"] == "55"


async def test_refund_without_kept_last_four_reads_it_from_the_details(authnet, authnet_server):
    charged = await authnet.pay(payment("cmd-charge-r4", "tok-r4"))
    authnet_server.settle()
    bare = PaymentRef(charged.reference or "", 1099, 1099, "usd", {})
    result = await authnet.refund(bare, 1099, "cmd-refund-r4", None)
    assert result.outcome is Outcome.APPROVED


@pytest.mark.parametrize("fault", ["timeout", "drop", "500"])
async def test_ambiguous_end_is_looked_up_and_not_sent_again(authnet, authnet_server, fault):
    authnet_server.fail_next(fault)

    result = await authnet.pay(payment(f"cmd-ambiguous-{fault}", f"tok-ambiguous-{fault}"))

    assert result.outcome is Outcome.APPROVED
    assert result.details["recovered_by"] == "lookup"
    invoice = reference_for(f"cmd-ambiguous-{fault}")
    assert [t.trans_id for t in authnet_server.state.payments_with_invoice(invoice)] == [result.reference]
    assert authnet_server.state.requests == [
        "createTransactionRequest",
        "getUnsettledTransactionListRequest",
        "getTransactionDetailsRequest",
    ]


async def test_unanswered_request_that_did_nothing_is_sent_again(authnet, authnet_server):
    authnet_server.fail_next("refuse500")

    result = await authnet.pay(payment("cmd-refused-once", "tok-refused-once"))

    assert result.outcome is Outcome.APPROVED
    assert len(authnet_server.state.payments_with_invoice(reference_for("cmd-refused-once"))) == 1
    # the refused attempt never reached the state; the look-up (unsettled, then settled batches) found nothing,
    # so it was sent again
    assert authnet_server.state.requests == [
        "getUnsettledTransactionListRequest",
        "getSettledBatchListRequest",
        "createTransactionRequest",
    ]


async def test_persistent_5xx_is_retryable_and_the_retry_looks_up_first(authnet, authnet_server):
    authnet_server.fail_next("500", times=1)
    authnet_server.fail_next("refuse500", only=None, times=10)
    first = await authnet.pay(payment("cmd-5xx", "tok-5xx"))
    assert first.outcome is Outcome.RETRYABLE
    authnet_server.state.requests.clear()
    authnet_server._faults.clear()

    second = await authnet.pay(payment("cmd-5xx", "tok-5xx"))

    assert second.outcome is Outcome.APPROVED
    assert authnet_server.state.requests[0] == "getUnsettledTransactionListRequest"
    assert len(authnet_server.state.payments_with_invoice(reference_for("cmd-5xx"))) == 1


async def test_duplicate_window_answer_resolves_to_the_original(authnet_server):
    """A redelivered command reaching a fresh adapter (no memory of the first call) is answered reason 11."""
    first_adapter = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, authnet_server.url, timeout_s=CLIENT_TIMEOUT_S)
    second_adapter = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, authnet_server.url, timeout_s=CLIENT_TIMEOUT_S)
    customer = await first_adapter.create_customer(
        CustomerRequest("cus-dup", email="d@x.io", payment_method=opaque("t"))
    )
    token = customer.details["default_payment_method"]
    request = PaymentRequest("cmd-dup", 2500, "usd", token, capture=True)

    original = await first_adapter.pay(request)
    repeated = await second_adapter.pay(request)

    assert original.outcome is Outcome.APPROVED and repeated.outcome is Outcome.APPROVED
    assert repeated.reference == original.reference
    assert len(authnet_server.state.payments_with_invoice(reference_for("cmd-dup"))) == 1
    assert "createTransactionRequest" in authnet_server.state.requests
    await first_adapter.close()
    await second_adapter.close()


async def test_duplicate_answer_after_a_lagging_lookup_resolves_to_the_original(authnet, authnet_server):
    """The look-up after a dropped connection misses the transaction (reporting lag): the resend is answered as a
    duplicate (reason 11), which resolves to the original."""
    customer = await authnet.create_customer(CustomerRequest("cus-lag", email="l@x.io", payment_method=opaque("t")))
    request = PaymentRequest("cmd-lag", 700, "usd", customer.details["default_payment_method"], capture=True)
    authnet_server.fail_next("drop")
    authnet_server.lag_reports(1)

    result = await authnet.pay(request)

    assert result.outcome is Outcome.APPROVED
    stored = authnet_server.state.payments_with_invoice(reference_for("cmd-lag"))
    assert [t.trans_id for t in stored] == [result.reference]
    assert authnet_server.state.requests[-5:] == [
        "createTransactionRequest",
        "getUnsettledTransactionListRequest",
        "getSettledBatchListRequest",
        "createTransactionRequest",
        "getTransactionDetailsRequest",
    ]


async def test_reused_accept_token_resolves_to_the_original(authnet_server):
    first_adapter = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, authnet_server.url, timeout_s=CLIENT_TIMEOUT_S)
    second_adapter = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, authnet_server.url, timeout_s=CLIENT_TIMEOUT_S)
    original = await first_adapter.pay(payment("cmd-token-again", "tok-once"))
    repeated = await second_adapter.pay(payment("cmd-token-again", "tok-once"))
    assert repeated.outcome is Outcome.APPROVED
    assert repeated.reference == original.reference
    await first_adapter.close()
    await second_adapter.close()


def fresh_adapter(server: AuthnetTestServer) -> AuthorizeNetProvider:
    """Another worker's adapter (or this one's after a restart): it has no memory of earlier attempts."""
    return AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, server.url, timeout_s=CLIENT_TIMEOUT_S)


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def test_a_token_reused_by_a_first_attempt_is_refused_at_once(authnet, authnet_server):
    """Nothing of the second command was ever sent: E00114 is the client's own reuse, a final refusal."""
    assert (await authnet.pay(payment("cmd-token-first", "tok-shared"))).outcome is Outcome.APPROVED

    result = await authnet.pay(payment("cmd-token-second", "tok-shared"))

    assert result.outcome is Outcome.PERMANENT
    assert result.details["invalid_param"] == "payment_method"  # the client's to fix (400), as Stripe's token reuse
    assert authnet_server.state.payments_with_invoice(reference_for("cmd-token-second")) == []


async def test_a_payment_profile_authorize_net_does_not_hold_is_the_clients_payment_method_error(authnet):
    """E00040 on a charge of '<customerProfileId>/<paymentProfileId>': no such payment method, 400 as at Stripe."""
    result = await authnet.pay(dataclasses.replace(payment("cmd-no-profile", "x"), payment_method="1/2"))

    assert result.outcome is Outcome.PERMANENT and result.details["invalid_param"] == "payment_method", result


async def test_a_spent_token_whose_charge_the_reports_do_not_show_yet_is_retried_not_refused(authnet, authnet_server):
    """The answer is lost after Authorize.net charged; the look-up misses it (reports lag) and the resend is
    E00114 (the token is spent). That is no refusal: the customer was charged. Retried, the payment is found."""
    authnet_server.fail_next("drop")
    authnet_server.lag_reports(3)

    first = await authnet.pay(payment("cmd-spent-lag", "tok-spent-lag"))
    again = await authnet.pay(payment("cmd-spent-lag", "tok-spent-lag"))

    assert first.outcome is Outcome.RETRYABLE
    assert again.outcome is Outcome.APPROVED and again.amount == 1099
    charged = authnet_server.state.payments_with_invoice(reference_for("cmd-spent-lag"))
    assert [t.trans_id for t in charged] == [again.reference]


async def test_a_full_refund_whose_answer_was_lost_is_not_refused_for_its_own_credit(authnet, authnet_server):
    """The refund is made and its answer lost; the look-up misses it (reports lag) and the resend is refused with
    reason 55 (the credits would exceed the charge): exceeded by the refund itself. No refusal: retried, it is found."""
    charged = await authnet.pay(payment("cmd-charge-own-credit", "tok-own-credit"))
    authnet_server.settle()
    original = ref_of(charged, 1099, 1099)
    authnet_server.fail_next("drop")
    authnet_server.lag_reports(3)

    first = await authnet.refund(original, 1099, "cmd-refund-own-credit", None)
    again = await authnet.refund(original, 1099, "cmd-refund-own-credit", None)

    assert first.outcome is Outcome.RETRYABLE, first  # not PERMANENT: the refund was made
    assert again.outcome is Outcome.APPROVED and again.details["refund_of"] == charged.reference
    refunds = authnet_server.state.payments_with_invoice(reference_for("cmd-refund-own-credit"))
    assert [refund.trans_id for refund in refunds] == [again.reference]


async def test_a_redriven_refund_refused_for_credits_and_unlisted_past_the_bound_is_refused(authnet, authnet_server):
    """Twenty minutes after its first attempt a refund still unlisted was not made: the credits that exceed the
    charge are another refund's (made at the Merchant Interface, say), and reason 55 is the answer."""
    charged = await authnet.pay(payment("cmd-charge-other-credit", "tok-other-credit"))
    authnet_server.settle()
    original = ref_of(charged, 1099, 1099)
    assert (await authnet.refund(original, 1099, "cmd-refund-elsewhere", None)).outcome is Outcome.APPROVED
    second = fresh_adapter(authnet_server)

    late = await second.refund(original, 1099, "cmd-refund-late-55", None, earlier_attempt_at=minutes_ago(25))

    assert late.outcome is Outcome.PERMANENT and late.details["reason_code"] == "55"
    assert authnet_server.state.payments_with_invoice(reference_for("cmd-refund-late-55")) == []
    await second.close()


async def test_a_redriven_refund_refused_for_credits_known_here_is_refused_at_once(authnet, authnet_server):
    """The refunds recorded here (ours, or reported by the provider) already explain reason 55: no waiting."""
    charged = await authnet.pay(payment("cmd-charge-known-credit", "tok-known-credit"))
    authnet_server.settle()
    original = ref_of(charged, 1099, 1099)
    assert (await authnet.refund(original, 600, "cmd-refund-known-a", None)).outcome is Outcome.APPROVED
    known = dataclasses.replace(original, known_credits=600)

    refused = await authnet.refund(known, 600, "cmd-refund-known-b", None, earlier_attempt_at=minutes_ago(1))

    assert refused.outcome is Outcome.PERMANENT and refused.details["reason_code"] == "55"


async def test_a_redrive_after_settlement_finds_the_payment_in_its_batch(authnet_server):
    """A command re-driven after the nightly batch (a dead letter requeued the next morning): the payment is no
    longer in the unsettled list, and its token is spent. It is found in the batch settled since."""
    first, second = fresh_adapter(authnet_server), fresh_adapter(authnet_server)
    request = payment("cmd-settled", "tok-settled")
    charged = await first.pay(request)  # its answer is lost with the worker
    authnet_server.settle()
    authnet_server.state.requests.clear()

    again = await second.pay(dataclasses.replace(request, earlier_attempt_at=minutes_ago(600)))

    assert again.outcome is Outcome.APPROVED and again.reference == charged.reference
    assert again.details["transaction_status"] == "settledSuccessfully"
    assert "createTransactionRequest" not in authnet_server.state.requests  # looked up before anything is sent
    assert len(authnet_server.state.payments_with_invoice(reference_for("cmd-settled"))) == 1
    await first.close()
    await second.close()


async def test_a_payment_redriven_without_its_token_is_looked_up_not_sent(authnet, authnet_server):
    """Recovery drives a payment from the stream, which never holds the token's value."""
    charged = await authnet.pay(payment("cmd-stored", "tok-stored"))
    second = fresh_adapter(authnet_server)
    authnet_server.state.requests.clear()

    again = await second.pay(dataclasses.replace(payment("cmd-stored", ""), earlier_attempt_at=minutes_ago(1)))

    assert again.outcome is Outcome.APPROVED and again.reference == charged.reference and again.amount == 1099
    assert "createTransactionRequest" not in authnet_server.state.requests
    await second.close()


async def test_a_payment_without_its_token_never_listed_is_left_to_an_operator(authnet, authnet_server):
    """Not listed yet is the reports' usual lag: looked up again shortly. Not listed once the token has expired most
    likely means never made, but Authorize.net bounds no lag: it is left unresolved (its invoice number the one
    candidate an operator looks for), never failed by the adapter."""
    unsent = payment("cmd-never-sent", "")

    young = await authnet.pay(dataclasses.replace(unsent, earlier_attempt_at=minutes_ago(1)))
    expired = await authnet.pay(dataclasses.replace(unsent, earlier_attempt_at=datetime.now(UTC) - NEVER_MADE_AFTER))

    assert young.outcome is Outcome.RETRYABLE and not young.unresolved
    assert expired.outcome is Outcome.RETRYABLE and expired.unresolved
    assert expired.details["unresolved"] == [reference_for("cmd-never-sent")]
    assert "operator" in (expired.message or "") and "20 minutes" in (expired.message or "")
    assert "createTransactionRequest" not in authnet_server.state.requests


async def test_a_refund_redriven_after_the_duplicate_window_is_found_not_made_twice(authnet, authnet_server):
    """A refund whose answer was lost, re-driven by another worker past Authorize.net's 8-hour duplicate window
    (a dead letter requeued the next day): Authorize.net would take it again. It is found in its batch first."""
    charged = await authnet.pay(payment("cmd-charge-late", "tok-late"))
    authnet_server.settle()
    original = ref_of(charged, 1099, 1099)
    refunded = await authnet.refund(original, 500, "cmd-refund-late", None)  # its answer is lost with the worker
    authnet_server.settle()
    nine_hours_s = 9 * 3600
    server_transaction(authnet_server, refunded).submitted -= nine_hours_s
    second = fresh_adapter(authnet_server)

    again = await second.refund(original, 500, "cmd-refund-late", None, earlier_attempt_at=minutes_ago(9 * 60))

    assert again.outcome is Outcome.APPROVED and again.reference == refunded.reference
    assert len(authnet_server.state.payments_with_invoice(reference_for("cmd-refund-late"))) == 1
    await second.close()


async def test_ambiguous_capture_checks_the_transaction(authnet, authnet_server):
    authorized = await authnet.pay(payment("cmd-auth-c", "tok-auth-c", capture=False))
    authnet_server.fail_next("drop")

    captured = await authnet.capture(ref_of(authorized, 1099, 0), 1099, "cmd-capture-c")

    assert captured.outcome is Outcome.APPROVED
    assert captured.details["transaction_status"] == "capturedPendingSettlement"
    assert authnet_server.state.requests[-1] == "getTransactionDetailsRequest"


async def test_ambiguous_void_checks_the_transaction(authnet, authnet_server):
    authorized = await authnet.pay(payment("cmd-auth-d", "tok-auth-d", capture=False))
    authnet_server.fail_next("timeout")
    voided = await authnet.void(ref_of(authorized, 1099, 0), "cmd-void-d")
    assert voided.outcome is Outcome.APPROVED
    assert server_transaction(authnet_server, authorized).status == "voided"


async def test_wrong_credentials_are_permanent_and_logged_once_without_the_key(authnet_server, caplog):
    adapter = AuthorizeNetProvider(LOGIN_ID, "WrongKey12345678", authnet_server.url, timeout_s=CLIENT_TIMEOUT_S)
    with caplog.at_level(logging.INFO):
        first = await adapter.pay(payment("cmd-auth-fail-1", "tok-af-1"))
        second = await adapter.pay(payment("cmd-auth-fail-2", "tok-af-2"))
    await adapter.close()

    assert first.outcome is Outcome.PERMANENT and second.outcome is Outcome.PERMANENT
    assert first.details["error_code"] == "E00007"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "WrongKey12345678" not in caplog.text and "WrongKey12345678" not in repr(adapter.__dict__)


async def test_unreachable_server_is_retryable(authnet_server):
    authnet_server.stop()
    adapter = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, authnet_server.url, timeout_s=CLIENT_TIMEOUT_S)
    result = await adapter.pay(payment("cmd-down", "tok-down"))
    await adapter.close()
    assert result.outcome is Outcome.RETRYABLE


@pytest.mark.parametrize("method", ["4242 4242 4242 4242", "pm_card_visa", "12/34/56"])
async def test_card_numbers_and_foreign_tokens_are_refused_before_any_call(authnet, authnet_server, method):
    result = await authnet.pay(PaymentRequest("cmd-bad-method", 100, "usd", method, capture=True))
    assert result.outcome is Outcome.PERMANENT
    assert result.details["invalid_payment_method"] is True
    assert "4242" not in (result.message or "")
    assert authnet_server.state.requests == []


async def test_customer_profile_create_charge_update_delete(authnet, authnet_server):
    created = await authnet.create_customer(
        CustomerRequest("cmd-cus", email="ada@example.com", name="Ada", payment_method=opaque("tok-cus"))
    )
    assert created.outcome is Outcome.APPROVED
    profile = authnet_server.state.profiles[created.reference or ""]
    assert (profile.email, profile.merchant_customer_id) == ("ada@example.com", reference_for("cmd-cus"))

    again = await authnet.create_customer(
        CustomerRequest("cmd-cus", email="ada@example.com", name="Ada", payment_method=opaque("tok-cus"))
    )
    assert again.reference == created.reference and len(authnet_server.state.profiles) == 1
    assert again.details["default_payment_method"] == created.details["default_payment_method"]

    bare_profile_id = created.details["payment_profile_id"]
    charged = await authnet.pay(
        PaymentRequest("cmd-cus-pay", 300, "usd", bare_profile_id, capture=True, customer_reference=created.reference)
    )
    assert charged.outcome is Outcome.APPROVED

    updated = await authnet.update_customer(
        created.reference or "", CustomerRequest("cmd-cus-upd", email="ada@new.example", payment_method=opaque("tok-2"))
    )
    assert updated.outcome is Outcome.APPROVED
    assert profile.email == "ada@new.example" and len(profile.payment_profiles) == 2
    # updateCustomerProfile replaces every field: the ones not changed were read and sent again
    assert (profile.description, profile.merchant_customer_id) == ("Ada", reference_for("cmd-cus"))

    deleted = await authnet.delete_customer(created.reference or "", "cmd-cus-del")
    deleted_again = await authnet.delete_customer(created.reference or "", "cmd-cus-del")
    assert deleted.outcome is Outcome.APPROVED and deleted_again.details["already_deleted"] is True
    assert authnet_server.state.profiles == {}


@pytest.mark.parametrize("tokens_checked_first", [False, True], ids=["duplicate found first", "token refused first"])
async def test_a_customer_created_again_with_its_spent_nonce_is_the_profile_it_made(
    authnet, authnet_server, tokens_checked_first
):
    """An attempt whose answer was lost, sent again: Authorize.net finds the duplicate (E00039) or refuses the spent
    nonce first (E00114; which it checks first is not published). Either way the profile made is the answer."""
    authnet_server.state.tokens_checked_first = tokens_checked_first
    request = CustomerRequest("cmd-twice", email="ada@x.io", payment_method=opaque("tok-twice"))
    created = await authnet.create_customer(request)

    again = await authnet.create_customer(request)

    assert again.outcome is Outcome.APPROVED and again.reference == created.reference
    assert again.details["default_payment_method"] == created.details["default_payment_method"]
    assert len(authnet_server.state.profiles) == 1


async def test_a_customer_created_with_a_nonce_spent_by_another_stays_refused(authnet, authnet_server):
    authnet_server.state.tokens_checked_first = True
    await authnet.create_customer(CustomerRequest("cmd-one", email="a@x.io", payment_method=opaque("tok-shared")))

    other = await authnet.create_customer(
        CustomerRequest("cmd-other", email="b@x.io", payment_method=opaque("tok-shared"))
    )

    assert other.outcome is Outcome.PERMANENT and other.details["error_code"] == "E00114"
    assert len(authnet_server.state.profiles) == 1


async def customer_with_a_spent_update(authnet: AuthorizeNetProvider) -> tuple[str, str, CustomerRequest]:
    """A customer made with one payment profile, and an update whose Accept.js nonce added a second one (its answer
    lost, say): the same update sent again is refused E00114 by Authorize.net. Returns (profile id, the payment
    method recorded at creation, that update)."""
    created = await authnet.create_customer(CustomerRequest("cmd-spent", email="ada@x.io", payment_method=opaque("t1")))
    update = CustomerRequest("cmd-spent-upd", email="ada@x.io", payment_method=opaque("tok-spent"))
    assert (await authnet.update_customer(created.reference or "", update)).outcome is Outcome.APPROVED
    return created.reference or "", str(created.details["default_payment_method"]), update


async def test_a_redriven_update_whose_nonce_its_earlier_attempt_spent_adopts_the_payment_profile_it_added(
    authnet, authnet_server
):
    reference, recorded, update = await customer_with_a_spent_update(authnet)
    payment_profiles = authnet_server.state.profiles[reference].payment_profiles
    added = max(payment_profiles, key=int)

    redriven = dataclasses.replace(update, recorded_payment_methods=frozenset({recorded}))
    result = await authnet.update_customer(reference, redriven)

    assert result.outcome is Outcome.APPROVED, result
    assert result.details["default_payment_method"] == f"{reference}/{added}"
    assert len(payment_profiles) == 2  # nothing added again


@pytest.mark.parametrize(
    "recorded",
    [
        pytest.param(None, id="a first attempt: the nonce was spent elsewhere"),
        pytest.param(frozenset(), id="two payment profiles not recorded: which is the attempt's cannot be told"),
    ],
)
async def test_a_spent_nonce_stays_refused_unless_one_payment_profile_is_not_recorded(
    authnet, authnet_server, recorded
):
    reference, _, update = await customer_with_a_spent_update(authnet)

    result = await authnet.update_customer(reference, dataclasses.replace(update, recorded_payment_methods=recorded))

    assert result.outcome is Outcome.PERMANENT
    assert result.details["error_code"] == "E00114"
    assert len(authnet_server.state.profiles[reference].payment_profiles) == 2


async def test_update_of_unknown_customer_is_permanent(authnet):
    result = await authnet.update_customer("999", CustomerRequest("cmd-upd-unknown", email="x@y.io"))
    assert result.outcome is Outcome.PERMANENT
    assert result.details["error_code"] == "E00040"


def utc_today() -> str:
    """The day ARB's start dates are checked against: UTC's, whatever the machine's time zone."""
    return datetime.now(UTC).date().isoformat()


async def subscribed_customer(authnet: AuthorizeNetProvider, key: str) -> str:
    customer = await authnet.create_customer(CustomerRequest(key, email=f"{key}@x.io", payment_method=opaque(key)))
    return str(customer.details["default_payment_method"])


def monthly(key: str, method: str, **extra) -> SubscriptionRequest:
    return SubscriptionRequest(key, None, 500, "usd", "month", 1, 2, payment_method=method, **extra)


async def test_subscription_create_is_arb_and_a_resend_finds_the_first(authnet, authnet_server):
    method = await subscribed_customer(authnet, "cus-sub")

    created = await authnet.create_subscription(monthly("cmd-sub", method))
    again = await authnet.create_subscription(monthly("cmd-sub", method))

    assert created.outcome is Outcome.APPROVED and created.details["status"] == "active"
    assert again.reference == created.reference
    stored = authnet_server.state.subscriptions[created.reference or ""]
    assert (stored.amount, stored.interval, stored.invoice_number) == (
        Decimal(10),
        (1, "months"),
        reference_for("cmd-sub"),
    )
    assert len(authnet_server.state.subscriptions) == 1


DAY_S = 24 * 3600


def after_midnight(server: AuthnetTestServer, monkeypatch: pytest.MonkeyPatch, days: int = 1) -> None:
    """Authorize.net's clock and the adapter's move on by `days` (a re-drive on a later UTC day)."""
    server.advance_clock(days * DAY_S)
    later = datetime.now(UTC) + timedelta(days=days)

    class Later(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Later:
            return cls.fromtimestamp(later.timestamp(), tz)

    monkeypatch.setattr(arb, "datetime", Later)


def active(server: AuthnetTestServer) -> list[str]:
    return [s.subscription_id for s in server.state.subscriptions.values() if s.status == "active"]


async def test_a_subscription_redriven_after_midnight_utc_is_the_first_not_a_second(
    authnet, authnet_server, monkeypatch
):
    """The answer is lost before midnight; a resend the same day is E00012, a re-drive after midnight (a broker
    redelivery, the billing journal's re-run) E00017: the list finds the first. ARB bills one subscription."""
    method = await subscribed_customer(authnet, "cus-midnight")
    request = monthly("cmd-sub-midnight", method, accepted_at=datetime.now(UTC))
    first = await authnet.create_subscription(request)
    resent = await fresh_adapter(authnet_server).create_subscription(request)
    assert "ARBGetSubscriptionListRequest" not in authnet_server.state.requests  # same day: E00012 named it

    after_midnight(authnet_server, monkeypatch)
    redriven = fresh_adapter(authnet_server)
    again = await redriven.create_subscription(request)
    await redriven.close()

    assert first.outcome is again.outcome is Outcome.APPROVED and again.details["status"] == "active"
    assert first.reference == resent.reference == again.reference
    assert active(authnet_server) == [first.reference]
    assert "ARBGetSubscriptionListRequest" in authnet_server.state.requests


async def test_a_subscription_suspended_before_its_redrive_is_found_among_the_inactive(
    authnet, authnet_server, monkeypatch
):
    method = await subscribed_customer(authnet, "cus-suspended")
    request = monthly("cmd-sub-suspended", method, accepted_at=datetime.now(UTC))
    first = await authnet.create_subscription(request)
    authnet_server.state.subscriptions[first.reference or ""].status = "suspended"  # its first charge failed

    after_midnight(authnet_server, monkeypatch)
    again = await fresh_adapter(authnet_server).create_subscription(request)

    assert again.reference == first.reference and again.details["status"] == "past_due"
    assert len(authnet_server.state.subscriptions) == 1


async def test_a_subscription_never_made_on_its_day_is_made_from_today_then_found(authnet, authnet_server, monkeypatch):
    """Accepted yesterday, never reached ARB: E00017, no such subscription in any page of the list, so it is made
    starting today. Its own re-drive the day after finds it rather than making another."""
    monkeypatch.setattr(messages, "SUBSCRIPTION_PAGE", 2)  # the search pages through the others
    method = await subscribed_customer(authnet, "cus-late")
    for other in range(3):
        assert (await authnet.create_subscription(monthly(f"cmd-other-{other}", method))).succeeded
    request = monthly("cmd-sub-late", method, accepted_at=datetime.now(UTC) - timedelta(days=1))

    made = await authnet.create_subscription(request)
    after_midnight(authnet_server, monkeypatch)
    again = await fresh_adapter(authnet_server).create_subscription(request)

    assert made.outcome is Outcome.APPROVED and made.details["status"] == "active"
    assert authnet_server.state.subscriptions[made.reference or ""].start_date == utc_today()
    assert again.reference == made.reference and len(active(authnet_server)) == 4
    # two pages of the active, one of the inactive; the day after, the first page of the active finds it
    assert authnet_server.state.requests.count("ARBGetSubscriptionListRequest") == 4


async def test_a_subscription_in_another_currency_than_the_accounts_is_refused(authnet, authnet_server):
    """ARB has no currency: it bills in the account's. 500 jpy on a USD account would bill $10.00 (×2)."""
    method = await subscribed_customer(authnet, "cus-cur")

    refused = await authnet.create_subscription(
        SubscriptionRequest("cmd-sub-jpy", None, 500, "jpy", "month", 1, 2, payment_method=method)
    )
    created = await authnet.create_subscription(monthly("cmd-sub-usd", method))
    again = await authnet.create_subscription(monthly("cmd-sub-usd-2", method, trial_days=3))

    assert refused.outcome is Outcome.PERMANENT and refused.details["invalid_param"] == "currency"
    assert "USD" in (refused.message or "").upper()
    assert created.outcome is again.outcome is Outcome.APPROVED
    assert len(authnet_server.state.subscriptions) == 2
    assert authnet_server.state.requests.count("getMerchantDetailsRequest") == 1  # asked once


async def test_a_charge_in_a_currency_the_account_lacks_is_refused_on_currency(authnet, authnet_server):
    result = await authnet.pay(PaymentRequest("cmd-eur", 1099, "eur", opaque("tok-eur"), True))

    assert result.outcome is Outcome.PERMANENT
    assert result.details["invalid_param"] == "currency"
    assert result.details["reason_code"] == "39"


async def test_subscription_trial_starts_later(authnet, authnet_server):
    method = await subscribed_customer(authnet, "cus-trial")
    created = await authnet.create_subscription(monthly("cmd-trial", method, trial_days=14))
    assert created.details["status"] == "trialing"
    assert authnet_server.state.subscriptions[created.reference or ""].start_date > utc_today()


async def test_subscription_update_amount_and_quantity(authnet, authnet_server):
    method = await subscribed_customer(authnet, "cus-upd")
    created = await authnet.create_subscription(monthly("cmd-sub-upd", method))
    stored = authnet_server.state.subscriptions[created.reference or ""]

    more = await authnet.update_subscription(created.reference or "", SubscriptionChange("cmd-q", 3, currency="usd"))
    assert (more.outcome, stored.amount) == (Outcome.APPROVED, Decimal(15))
    pricier = await authnet.update_subscription(
        created.reference or "", SubscriptionChange("cmd-a", amount=700, currency="usd")
    )
    assert (pricier.outcome, stored.amount) == (Outcome.APPROVED, Decimal(21))
    at_end = await authnet.update_subscription(
        created.reference or "", SubscriptionChange("cmd-e", cancel_at_period_end=True)
    )
    assert at_end.outcome is Outcome.PERMANENT and at_end.details["unsupported"] is True


async def test_a_zero_decimal_subscription_changes_in_whole_units(authnet, authnet_server):
    """500 jpy a month × 2 is 1000 yen at ARB; a new amount of 700 jpy × 2 is 1400 yen, not 14.00."""
    authnet_server.state.currencies = ["JPY"]
    method = await subscribed_customer(authnet, "cus-jpy")
    request = SubscriptionRequest("cmd-sub-jpy", None, 500, "jpy", "month", 1, 2, payment_method=method)
    created = await authnet.create_subscription(request)
    stored = authnet_server.state.subscriptions[created.reference or ""]
    assert stored.amount == Decimal(1000)

    dearer = await authnet.update_subscription(
        created.reference or "", SubscriptionChange("cmd-jpy-a", amount=700, currency="jpy")
    )
    assert (dearer.outcome, stored.amount) == (Outcome.APPROVED, Decimal(1400))
    more = await authnet.update_subscription(
        created.reference or "", SubscriptionChange("cmd-jpy-q", 3, currency="jpy")
    )
    assert (more.outcome, stored.amount) == (Outcome.APPROVED, Decimal(2100))


async def test_subscription_cancel_now_and_again(authnet, authnet_server):
    method = await subscribed_customer(authnet, "cus-cancel")
    created = await authnet.create_subscription(monthly("cmd-sub-c", method))

    canceled = await authnet.cancel_subscription(created.reference or "", False, "cmd-cancel")
    again = await authnet.cancel_subscription(created.reference or "", False, "cmd-cancel")
    at_period_end = await authnet.cancel_subscription(created.reference or "", True, "cmd-cancel-end")

    assert canceled.details["status"] == "canceled" and again.outcome is Outcome.APPROVED
    assert authnet_server.state.subscriptions[created.reference or ""].status == "canceled"
    assert at_period_end.details["unsupported"] is True


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (SubscriptionRequest("s1", "1", 500, "usd", "day", 3, 1, payment_method="1/2"), "interval_count"),
        (SubscriptionRequest("s4", "1", 500, "usd", "month", 13, 1, payment_method="1/2"), "interval_count"),
        (SubscriptionRequest("s5", "1", 500, "usd", "year", 2, 1, payment_method="1/2"), "interval_count"),
        (SubscriptionRequest("s2", "1", 500, "usd", "month", 1, 1, payment_method=opaque("x")), "payment_method"),
        (SubscriptionRequest("s3", "1", 500, "usd", "month", 1, 1, price="price_123"), "price"),
    ],
)
async def test_subscriptions_arb_cannot_take_are_invalid_params(authnet, authnet_server, request_, param):
    result = await authnet.create_subscription(request_)
    assert result.outcome is Outcome.PERMANENT and result.details["invalid_param"] == param
    assert authnet_server.state.requests == []


async def test_a_payment_behind_a_full_page_of_newer_unsettled_ones_is_found_not_failed(authnet, authnet_server):
    """getUnsettledTransactionList serves at most 1000 a page, the newest first: a busy merchant's later payments
    push the earlier attempt's charge onto the second page. It is read there, never taken for a payment not made."""
    charged = await authnet.pay(payment("cmd-paged", "tok-paged"))  # its answer is lost with the worker
    authnet_server.others_paid_since(messages.LIST_PAGE)
    second = fresh_adapter(authnet_server)
    authnet_server.state.requests.clear()

    again = await second.pay(dataclasses.replace(payment("cmd-paged", ""), earlier_attempt_at=minutes_ago(25)))

    assert again.outcome is Outcome.APPROVED and again.reference == charged.reference and again.amount == 1099
    assert "createTransactionRequest" not in authnet_server.state.requests
    await second.close()


async def test_a_charge_the_reports_show_only_after_the_bound_is_left_pending_never_failed(authnet, authnet_server):
    """Authorize.net documents no bound on how late its reports list a transaction. A token-less re-drive past 20
    minutes that does not find the charge yet leaves the payment pending (an operator checks, the look-up goes on),
    never fails it as not made: when the reports catch up, the charge is found."""
    charged = await authnet.pay(payment("cmd-late-report", "tok-late-report"))  # its answer is lost with the worker
    second = fresh_adapter(authnet_server)
    redrive = dataclasses.replace(payment("cmd-late-report", ""), earlier_attempt_at=minutes_ago(25))
    authnet_server.lag_reports(1)

    lagging = await second.pay(redrive)
    caught_up = await second.pay(redrive)

    assert lagging.unresolved, lagging  # not PERMANENT: the customer was charged
    assert "operator" in (lagging.message or "")
    assert caught_up.outcome is Outcome.APPROVED and caught_up.reference == charged.reference
    await second.close()


async def test_a_spent_token_unlisted_past_the_bound_is_left_pending_never_failed(authnet, authnet_server):
    """The same with the token still in hand: the resend is E00114 (spent), the look-ups miss the charge."""
    authnet_server.fail_next("drop")
    authnet_server.lag_reports(3)
    await authnet.pay(payment("cmd-spent-late", "tok-spent-late"))  # charged; the answer lost
    second = fresh_adapter(authnet_server)
    authnet_server.lag_reports(10)  # every look-up of the re-drive misses the charge

    again = await second.pay(
        dataclasses.replace(payment("cmd-spent-late", "tok-spent-late"), earlier_attempt_at=minutes_ago(25))
    )

    assert again.unresolved, again  # not PERMANENT (E00114 taken for a refusal): the customer was charged
    assert len(authnet_server.state.payments_with_invoice(reference_for("cmd-spent-late"))) == 1
    await second.close()


@pytest.mark.parametrize(("approve", "expected"), [(True, Outcome.APPROVED), (False, Outcome.DECLINED)])
async def test_a_held_payment_reviewed_before_its_redrive_is_found_as_reviewed(
    authnet, authnet_server, approve, expected
):
    """A payment held for review (responseCode 4) whose answer was lost; the merchant decides before the re-drive
    (the fraud.approved/declined webhook found no payment of ours then). The re-drive finds the transaction: its
    status, not its original responseCode, tells what it is now."""
    held = await authnet.pay(payment("cmd-reviewed", "test-review-reviewed"))
    assert held.outcome is Outcome.PENDING_REVIEW and held.reference is not None
    authnet_server.review(held.reference, approve=approve)
    second = fresh_adapter(authnet_server)

    again = await second.pay(dataclasses.replace(payment("cmd-reviewed", ""), earlier_attempt_at=minutes_ago(1)))

    assert again.outcome is expected, again
    assert again.reference == held.reference
    await second.close()
