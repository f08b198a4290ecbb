"""The adapters' reads used before a webhook is applied (a payload may be stale): `retrieve_payment` and
`retrieve_customer`, against localstripe and the Authorize.net test server over real sockets."""

from __future__ import annotations

from typing import Any

from payments_shared.providers.authnet.provider import AuthorizeNetProvider
from payments_shared.providers.port import CustomerRequest, OpaqueData, Outcome, PaymentRef, PaymentRequest
from payments_shared.providers.stripe import StripeProvider

from tests.authnet_server import fixture
from tests.authnet_server.server import AuthnetTestServer

authnet_server = fixture.authnet_server
authnet = fixture.authnet


async def test_stripe_retrieve_payment_reads_the_intent_and_its_refunds(stripe_provider: StripeProvider) -> None:
    paid = await stripe_provider.pay(PaymentRequest("cmd-read-pay", 1500, "usd", "pm_card_visa", capture=True))
    assert paid.reference is not None
    refunded = await stripe_provider.refund(PaymentRef(paid.reference, 1500, 1500, "usd"), 400, "cmd-read-refund", None)
    read = await stripe_provider.retrieve_payment(paid.reference)
    assert read.outcome is Outcome.APPROVED and read.reference == paid.reference
    assert (read.details["status"], read.details["amount_received"], read.details["amount_refunded"]) == (
        "succeeded",
        1500,
        400,
    )
    # The charge's refunds, newest first: what a refunded total is made of.
    assert [(r["id"], r["amount"]) for r in read.details["refunds"]["data"]] == [(refunded.reference, 400)]
    intent: dict[str, Any] = read.details["object"]
    assert intent["id"] == paid.reference
    unknown = await stripe_provider.retrieve_payment("pi_nobody")
    assert unknown.outcome is not Outcome.APPROVED


async def test_stripe_retrieve_customer_reads_the_customer(stripe_provider: StripeProvider) -> None:
    created = await stripe_provider.create_customer(CustomerRequest("cmd-read-cus", email="r@example.com", name="R"))
    assert created.reference is not None
    read = await stripe_provider.retrieve_customer(created.reference)
    assert read.outcome is Outcome.APPROVED
    assert (read.details["object"]["email"], read.details["object"]["name"]) == ("r@example.com", "R")


async def test_authnet_retrieve_payment_names_a_refunds_original(
    authnet: AuthorizeNetProvider, authnet_server: AuthnetTestServer
) -> None:
    method = OpaqueData("COMMON.ACCEPT.INAPP.PAYMENT", "tok-read-4242")
    charged = await authnet.pay(PaymentRequest("cmd-read-charge", 1099, "usd", method, capture=True))
    assert charged.reference is not None
    authnet_server.settle()
    refund = await authnet.refund(
        PaymentRef(charged.reference, 1099, 1099, "usd", dict(charged.details)), 600, "r", None
    )
    assert refund.reference is not None
    read = await authnet.retrieve_payment(refund.reference, "usd")
    assert read.outcome is Outcome.APPROVED
    assert (read.details["ref_trans_id"], read.details["transaction_type"]) == (charged.reference, "refundTransaction")
    assert 600 in (read.details.get("settle_amount"), read.details.get("auth_amount"))
    original = await authnet.retrieve_payment(charged.reference)
    assert original.details["ref_trans_id"] is None
    assert (await authnet.retrieve_payment("999999")).outcome is not Outcome.APPROVED


async def test_authnet_retrieve_customer_reads_the_profile(authnet: AuthorizeNetProvider) -> None:
    created = await authnet.create_customer(
        CustomerRequest("cmd-read-profile", email="p@example.com", description="VIP")
    )
    assert created.reference is not None
    read = await authnet.retrieve_customer(created.reference)
    assert read.outcome is Outcome.APPROVED
    assert (read.details["email"], read.details["description"]) == ("p@example.com", "VIP")
    assert (await authnet.retrieve_customer("999999")).outcome is not Outcome.APPROVED
