"""What a Stripe object (as a plain dict) says about our request: the `ProviderResult` for it.

Pure: no I/O. Works on `StripeObject.to_dict()` output, and tolerates both real Stripe's shapes (expandable
fields as ids, periods on subscription items since API version 2025-03-31) and localstripe's (expandable fields
expanded, periods on the subscription).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payments_shared.providers.port import Outcome, ProviderResult
from payments_shared.providers.stripe_errors import safe_message

# Stripe subscription status → API.md's six.
# incomplete_expired: the first invoice was never paid and Stripe ended the subscription: final, like canceled.
# paused: a trial ended without a payment method; nothing is billed until one is added: the customer owes us a
# payment method, which API.md calls unpaid ("in place, not being paid").
SUBSCRIPTION_STATUS = {
    "incomplete": "incomplete",
    "incomplete_expired": "canceled",
    "trialing": "trialing",
    "active": "active",
    "past_due": "past_due",
    "unpaid": "unpaid",
    "canceled": "canceled",
    "paused": "unpaid",
}


def object_id(value: Any) -> str | None:
    """The id of an expandable field, whether Stripe sent the id or the expanded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _card_details(intent: Mapping[str, Any]) -> dict[str, Any]:
    method = intent.get("payment_method")
    if not isinstance(method, Mapping) or not isinstance(method.get("card"), Mapping):
        return {}
    card = method["card"]
    details = {"payment_method": method.get("id"), "card_brand": card.get("brand"), "card_last4": card.get("last4")}
    return {key: value for key, value in details.items() if value is not None}


