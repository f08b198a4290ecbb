"""The Stripe adapter against a server speaking Stripe's wire format, for what localstripe cannot show:
Stripe's error payloads, idempotency keys, timeouts, and that the API key never leaks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import pytest
from payments_shared.logging import JsonFormatter
from payments_shared.providers import stripe as stripe_adapter
from payments_shared.providers.port import (
    CustomerRequest,
    OpaqueData,
    Outcome,
    PaymentRef,
    PaymentRequest,
    ProviderResult,
)
from payments_shared.providers.stripe import StripeProvider
from payments_transactions.domain import decisions

from tests.support.localstripe_server import free_port
from tests.support.stripe_wire_server import RATE_LIMITED, SERVER_ERROR, WIRE_API_KEY, StripeWireServer

API_KEY = WIRE_API_KEY
WRONG_KEY = "sk_test_51SomeoneElsesKey9876543210fedcba"
TIMEOUT_S = 2.0  # a loaded machine answers a normal request in well under this; a stalled one never does


@pytest.fixture
async def provider(wire: StripeWireServer) -> AsyncIterator[StripeProvider]:
    adapter = StripeProvider(API_KEY, api_base=wire.base_url, timeout_s=TIMEOUT_S)
    yield adapter
    await adapter.close()


@pytest.fixture
def fresh_authentication_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 'logged once per process' flag, as a new process has it."""
    monkeypatch.setattr(stripe_adapter, "_authentication_failure_logged", False)


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Every record logged so far in the test (the SDK's and httpx's debug lines too), as the JSON formatter
    writes it."""
    caplog.set_level(logging.DEBUG)
    formatter = JsonFormatter()
    return lambda: [formatter.format(record) for record in caplog.records]


def charge(key: str = "cmd-1", amount: int = 1000, method: str = "pm_card_visa") -> PaymentRequest:
    return PaymentRequest(key, amount, "usd", method, capture=True)


def posts(wire: StripeWireServer, path: str) -> int:
    return sum(1 for r in wire.requests if r.method == "POST" and r.path == path)


# ---- each Stripe error class → its outcome ----------------------------------------------------------------------


async def test_rate_limit_is_retryable_with_retry_after(wire: StripeWireServer, provider: StripeProvider) -> None:
    wire.fail_next(429, RATE_LIMITED, {"Retry-After": "2"})

    result = await provider.pay(charge())

    assert result.outcome is Outcome.RETRYABLE
    assert result.retry_after == 2.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(wire: StripeWireServer, provider: StripeProvider, status: int) -> None:
    wire.fail_next(status, SERVER_ERROR)

    result = await provider.pay(charge())

    assert (result.outcome, result.retry_after) == (Outcome.RETRYABLE, None)


async def test_idempotent_request_in_progress_is_retryable(wire: StripeWireServer, provider: StripeProvider) -> None:
    message = "There is currently another in-progress request using this Idempotent Key (that probably means you"
    wire.fail_next(409, {"type": "idempotency_error", "code": "idempotency_key_in_use", "message": message})

    assert (await provider.pay(charge())).outcome is Outcome.RETRYABLE


async def test_card_error_is_a_decline_with_stripes_decline_code(provider: StripeProvider) -> None:
    result = await provider.pay(charge(method="pm_card_chargeDeclinedInsufficientFunds"))

    assert result.outcome is Outcome.DECLINED
    assert result.decline_code == "insufficient_funds"
    assert result.message == "Your card has insufficient funds."
    assert result.reference is not None and result.reference.startswith("pi_")  # the declined PaymentIntent
    assert result.details["payment_intent"] == result.reference
    assert str(result.details["charge"]).startswith("ch_")


async def test_invalid_request_on_our_field_is_permanent_and_names_it(provider: StripeProvider) -> None:
    result = await provider.pay(charge(method="pm_doesNotExist123"))

    assert result.outcome is Outcome.PERMANENT
    assert result.details["invalid_param"] == "payment_method"
    assert result.message == "No such PaymentMethod: '[token removed]'"  # Stripe's words, without the token


async def test_invalid_request_on_a_parameter_of_ours_names_no_field(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    wire.fail_next(400, {"type": "invalid_request_error", "param": "expand[0]", "message": "Invalid expand"})

    result = await provider.pay(charge())

    assert result.outcome is Outcome.PERMANENT
    assert "invalid_param" not in result.details  # our bug, not the client's


async def test_a_refund_above_what_stripe_holds_refundable_is_a_conflict(provider: StripeProvider) -> None:
    charged = await provider.pay(charge(amount=500))
    assert charged.reference is not None
    payment = PaymentRef(charged.reference, 500, 500, "usd")
    elsewhere = await provider.refund(payment, 400, "cmd-refund-in-the-dashboard", None)
    assert elsewhere.outcome is Outcome.APPROVED

    result = await provider.refund(payment, 300, "cmd-refund", None)

    # API.md: a refund above the refundable amount is 409 conflict, as our own check answers it (not 400 amount).
    assert (result.outcome, result.details["conflict"]) == (Outcome.PERMANENT, "amount_too_large")
    assert "invalid_param" not in result.details
    assert decisions.permanent_error(result)["type"] == "conflict"


async def test_authentication_error_is_permanent_and_logged_loudly_once(
    wire: StripeWireServer, caplog: pytest.LogCaptureFixture, fresh_authentication_alarm: None
) -> None:
    adapter = StripeProvider(WRONG_KEY, api_base=wire.base_url, timeout_s=TIMEOUT_S)
    caplog.set_level(logging.WARNING)
    try:
        first = await adapter.pay(charge("cmd-1"))
        second = await adapter.create_customer(CustomerRequest("cmd-2", email="a@example.com"))
    finally:
        await adapter.close()

    assert (first.outcome, second.outcome) == (Outcome.PERMANENT, Outcome.PERMANENT)
    assert first.message == "Stripe rejected the API key (check STRIPE_API_KEY)"
    alarms = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(alarms) == 1
    assert "STRIPE_API_KEY" in alarms[0].getMessage()


async def test_permission_error_is_permanent(wire: StripeWireServer, provider: StripeProvider) -> None:
    message = "The provided key 'rk_test_***xyz' does not have the required permissions for this endpoint."
    wire.fail_next(403, {"type": "invalid_request_error", "message": message})

    result = await provider.pay(charge())

    assert result.outcome is Outcome.PERMANENT
    assert "rk_test" not in (result.message or "")


async def test_reused_key_with_other_parameters_is_an_idempotency_error(provider: StripeProvider) -> None:
    first = await provider.pay(charge("cmd-same", amount=1000))

    second = await provider.pay(charge("cmd-same", amount=2000))

    assert first.outcome is Outcome.APPROVED
    assert (second.outcome, second.details["stripe_code"]) == (Outcome.PERMANENT, "idempotency_error")


async def test_unreachable_stripe_is_retryable() -> None:
    adapter = StripeProvider(API_KEY, api_base=f"http://127.0.0.1:{free_port()}", timeout_s=TIMEOUT_S)
    try:
        result = await adapter.pay(charge())
    finally:
        await adapter.close()

    assert result.outcome is Outcome.RETRYABLE


async def test_opaque_data_is_refused_without_calling_stripe(wire: StripeWireServer, provider: StripeProvider) -> None:
    request = PaymentRequest("cmd-1", 1000, "usd", OpaqueData("COMMON.ACCEPT.INAPP.PAYMENT", "xyz"), capture=True)

    result = await provider.pay(request)

    assert (result.outcome, result.details["invalid_param"]) == (Outcome.PERMANENT, "payment_method")
    assert wire.requests == []


# ---- idempotency: one command id, one Stripe object ------------------------------------------------------------


async def test_every_post_carries_the_command_id_as_idempotency_key(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    await provider.create_customer(
        CustomerRequest("cmd-customer", email="a@example.com", payment_method="pm_card_visa")
    )
    charged = await provider.pay(charge("cmd-charge"))
    assert charged.reference is not None
    await provider.refund(PaymentRef(charged.reference, 1000, 1000, "usd"), 100, "cmd-refund", "duplicate")

    keys = [(r.path, r.headers.get("Idempotency-Key")) for r in wire.requests if r.method == "POST"]
    customer = next(iter(wire.customers))
    method_attach = next(path for path, _ in keys if path.endswith("/attach"))
    assert keys == [
        ("/v1/customers", "cmd-customer"),
        (method_attach, "cmd-customer:attach"),
        (f"/v1/customers/{customer}", "cmd-customer:default"),
        ("/v1/payment_intents", "cmd-charge"),
        ("/v1/refunds", "cmd-refund"),
    ]
    refund_params = dict(wire.requests[-1].params)
    assert refund_params["reason"] == "duplicate"  # one of Stripe's own reasons goes as `reason`


async def test_retried_charge_after_a_timeout_creates_one_payment_intent(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    wire.stall_next(TIMEOUT_S * 2)  # Stripe creates the PaymentIntent, its answer never reaches us

    first = await provider.pay(charge("cmd-retried"))
    retried = await provider.pay(charge("cmd-retried"))

    assert first.outcome is Outcome.RETRYABLE
    assert retried.outcome is Outcome.APPROVED
    assert list(wire.payment_intents) == [retried.reference]
    assert posts(wire, "/v1/payment_intents") == 2  # two requests, one object


async def test_retried_charge_after_a_server_error_creates_one_payment_intent(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    wire.fail_next(500, SERVER_ERROR)

    results = [await provider.pay(charge("cmd-retried")) for _ in range(3)]

    assert [r.outcome for r in results] == [Outcome.RETRYABLE, Outcome.APPROVED, Outcome.APPROVED]
    assert results[1].reference == results[2].reference
    assert len(wire.payment_intents) == 1


async def test_retried_refund_refunds_once(wire: StripeWireServer, provider: StripeProvider) -> None:
    charged = await provider.pay(charge("cmd-charge"))
    assert charged.reference is not None
    payment = PaymentRef(charged.reference, 1000, 1000, "usd")
    wire.stall_next(TIMEOUT_S * 2)

    first = await provider.refund(payment, 300, "cmd-refund", None)
    retried = await provider.refund(payment, 300, "cmd-refund", None)

    assert (first.outcome, retried.outcome) == (Outcome.RETRYABLE, Outcome.APPROVED)
    assert [r["amount"] for r in wire.refunds.values()] == [300]


async def test_a_capture_stripe_refuses_in_the_intents_state_is_a_conflict(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    # Canceled in the dashboard (or its authorization expired) before the webhook told us.
    authorized = await provider.pay(PaymentRequest("cmd-auth-c", 1000, "usd", "pm_card_visa", capture=False))
    assert authorized.reference is not None
    unexpected = {
        "type": "invalid_request_error",
        "code": "payment_intent_unexpected_state",
        "message": "This PaymentIntent's amount could not be captured because it has a status of canceled.",
    }
    wire.fail_next(400, unexpected)

    captured = await provider.capture(PaymentRef(authorized.reference, 1000, 0, "usd"), 1000, "cmd-capture-c")

    assert captured.outcome is Outcome.PERMANENT
    assert captured.details["conflict"] == "payment_intent_unexpected_state"


async def test_a_pending_refund_is_accepted_and_says_it_is_pending(
    wire: StripeWireServer, provider: StripeProvider
) -> None:
    charged = await provider.pay(charge("cmd-charge-p"))
    assert charged.reference is not None
    wire.refund_status = "pending"

    refunded = await provider.refund(PaymentRef(charged.reference, 1000, 1000, "usd"), 300, "cmd-refund-p", None)

    assert refunded.outcome is Outcome.APPROVED
    assert (refunded.details["refund_status"], refunded.amount) == ("pending", 300)


# ---- the key never leaks -----------------------------------------------------------------------------------------


async def test_the_api_key_never_appears_in_logs_results_or_messages(
    wire: StripeWireServer, log_lines: Callable[[], list[str]], fresh_authentication_alarm: None
) -> None:
    results: list[ProviderResult] = []
    adapter = StripeProvider(API_KEY, api_base=wire.base_url, timeout_s=TIMEOUT_S)
    wrong = StripeProvider(WRONG_KEY, api_base=wire.base_url, timeout_s=TIMEOUT_S)
    try:
        results.append(await adapter.pay(charge("cmd-ok")))
        results.append(await adapter.pay(charge("cmd-declined", method="pm_card_chargeDeclinedInsufficientFunds")))
        results.append(await adapter.pay(charge("cmd-unknown", method="pm_unknown")))
        wire.fail_next(429, RATE_LIMITED)
        results.append(await adapter.pay(charge("cmd-429")))
        wire.fail_next(500, SERVER_ERROR)
        results.append(await adapter.pay(charge("cmd-500")))
        # A hostile answer that echoes the key in full: still scrubbed.
        wire.fail_next(400, {"type": "invalid_request_error", "param": "amount", "message": f"Bad key {API_KEY}"})
        results.append(await adapter.pay(charge("cmd-echo")))
        wire.stall_next(TIMEOUT_S * 2)
        results.append(await adapter.pay(charge("cmd-timeout")))
        results.append(await wrong.pay(charge("cmd-wrong-key")))
    finally:
        await adapter.close()
        await wrong.close()

    outcomes = {r.outcome for r in results}
    assert outcomes == {Outcome.APPROVED, Outcome.DECLINED, Outcome.PERMANENT, Outcome.RETRYABLE}
    for secret in (API_KEY, WRONG_KEY):
        assert all(secret not in repr(result) for result in results)
    lines = log_lines()
    assert any("Stripe v1 API error received" in line for line in lines)  # the SDK did log the error bodies
    logged = "\n".join(lines)
    for secret in (API_KEY, WRONG_KEY, API_KEY.removeprefix("sk_test_"), WRONG_KEY.removeprefix("sk_test_")):
        assert secret not in logged
