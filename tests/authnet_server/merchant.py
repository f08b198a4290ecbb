"""What the merchant does in Authorize.net's own interface, outside this system: played by the project's adapter
as a separate client of the test server (it calls Authorize.net as the merchant interface does)."""

from __future__ import annotations

import uuid

from payments_shared.providers.authnet.provider import AuthorizeNetProvider
from payments_shared.providers.port import Outcome, PaymentRef, SubscriptionRequest

from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY


async def refund_in_merchant_interface(url: str, transaction_reference: str, captured: int, amount: int) -> str:
    """Refund `amount` (minor units, USD) of the captured transaction; the refund's transId."""
    merchant = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, url)
    try:
        original = PaymentRef(transaction_reference, captured, captured, "usd")
        refund = await merchant.refund(original, amount, f"outside-{uuid.uuid4().hex}", None)
    finally:
        await merchant.close()
    assert refund.outcome is Outcome.APPROVED and refund.reference is not None
    return refund.reference


async def void_in_merchant_interface(url: str, trans_id: str, amount: int) -> None:
    """Void the unsettled transaction `trans_id` (a refund, too: it is a transaction of its own)."""
    merchant = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, url)
    try:
        voided = await merchant.void(PaymentRef(trans_id, amount, amount, "usd"), f"outside-{uuid.uuid4().hex}")
    finally:
        await merchant.close()
    assert voided.outcome is Outcome.APPROVED, voided


async def subscribe_in_merchant_interface(url: str, customer_profile_id: str, payment_profile: str) -> str:
    """An ARB subscription of $9.00 a month on the customer payment profile ('<customerProfileId>/<paymentProfileId>'),
    made outside this system; its id."""
    merchant = AuthorizeNetProvider(LOGIN_ID, TRANSACTION_KEY, url)
    try:
        request = SubscriptionRequest(
            idempotency_key=f"outside-{uuid.uuid4().hex}",
            customer_reference=customer_profile_id,
            amount=900,
            currency="usd",
            interval="month",
            interval_count=1,
            quantity=1,
            payment_method=payment_profile,
        )
        subscribed = await merchant.create_subscription(request)
    finally:
        await merchant.close()
    assert subscribed.outcome is Outcome.APPROVED and subscribed.reference is not None, subscribed
    return subscribed.reference