def _intent_details(intent: Mapping[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {"payment_intent": intent["id"], "stripe_status": intent.get("status")}
    charge = object_id(intent.get("latest_charge"))
    if charge:
        details["charge"] = charge
    customer = object_id(intent.get("customer"))
    if customer:
        details["customer"] = customer
    return {**details, **_card_details(intent)}


def next_action(intent: Mapping[str, Any]) -> dict[str, Any]:
    """What the client needs to finish the payment: the action's type and its redirect or SDK hint.

    Never the client_secret: it lets whoever holds it confirm the payment, and API.md's bodies carry no secrets.
    """
    action = intent.get("next_action")
    if not isinstance(action, Mapping):
        return {"type": "unknown"}
    kind = str(action.get("type") or "unknown")
    shown: dict[str, Any] = {"type": kind}
    redirect = action.get("redirect_to_url")
    if isinstance(redirect, Mapping) and redirect.get("url"):
        shown["redirect_to_url"] = {"url": redirect["url"], "return_url": redirect.get("return_url")}
    sdk = action.get("use_stripe_sdk")
    if isinstance(sdk, Mapping):
        shown["use_stripe_sdk"] = {key: value for key, value in sdk.items() if "secret" not in key}
    return shown


def _declined_intent(intent: Mapping[str, Any], details: dict[str, Any]) -> ProviderResult:
    error = intent.get("last_payment_error")
    error = error if isinstance(error, Mapping) else {}
    code = error.get("decline_code") or error.get("code")
    if intent.get("status") == "canceled" and not code:
        code = str(intent.get("cancellation_reason") or "canceled")
    return ProviderResult(
        Outcome.DECLINED,
        reference=intent["id"],
        decline_code=str(code or "card_declined"),
        message=safe_message(error.get("message")) or "The payment was not completed.",
        details=details,
    )


def payment_result(intent: Mapping[str, Any], acted_amount: int | None = None) -> ProviderResult:
    """A PaymentIntent after create+confirm or capture. `acted_amount`: what we asked for, when Stripe omits it."""
    status = intent.get("status")
    details = _intent_details(intent)
    reference = str(intent["id"])
    if status == "succeeded":
        amount = intent.get("amount_received") or acted_amount or intent.get("amount")
        return ProviderResult(Outcome.APPROVED, reference, amount=amount, details={**details, "captured": True})
    if status == "requires_capture":
        amount = intent.get("amount_capturable") or acted_amount or intent.get("amount")
        return ProviderResult(Outcome.APPROVED, reference, amount=amount, details={**details, "captured": False})
    if status == "requires_action":
        return ProviderResult(
            Outcome.REQUIRES_ACTION, reference, next_action=next_action(intent), amount=intent.get("amount"),
            details=details,
        )  # fmt: skip
    if status == "processing":
        return ProviderResult(Outcome.PENDING_REVIEW, reference, amount=intent.get("amount"), details=details)
    if status in ("requires_payment_method", "canceled"):
        return _declined_intent(intent, details)
    return ProviderResult(
        Outcome.PERMANENT, reference, message=f"Stripe left the PaymentIntent in status {status}", details=details
    )


def void_result(intent: Mapping[str, Any]) -> ProviderResult:
    details = _intent_details(intent)
    if intent.get("status") == "canceled":
        return ProviderResult(Outcome.APPROVED, str(intent["id"]), amount=intent.get("amount"), details=details)
    return ProviderResult(
        Outcome.PERMANENT,
        str(intent["id"]),
        message=f"Stripe did not cancel the PaymentIntent (status {intent.get('status')})",
        details=details,
    )


def retrieved_payment(intent: Mapping[str, Any], latest_charge: Mapping[str, Any]) -> ProviderResult:
    """A PaymentIntent read back (a successful read, whatever the intent's state): its status, the amounts
    captured and refunded (the latest charge's), the latest charge's refunds when it lists them (`refunds`, a
    Stripe list, newest first), its last error, and the intent itself (`object`)."""
    received = intent.get("amount_received")
    if not isinstance(received, int):  # older API versions, localstripe: the charge says what it captured
        captured = latest_charge.get(
            "amount_captured", latest_charge.get("amount") if latest_charge.get("captured") else 0
        )
        received = captured if isinstance(captured, int) else 0
    refunded = latest_charge.get("amount_refunded")
    details: dict[str, Any] = {
        "status": intent.get("status"),
        "amount_received": received,
        "amount_refunded": refunded if isinstance(refunded, int) else 0,
        "object": dict(intent),
    }
    if isinstance(latest_charge.get("refunds"), Mapping):
        details["refunds"] = dict(latest_charge["refunds"])
    return ProviderResult(Outcome.APPROVED, reference=object_id(intent.get("id")), details=details)


def refund_result(refund: Mapping[str, Any]) -> ProviderResult:
    """A Refund. Card refunds are `succeeded` at once; `pending` ones complete later (a webhook says so)."""
    details: dict[str, Any] = {"refund": refund["id"], "refund_status": refund.get("status")}
    for field in ("payment_intent", "charge"):
        value = object_id(refund.get(field))
        if value:
            details[field] = value
    status = refund.get("status")
    if status in ("pending", "requires_action"):
        details["pending"] = True  # accepted; Stripe says later whether it reached the customer
    if status in ("succeeded", "pending", "requires_action"):
        return ProviderResult(Outcome.APPROVED, str(refund["id"]), amount=refund.get("amount"), details=details)
    reason = str(refund.get("failure_reason") or status or "refund_failed")
    return ProviderResult(
        Outcome.DECLINED, str(refund["id"]), decline_code=reason, message="Stripe could not refund", details=details
    )


def customer_result(customer: Mapping[str, Any], default_payment_method: str | None = None) -> ProviderResult:
    settings = customer.get("invoice_settings")
    default = object_id(settings.get("default_payment_method")) if isinstance(settings, Mapping) else None
    details = {"customer": customer["id"], "default_payment_method": default_payment_method or default}
    return ProviderResult(Outcome.APPROVED, str(customer["id"]), details=details)


def _first_item(subscription: Mapping[str, Any]) -> Mapping[str, Any]:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return data[0]
    return {}


def _pricing(item: Mapping[str, Any]) -> dict[str, Any]:
    """amount/currency/interval of the item's Plan or Price, and its id."""
    plan = item.get("plan")
    if isinstance(plan, Mapping):
        return {
            "price": plan.get("id"), "amount": plan.get("amount"), "currency": plan.get("currency"),
            "interval": plan.get("interval"), "interval_count": plan.get("interval_count"),
        }  # fmt: skip
    price = item.get("price")
    if isinstance(price, Mapping):
        recurring = price.get("recurring")
        recurring = recurring if isinstance(recurring, Mapping) else {}
        return {
            "price": price.get("id"), "amount": price.get("unit_amount"), "currency": price.get("currency"),
            "interval": recurring.get("interval"), "interval_count": recurring.get("interval_count"),
        }  # fmt: skip
    return {}


def subscription_status(stripe_status: str | None) -> str:
    return SUBSCRIPTION_STATUS.get(str(stripe_status), "incomplete")


def subscription_result(subscription: Mapping[str, Any]) -> ProviderResult:
    item = _first_item(subscription)
    details: dict[str, Any] = {
        "subscription": subscription["id"],
        "status": subscription_status(subscription.get("status")),
        "stripe_status": subscription.get("status"),
        "current_period_start": item.get("current_period_start", subscription.get("current_period_start")),
        "current_period_end": item.get("current_period_end", subscription.get("current_period_end")),
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
        "canceled_at": subscription.get("canceled_at"),
        "quantity": item.get("quantity", subscription.get("quantity")),
        **_pricing(item),
    }
    customer = object_id(subscription.get("customer"))
    if customer:
        details["customer"] = customer
    if item.get("id"):
        details["subscription_item"] = item["id"]
    cleaned = {key: value for key, value in details.items() if value is not None}
    return ProviderResult(Outcome.APPROVED, str(subscription["id"]), details=cleaned)
