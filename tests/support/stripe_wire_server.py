"""A small HTTP server speaking Stripe's wire format, for what localstripe cannot show.

Real socket, form-encoded requests, Stripe's JSON objects and error bodies (as documented at
https://docs.stripe.com/api/errors), and Stripe's idempotency rules: a POST's `Idempotency-Key` with the same
endpoint and parameters replays the first answer (with `Idempotent-Replayed: true`); with other parameters it is a
400 `idempotency_error`. It can be told to answer the next requests with a given status and error body (429, 500,
400, 401, 403…, before the request is executed, as a load balancer or Stripe's rate limiter would) or to execute the
next request and then stall before answering (the ambiguous failure a client timeout produces).

It knows PaymentIntents (create+confirm, capture, cancel, retrieve, list by `created` range and `customer`, Search
with a `metadata['key']:'value'` query) and their latest Charge (retrieve), Refunds (create, list by
`payment_intent`), Customers (create, update, delete, which cancels their subscriptions as Stripe's does, list by
`email` and `created`, Search as for PaymentIntents), PaymentMethod attach, Plans (create) and Subscriptions on one
Plan (create, update, cancel, list by `customer` and `created`; a deleted customer's list refused on request). Lists
and search results page as Stripe's do (`limit`, `starting_after`, `page`). Its invoices are made by the test
(`bill`, `pay`), as Stripe's renewals are: a subscription's status follows its latest invoice, `past_due` while that
one is unpaid.

Its clock can be moved on (`advance`): objects carry `created` by it, and an idempotency key is forgotten
`IDEMPOTENCY_KEY_KEPT_S` after its first use, as Stripe forgets them after 24 hours (a request with a forgotten key
is a new request). `pm_card_visa` is approved, `pm_card_chargeDeclinedInsufficientFunds` declined
(`insufficient_funds`), `pm_card_authenticationRequired` needs 3-D Secure; any other `pm_…` is a 400
`resource_missing` on `payment_method`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

# The test-mode key the wire server expects in tests/providers (a dummy: never a real key).
WIRE_API_KEY = "sk_test_51WireKeyNeverLeaks0123456789abcdef"

DECLINES = {"pm_card_chargeDeclinedInsufficientFunds": ("insufficient_funds", "Your card has insufficient funds.")}
THREE_D_SECURE = "pm_card_authenticationRequired"
APPROVED = "pm_card_visa"
IDEMPOTENCY_KEY_KEPT_S = 24 * 3600
MAX_METADATA_KEYS = 50  # Stripe refuses an object with more
ENDED = ("canceled", "incomplete_expired")  # a subscription's terminal statuses: not canceled again
_METADATA_QUERY = re.compile(r"^metadata\['(?P<key>[^']+)'\]:'(?P<value>(?:[^'\\]|\\.)*)'$")


def stripe_error(status: int, error: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": dict(error)}, status=status, headers=dict(headers or {}))


RATE_LIMITED = {
    "type": "invalid_request_error",
    "code": "rate_limit",
    "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
}
SERVER_ERROR = {"type": "api_error", "message": "An unknown error occurred"}


@dataclass
class Fault:
    status: int
    error: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    headers: Mapping[str, str]
    params: list[tuple[str, str]]


def _new_id(prefix: str) -> str:
    """Base62, as Stripe's ids are (hex ids hold Luhn-valid digit runs that a client sending one back would have
    refused as card data, about 1 in 2,000 at this length)."""
    return f"{prefix}_{''.join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))}"


def _masked(key: str) -> str:
    return f"{key[:8]}{'*' * max(len(key) - 12, 0)}{key[-4:]}"


class StripeWireServer:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.refund_status = "succeeded"  # control: what a new refund is (Stripe answers some "pending")
        self.customers: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.search_refused = False  # control: Search is not offered to this account (as to merchants in India)
        # control: a subscription list filtered by a deleted customer is refused ("No such customer"), as Stripe
        # refuses a list filtered by an object it no longer has
        self.deleted_customer_lists_refused = False
        self._faults: list[Fault] = []
        self._stalls: list[float] = []
        # key → (endpoint, fingerprint, answer, when first used)
        self._idempotent: dict[str, tuple[str, str, web.Response, float]] = {}
        self._clock_offset_s = 0.0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ---- control --------------------------------------------------------------------------------------------

    def fail_next(self, status: int, error: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        """Answer the next request with this error, without executing it."""
        self._faults.append(Fault(status, error, dict(headers or {})))

    def stall_next(self, seconds: float) -> None:
        """Execute the next request, then wait this long before answering."""
        self._stalls.append(seconds)

    def fail_refund(self, refund_id: str, reason: str = "expired_or_canceled_card") -> None:
        """Stripe fails a refund it accepted (a closed card account): the money stays with the merchant, and the
        charge no longer counts it as refunded."""
        self.refunds[refund_id].update(status="failed", failure_reason=reason)

    def bill(self, subscription_id: str, paid: bool) -> dict[str, Any]:
        """Stripe bills the subscription's next period: a new invoice, now its latest, charged at once (paid, or
        left open when the charge failed)."""
        subscription = self.subscriptions[subscription_id]
        item = subscription["items"]["data"][0]
        billed = len([i for i in self.invoices.values() if i["subscription"] == subscription_id])
        period_start = item["current_period_start"] + billed * 30 * 86400
        invoice: dict[str, Any] = {
            "id": _new_id("in"),
            "object": "invoice",
            "subscription": subscription_id,
            "amount_due": item["plan"]["amount"] * item["quantity"],
            "status": "open",
            "created": int(self.now()),
            "period_start": period_start,
            "period_end": period_start + 30 * 86400,
        }
        self.invoices[invoice["id"]] = invoice
        subscription["latest_invoice"] = invoice["id"]
        return self.pay(invoice["id"]) if paid else self._follow_latest_invoice(invoice)

    def pay(self, invoice_id: str) -> dict[str, Any]:
        """The invoice is paid (a retried charge, or the customer paid it late)."""
        invoice = self.invoices[invoice_id]
        invoice.update(status="paid", amount_paid=invoice["amount_due"])
        return self._follow_latest_invoice(invoice)

    def _follow_latest_invoice(self, invoice: dict[str, Any]) -> dict[str, Any]:
        """Stripe's subscription status follows its latest invoice only: paying an older one changes nothing."""
        subscription = self.subscriptions[invoice["subscription"]]
        if subscription["latest_invoice"] == invoice["id"] and subscription["status"] in ("active", "past_due"):
            subscription["status"] = "active" if invoice["status"] == "paid" else "past_due"
        return dict(invoice)

    def now(self) -> float:
        """The server's clock (unix seconds)."""
        return time.time() + self._clock_offset_s

    def advance(self, seconds: float) -> None:
        """Move the clock on: idempotency keys older than `IDEMPOTENCY_KEY_KEPT_S` by it are forgotten."""
        self._clock_offset_s += seconds

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- HTTP -----------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        params = parse_qsl(body, keep_blank_values=True) if request.method == "POST" else list(request.query.items())
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), params))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
            message = f"Invalid API Key provided: {_masked(presented)}"
            return stripe_error(401, {"type": "invalid_request_error", "message": message})
        if self._faults:
            fault = self._faults.pop(0)
            return stripe_error(fault.status, fault.error, fault.headers)
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key:
            answer = self._idempotent_answer(key, request, params)
        else:
            answer = self._execute(request.method, request.path, dict(params))
        if self._stalls:
            await asyncio.sleep(self._stalls.pop(0))
        return answer

    def _idempotent_answer(self, key: str, request: web.Request, params: list[tuple[str, str]]) -> web.Response:
        endpoint = f"{request.method} {request.path}"
        fingerprint = hashlib.sha256(json.dumps(sorted(params)).encode()).hexdigest()
        if key in self._idempotent and self.now() - self._idempotent[key][3] >= IDEMPOTENCY_KEY_KEPT_S:
            del self._idempotent[key]  # Stripe forgets a key after 24 hours: the request is a new one
        if key in self._idempotent:
            first_endpoint, first_fingerprint, first, _ = self._idempotent[key]
            if first_endpoint != endpoint:
                message = (
                    f"Keys for idempotent requests can only be used for the same endpoint they were first used for "
                    f"('{request.path}' vs '{first_endpoint.split(' ', 1)[1]}'). Try using a key other than "
                    f"'{key}' if you meant to execute a different request."
                )
                return stripe_error(400, {"type": "idempotency_error", "message": message})
            if first_fingerprint != fingerprint:
                message = (
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request."
                )
                return stripe_error(400, {"type": "idempotency_error", "message": message})
            replay = web.Response(body=first.body, status=first.status, content_type="application/json")
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        answer = self._execute(request.method, request.path, dict(params))
        self._idempotent[key] = (endpoint, fingerprint, answer, self.now())
        return answer

    def _execute(self, method: str, path: str, params: dict[str, str]) -> web.Response:
        parts = path.strip("/").split("/")
        match (method, parts):
            case ("POST", ["v1", "payment_intents"]):
                return self._create_intent(params)
            case ("POST", ["v1", "payment_intents", intent_id, "capture"]):
                return self._capture(intent_id, params)
            case ("POST", ["v1", "payment_intents", intent_id, "cancel"]):
                return self._cancel(intent_id)
            case ("POST", ["v1", "refunds"]):
                return self._refund(params)
            case ("GET", ["v1", "payment_intents", "search"]):
                return self._search(path, params, self.payment_intents.values())
            case ("GET", ["v1", "customers", "search"]):
                return self._search(path, params, self.customers.values())
            case ("GET", ["v1", "customers"]):
                return self._list(path, params, [c for c in self.customers.values() if _listed_customer(c, params)])
            case ("GET", ["v1", "payment_intents"]):
                return self._list_intents(path, params)
            case ("GET", ["v1", "refunds"]):
                return self._list(path, params, [r for r in self.refunds.values() if _listed_refund(r, params)])
            case ("POST", ["v1", "customers"]):
                return self._create_customer(params)
            case ("POST", ["v1", "customers", customer_id]):
                return self._update_customer(customer_id, params)
            case ("DELETE", ["v1", "customers", customer_id]):
                return self._delete_customer(customer_id)
            case ("POST", ["v1", "payment_methods", method_id, "attach"]):
                return self._attach(method_id, params)
            case ("POST", ["v1", "plans"]):
                return self._create_plan(params)
            case ("POST", ["v1", "subscriptions"]):
                return self._create_subscription(params)
            case ("POST", ["v1", "subscriptions", subscription_id]):
                return self._update_subscription(subscription_id, params)
            case ("DELETE", ["v1", "subscriptions", subscription_id]):
                return self._cancel_subscription(subscription_id)
            case ("GET", ["v1", "subscriptions", subscription_id]):
                found = self.subscriptions.get(subscription_id)
                return web.json_response(found) if found else self._missing("subscription", subscription_id)
            case ("GET", ["v1", "subscriptions"]):
                customer = params.get("customer")
                if customer is not None and customer not in self.customers and self.deleted_customer_lists_refused:
                    return self._missing("customer", customer, "customer")
                listed = [s for s in self.subscriptions.values() if _listed_subscription(s, params)]
                return self._list(path, params, listed)
            case ("GET", ["v1", "payment_intents", intent_id]):
                intent = self.payment_intents.get(intent_id)
                return web.json_response(intent) if intent else self._missing("payment_intent", intent_id)
            case ("GET", ["v1", "charges", charge_id]):
                expand = [value for name, value in params.items() if name.startswith("expand")]
                return self._charge(charge_id, expand)
        return stripe_error(404, {"type": "invalid_request_error", "message": f"Unrecognized request URL ({path})."})

    # ---- objects --------------------------------------------------------------------------------------------

    def _missing(self, what: str, object_id: str, param: str = "id") -> web.Response:
        error = {"type": "invalid_request_error", "code": "resource_missing", "param": param}
        return stripe_error(404, {**error, "message": f"No such {what}: '{object_id}'"})

    def _create_intent(self, params: dict[str, str]) -> web.Response:
        method = params.get("payment_method", "")
        if method != APPROVED and method != THREE_D_SECURE and method not in DECLINES:
            return self._missing("PaymentMethod", method, "payment_method")
        intent: dict[str, Any] = {
            "id": _new_id("pi"),
            "object": "payment_intent",
            "created": int(self.now()),
            "amount": int(params["amount"]),
            "amount_capturable": 0,
            "amount_received": 0,
            "currency": params["currency"],
            "capture_method": params.get("capture_method", "automatic_async"),
            "client_secret": "",
            "customer": params.get("customer"),
            "latest_charge": None,
            "last_payment_error": None,
            "metadata": _created_metadata(params),
            "next_action": None,
            "payment_method": method,
            "status": "requires_confirmation",
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self.payment_intents[intent["id"]] = intent
        if params.get("confirm") != "true":
            return web.json_response(intent)
        if method in DECLINES:
            decline_code, message = DECLINES[method]
            charge = _new_id("ch")
            error = {"type": "card_error", "code": "card_declined", "decline_code": decline_code, "message": message}
            intent.update(status="requires_payment_method", latest_charge=charge, last_payment_error=error)
            return stripe_error(402, {**error, "charge": charge, "payment_intent": intent, "param": ""})
        if method == THREE_D_SECURE:
            intent.update(
                status="requires_action",
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": "https://hooks.stripe.com/x"},
                },
            )
            return web.json_response(intent)
        intent["latest_charge"] = _new_id("ch")
        if intent["capture_method"] == "manual":
            intent.update(status="requires_capture", amount_capturable=intent["amount"])
        else:
            intent.update(status="succeeded", amount_received=intent["amount"])
        return web.json_response(intent)

    def _capture(self, intent_id: str, params: dict[str, str]) -> web.Response:
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            return self._missing("payment_intent", intent_id)
        if intent["status"] != "requires_capture":
            message = f"This PaymentIntent could not be captured because it has a status of {intent['status']}."
            error = {"type": "invalid_request_error", "code": "payment_intent_unexpected_state", "message": message}
            return stripe_error(400, error)
        amount = int(params.get("amount_to_capture", intent["amount"]))
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return web.json_response(intent)

    def _cancel(self, intent_id: str) -> web.Response:
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            return self._missing("payment_intent", intent_id)
        if intent["status"] in ("succeeded", "canceled"):
            message = f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}."
            error = {"type": "invalid_request_error", "code": "payment_intent_unexpected_state", "message": message}
            return stripe_error(400, error)
        intent.update(status="canceled", amount_capturable=0, cancellation_reason=None)
        return web.json_response(intent)

    def _charge(self, charge_id: str, expand: Sequence[str] = ()) -> web.Response:
        """An intent's latest charge, as far as this server keeps one: what was captured and refunded of it, and its
        refunds (all, failed ones too, newest first) when `refunds` is expanded: API versions from 2022-11-15 leave
        them out otherwise."""
        intent = next((i for i in self.payment_intents.values() if i["latest_charge"] == charge_id), None)
        if intent is None:
            return self._missing("charge", charge_id)
        refunds = [r for r in self.refunds.values() if r["charge"] == charge_id]
        refunded = sum(r["amount"] for r in refunds if _counts(r))
        charge = {"id": charge_id, "object": "charge", "payment_intent": intent["id"], "amount": intent["amount"]}
        charge.update(amount_captured=intent["amount_received"], amount_refunded=refunded)
        if "refunds" in expand:
            listed = sorted(refunds, key=lambda refund: refund["created"])[::-1]  # in a second: as made
            url = f"/v1/charges/{charge_id}/refunds"
            charge["refunds"] = {"object": "list", "data": listed, "has_more": False, "url": url}
        return web.json_response(charge)

    def _refund(self, params: dict[str, str]) -> web.Response:
        intent = self.payment_intents.get(params.get("payment_intent", ""))
        if intent is None:
            return self._missing("payment_intent", params.get("payment_intent", ""), "payment_intent")
        refunded = sum(r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"] and _counts(r))
        amount = int(params.get("amount", intent["amount_received"] - refunded))
        if refunded + amount > intent["amount_received"]:
            message = f"Refund amount ({amount}) is greater than unrefunded amount on charge."
            error = {"type": "invalid_request_error", "code": "amount_too_large", "param": "amount"}
            return stripe_error(400, {**error, "message": message})
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "created": int(self.now()),
            "amount": amount,
            "metadata": _created_metadata(params),
            "charge": intent["latest_charge"],
            "payment_intent": intent["id"],
            "status": self.refund_status,
        }
        self.refunds[refund["id"]] = refund
        return web.json_response(refund)

    def _list(self, path: str, params: dict[str, str], objects: list[dict[str, Any]]) -> web.Response:
        """A Stripe list: newest first, `limit` (default 10) after `starting_after`."""
        ordered = sorted(objects, key=lambda item: item["created"], reverse=True)
        after = params.get("starting_after")
        if after:
            ids = [item["id"] for item in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        limit = int(params.get("limit", 10))
        return web.json_response(
            {"object": "list", "data": ordered[:limit], "has_more": len(ordered) > limit, "url": path}
        )

    def _list_intents(self, path: str, params: dict[str, str]) -> web.Response:
        gte = int(params.get("created[gte]", 0))
        lte = int(params.get("created[lte]", 2**62))
        customer = params.get("customer")
        listed = [
            intent
            for intent in self.payment_intents.values()
            if gte <= intent["created"] <= lte and (customer is None or intent["customer"] == customer)
        ]
        return self._list(path, params, listed)

    def _search(self, path: str, params: dict[str, str], objects: Iterable[dict[str, Any]]) -> web.Response:
        """Search (https://docs.stripe.com/api/payment_intents/search): only the `metadata['k']:'v'` clause."""
        if self.search_refused:
            message = "Search is not supported on api.stripe.com in India."
            return stripe_error(400, {"type": "invalid_request_error", "message": message})
        clause = _METADATA_QUERY.match(params.get("query", ""))
        if clause is None:
            message = f"Unsupported query for this test server: {params.get('query')!r}"
            return stripe_error(400, {"type": "invalid_request_error", "param": "query", "message": message})
        value = re.sub(r"\\(.)", r"\1", clause["value"])
        found = [item for item in objects if item["metadata"].get(clause["key"]) == value]
        found.sort(key=lambda item: item["created"], reverse=True)
        start = int(params.get("page") or 0)
        limit = int(params.get("limit", 10))
        more = len(found) > start + limit
        result = {
            "object": "search_result",
            "data": found[start : start + limit],
            "has_more": more,
            "next_page": str(start + limit) if more else None,
            "url": path,
        }
        return web.json_response(result)

    def _create_customer(self, params: dict[str, str]) -> web.Response:
        customer: dict[str, Any] = {
            "id": _new_id("cus"),
            "object": "customer",
            "created": int(self.now()),
            "email": params.get("email"),
            "name": params.get("name"),
            "phone": params.get("phone"),
            "description": params.get("description"),
            "invoice_settings": {"default_payment_method": None},
            "metadata": _created_metadata(params),
        }
        self.customers[customer["id"]] = customer
        return web.json_response(customer)

    def _update_customer(self, customer_id: str, params: dict[str, str]) -> web.Response:
        customer = self.customers.get(customer_id)
        if customer is None:
            return self._missing("customer", customer_id)
        refused = _merge_metadata(customer, params)
        if refused is not None:
            return refused
        for key, value in params.items():
            if key == "invoice_settings[default_payment_method]":
                customer["invoice_settings"] = {"default_payment_method": value}
            elif "[" not in key:
                customer[key] = value
        return web.json_response(customer)

    def _delete_customer(self, customer_id: str) -> web.Response:
        """Deleted, and its subscriptions canceled now, as Stripe cancels a deleted customer's."""
        if self.customers.pop(customer_id, None) is None:
            return self._missing("customer", customer_id)
        for subscription in self.subscriptions.values():
            if subscription["customer"] == customer_id and subscription["status"] not in ENDED:
                subscription.update(status="canceled", canceled_at=int(self.now()), cancel_at_period_end=False)
        return web.json_response({"id": customer_id, "object": "customer", "deleted": True})

    def _attach(self, method_id: str, params: dict[str, str]) -> web.Response:
        customer = params.get("customer", "")
        if customer not in self.customers:
            return self._missing("customer", customer, "customer")
        attached = _new_id("pm") if method_id == APPROVED else method_id  # test tokens become new objects
        return web.json_response({"id": attached, "object": "payment_method", "customer": customer})

    def _create_plan(self, params: dict[str, str]) -> web.Response:
        plan: dict[str, Any] = {
            "id": _new_id("plan"),
            "object": "plan",
            "amount": int(params["amount"]),
            "currency": params["currency"],
            "interval": params["interval"],
            "interval_count": int(params.get("interval_count", 1)),
        }
        self.plans[plan["id"]] = plan
        return web.json_response(plan)

    def _create_subscription(self, params: dict[str, str]) -> web.Response:
        """A subscription on one Plan, `active` (its first invoice paid) or `trialing`."""
        customer = params.get("customer", "")
        if customer not in self.customers:
            return self._missing("customer", customer, "customer")
        plan = self.plans.get(params.get("items[0][plan]", ""))
        if plan is None:
            return self._missing("plan", params.get("items[0][plan]", ""), "items[0][plan]")
        now = int(self.now())
        item = {
            "id": _new_id("si"),
            "object": "subscription_item",
            "plan": plan,
            "quantity": int(params.get("items[0][quantity]", 1)),
            "current_period_start": now,
            "current_period_end": now + 30 * 86400,
        }
        subscription: dict[str, Any] = {
            "id": _new_id("sub"),
            "object": "subscription",
            "created": now,
            "customer": customer,
            "status": "trialing" if params.get("trial_period_days") else "active",
            "cancel_at_period_end": False,
            "canceled_at": None,
            "default_payment_method": params.get("default_payment_method"),
            "items": {"object": "list", "data": [item], "has_more": False},
            "metadata": _created_metadata(params),
            "latest_invoice": None,
        }
        self.subscriptions[subscription["id"]] = subscription
        return web.json_response(subscription)

    def _update_subscription(self, subscription_id: str, params: dict[str, str]) -> web.Response:
        """Metadata merged as Stripe merges it (a value of "" removes its key; at most 50 keys), the quantity,
        `cancel_at_period_end`."""
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            return self._missing("subscription", subscription_id)
        refused = _merge_metadata(subscription, params)
        if refused is not None:
            return refused
        if "items[0][quantity]" in params:
            subscription["items"]["data"][0]["quantity"] = int(params["items[0][quantity]"])
        if "cancel_at_period_end" in params:
            subscription["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
        return web.json_response(subscription)

    def _cancel_subscription(self, subscription_id: str) -> web.Response:
        """Canceled now; canceling it again is refused, as Stripe refuses it."""
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            return self._missing("subscription", subscription_id)
        if subscription["status"] in ENDED:
            message = f"This subscription is already canceled: {subscription_id}"
            return stripe_error(400, {"type": "invalid_request_error", "message": message})
        subscription.update(status="canceled", canceled_at=int(self.now()), cancel_at_period_end=False)
        return web.json_response(subscription)


@contextlib.contextmanager
def running_stripe_wire(api_key: str) -> Iterator[StripeWireServer]:
    """The server on an event loop of its own thread, for synchronous tests (the workers call it over HTTP)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="stripe-wire", daemon=True)
    thread.start()
    wire = StripeWireServer(api_key)
    asyncio.run_coroutine_threadsafe(wire.start(), loop).result(timeout=10)
    try:
        yield wire
    finally:
        asyncio.run_coroutine_threadsafe(wire.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _metadata(params: Mapping[str, str]) -> dict[str, str]:
    return {key[9:-1]: value for key, value in params.items() if key.startswith("metadata[")}


def _created_metadata(params: Mapping[str, str]) -> dict[str, str]:
    """A new object's metadata as Stripe stores it: a key sent with an empty value is not set."""
    return {key: value for key, value in _metadata(params).items() if value}


def _merge_metadata(stripe_object: dict[str, Any], params: Mapping[str, str]) -> web.Response | None:
    """The update's metadata merged as Stripe merges it (a value of "" removes its key; at most 50 keys), or
    Stripe's refusal."""
    metadata = dict(stripe_object["metadata"])
    for key, value in _metadata(params).items():
        if value:
            metadata[key] = value
        else:
            metadata.pop(key, None)
    if len(metadata) > MAX_METADATA_KEYS:
        message = f"Metadata can have up to {MAX_METADATA_KEYS} keys."
        return stripe_error(400, {"type": "invalid_request_error", "param": "metadata", "message": message})
    stripe_object["metadata"] = metadata
    return None


def _listed_customer(customer: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    email = params.get("email")
    created_from, created_to = int(params.get("created[gte]", 0)), int(params.get("created[lte]", 2**62))
    created = int(customer["created"])
    return (email is None or customer["email"] == email) and created_from <= created <= created_to


def _listed_subscription(subscription: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    customer = params.get("customer")
    created_from, created_to = int(params.get("created[gte]", 0)), int(params.get("created[lte]", 2**62))
    created = int(subscription["created"])
    return (customer is None or subscription["customer"] == customer) and created_from <= created <= created_to


def _counts(refund: Mapping[str, Any]) -> bool:
    """A failed or canceled refund gives the money back: the charge no longer counts it."""
    return refund["status"] not in ("failed", "canceled")


def _listed_refund(refund: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    wanted = params.get("payment_intent")
    return wanted is None or refund["payment_intent"] == wanted
