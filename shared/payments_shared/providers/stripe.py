"""The Stripe adapter: PaymentIntents, Refunds, Customers, Plans and Subscriptions through the official SDK.

Every POST carries an idempotency key derived from our command id (the command id itself for the step that moves
money or creates the object the command is about, `<id>:<step>` for the preparatory steps), so a redelivered
command replays Stripe's stored answers instead of acting twice. The SDK does not retry (`max_network_retries=0`):
the resilience layer does, with the same keys. Only `*_async` calls: nothing blocks the event loop.

Stripe objects are turned into plain dicts at once and read by the pure mappers in `stripe_results`; Stripe's
errors become results in `stripe_errors`. The adapter never raises for what Stripe answered.

Stripe forgets an idempotency key after 24 hours: a payment, refund, customer or subscription re-driven later first
looks for what its earlier attempt made (`stripe_redrive`), so money still moves once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import stripe
from stripe.params import (
    CustomerCreateParams,
    CustomerListParams,
    CustomerSearchParams,
    CustomerUpdateParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentRetrieveParams,
    PaymentIntentSearchParams,
    PlanCreateParams,
    RefundCreateParams,
    RefundListParams,
    SubscriptionCreateParams,
    SubscriptionCreateParamsItem,
    SubscriptionListParams,
    SubscriptionUpdateParams,
    SubscriptionUpdateParamsItem,
)

from payments_shared.logging import register_secret
from payments_shared.money import MAX_AMOUNT
from payments_shared.providers import stripe_errors, stripe_redrive, stripe_results
from payments_shared.providers.port import (
    CustomerRequest,
    OpaqueData,
    Outcome,
    PaymentMethod,
    PaymentRef,
    PaymentRequest,
    ProviderResult,
    SubscriptionChange,
    SubscriptionRequest,
)
from payments_shared.settings import ProviderSettings

log = logging.getLogger(__name__)

Created = dict[str, str]  # ids of the Stripe objects an operation created, recorded on the event
_STRIPE_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_authentication_failure_logged = False  # once per process, whatever the number of adapters
_PAGE: Final = 100  # Stripe's largest list and search page
_EXPAND_LISTED_METHOD: Final = ["data.payment_method"]  # card details, as the create's `expand` gives them


class _Refused(Exception):
    """Raised inside an operation when we can tell, without asking Stripe, that it cannot be done."""

    def __init__(self, result: ProviderResult) -> None:
        super().__init__(result.message)
        self.result = result


def _once(key: str) -> stripe.RequestOptions:
    return {"idempotency_key": key}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _stripe_payment_method(method: PaymentMethod, field: str = "payment_method") -> str:
    if isinstance(method, OpaqueData):
        raise _Refused(
            ProviderResult(
                Outcome.PERMANENT,
                message="Stripe takes a PaymentMethod id (pm_…), not Accept.js opaque data",
                details={"invalid_param": field},
            )
        )
    return method


def _is_price_id(price: str) -> bool:
    """A Price id goes as `price`; anything else is a Plan id (Plans may carry custom ids), sent as `plan`."""
    return price.startswith("price_")


def _plan_name(amount: int, currency: str, interval: str, interval_count: int) -> str:
    every = interval if interval_count == 1 else f"{interval_count} {interval}s"
    return f"{amount} {currency} every {every}"


class StripeProvider:
    """Implements `PaymentProvider` and `BillingProvider` against Stripe (or a Stripe-compatible emulator)."""

    name = "stripe"

    def __init__(self, api_key: str, *, api_base: str | None = None, timeout_s: float = 10.0) -> None:
        register_secret(api_key)
        self._http = stripe.HTTPXClient(timeout=timeout_s)
        client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            base_addresses={"api": api_base.rstrip("/")} if api_base else {},
            max_network_retries=0,
        )
        self._v1 = client.v1

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> StripeProvider:
        if settings.missing_credentials("stripe"):
            raise ValueError("STRIPE_API_KEY is not set")
        assert settings.stripe_api_key  # what missing_credentials checked
        return cls(settings.stripe_api_key, api_base=settings.stripe_api_base, timeout_s=settings.provider_timeout_s)

    async def close(self) -> None:
        """Close the HTTP connections (the registry's `close_providers` calls this)."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # ---- payments -------------------------------------------------------------------------------------------

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        return await self._guard(lambda created: self._pay(request))

    def asks_claims(self, earlier_attempt_at: datetime, within_s: float) -> bool:
        """Whether a payment re-drive made within `within_s` seconds may look for its earlier attempt's intent (and
        ask `claims` of what it finds): when Stripe may have forgotten the key by then (`AsksClaims`)."""
        return stripe_redrive.key_may_be_forgotten(earlier_attempt_at, _utc_now() + timedelta(seconds=within_s))

    async def capture(self, payment: PaymentRef, amount: int, idempotency_key: str) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            try:
                captured = await self._v1.payment_intents.capture_async(
                    payment.reference, {"amount_to_capture": amount}, _once(idempotency_key)
                )
                intent = captured.to_dict()
            except stripe.InvalidRequestError as refusal:
                intent = await self._done_already(payment.reference, refusal, stripe_redrive.captured_as(amount))
            return stripe_results.payment_result(intent, acted_amount=amount)

        return await self._guard(run)

    async def refund(
        self,
        payment: PaymentRef,
        amount: int,
        idempotency_key: str,
        reason: str | None,
        earlier_attempt_at: datetime | None = None,
    ) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            if stripe_redrive.key_may_be_forgotten(earlier_attempt_at, _utc_now()):
                earlier = await self._earlier_refunds(payment.reference, idempotency_key)
                if len(earlier) > 1:
                    return _unresolved("Refund", earlier, idempotency_key)
                if earlier:
                    return stripe_results.refund_result(earlier[0])
            params = _refund_params(payment.reference, amount, idempotency_key, reason)
            return stripe_results.refund_result(await self._create_refund(params, idempotency_key, earlier_attempt_at))

        return stripe_errors.refund_refusal(await self._guard(run))

    async def void(self, payment: PaymentRef, idempotency_key: str) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            try:
                canceled = await self._v1.payment_intents.cancel_async(payment.reference, None, _once(idempotency_key))
                intent = canceled.to_dict()
            except stripe.InvalidRequestError as refusal:
                intent = await self._done_already(payment.reference, refusal, stripe_redrive.canceled)
            return stripe_results.void_result(intent)

        return await self._guard(run)

    async def retrieve_payment(self, reference: str, currency: str | None = None) -> ProviderResult:
        """The PaymentIntent as Stripe holds it now (a read: nothing moves; `currency` is not needed, Stripe's
        amounts are minor units). APPROVED means the read succeeded: the intent's state is in `details`."""

        async def run(created: Created) -> ProviderResult:
            intent = (await self._v1.payment_intents.retrieve_async(reference)).to_dict()
            return stripe_results.retrieved_payment(intent, await self._latest_charge(intent))

        return await self._guard(run)

    async def payment_made(self, reference: str) -> ProviderResult:
        """The PaymentIntent `reference` as the outcome of the payment that made it (what its create answered, as of
        now): an operator adopting it for a payment whose re-drive was left unresolved. A read: nothing moves."""

        async def run(created: Created) -> ProviderResult:
            expand: PaymentIntentRetrieveParams = {"expand": ["payment_method"]}  # card details, as the create's
            intent = (await self._v1.payment_intents.retrieve_async(reference, expand)).to_dict()
            return stripe_results.payment_result(intent)

        return await self._guard(run)

    async def _done_already(
        self, reference: str, refusal: stripe.InvalidRequestError, done: Callable[[Mapping[str, Any]], bool]
    ) -> dict[str, Any]:
        """The intent, when Stripe refused a capture or void in its present state because that is the state the
        operation leads to: an earlier attempt's, whose answer was lost and whose key Stripe has forgotten (24 h).
        Any other refusal stands."""
        if refusal.code != stripe_redrive.UNEXPECTED_STATE:
            raise refusal
        intent = (await self._v1.payment_intents.retrieve_async(reference)).to_dict()
        if not done(intent):
            raise refusal
        return dict(intent)

    async def _latest_charge(self, intent: dict[str, Any]) -> dict[str, Any]:
        latest = intent.get("latest_charge")
        if isinstance(latest, str) and latest:  # its refunds too: API versions from 2022-11-15 list them if expanded
            return (await self._v1.charges.retrieve_async(latest, {"expand": ["refunds"]})).to_dict()
        if isinstance(latest, dict):
            return latest
        listed = intent.get("charges")
        charges = listed.get("data") if isinstance(listed, dict) else None  # older API versions, localstripe
        return charges[0] if isinstance(charges, list) and charges and isinstance(charges[0], dict) else {}

    async def _pay(self, request: PaymentRequest) -> ProviderResult:
        params = _intent_params(request)
        if stripe_redrive.key_may_be_forgotten(request.earlier_attempt_at, _utc_now()):
            found, by_tag = await self._earlier_intents(request, params)
            earlier, contested = await _unclaimed(found, request)
            if len(earlier) > 1 or (earlier and contested and not by_tag):
                return _unresolved("PaymentIntent", earlier, request.idempotency_key)
            if earlier:
                return stripe_results.payment_result(earlier[0])
        create = self._v1.payment_intents.create_async
        intent = await _create_once(
            lambda sent: create(cast("PaymentIntentCreateParams", sent), _once(request.idempotency_key)),
            dict(params),
            request.earlier_attempt_at,
        )
        return stripe_results.payment_result(intent)

    async def _create_refund(
        self, params: RefundCreateParams, key: str, earlier_attempt_at: datetime | None
    ) -> dict[str, Any]:
        create = self._v1.refunds.create_async
        return await _create_once(
            lambda sent: create(cast("RefundCreateParams", sent), _once(key)), dict(params), earlier_attempt_at
        )

    async def _earlier_intents(
        self, request: PaymentRequest, params: PaymentIntentCreateParams
    ) -> tuple[list[Mapping[str, Any]], bool]:
        """The PaymentIntents an earlier attempt of `request` may have made, and whether they carry its tag: found by
        its tag, else (no room for the tag, or Search refused) among those created since the first attempt, by what
        we send (the tag too, when there was room for it; without it, another payment that sent the same made one
        that matches too)."""
        key = request.idempotency_key
        metadata = stripe_redrive.tagged(request.metadata, key)  # as `params` carries it
        if stripe_redrive.is_tagged(metadata, key):
            try:
                return stripe_redrive.tagged_objects(await self._searched_intents(key), key), True
            except stripe.InvalidRequestError as error:  # Search is not offered everywhere (not in India)
                _log_failure(error)
        assert request.earlier_attempt_at is not None  # key_may_be_forgotten said so
        sent = stripe_redrive.SentIntent(
            amount=request.amount,
            currency=request.currency.lower(),
            payment_method=params["payment_method"],
            capture=request.capture,
            customer=request.customer_reference,
            metadata=metadata,
        )
        listed = await self._listed_intents(request.earlier_attempt_at, request.customer_reference)
        return stripe_redrive.matching_intents(listed, sent), stripe_redrive.is_tagged(metadata, key)

    async def _searched_intents(self, key: str) -> list[dict[str, Any]]:
        search: PaymentIntentSearchParams = {
            "query": stripe_redrive.search_query(key), "limit": _PAGE, "expand": _EXPAND_LISTED_METHOD,
        }  # fmt: skip
        fetch = self._v1.payment_intents.search_async
        return await _all_results(lambda page: fetch(cast("PaymentIntentSearchParams", page)), dict(search))

    async def _listed_intents(self, earlier_attempt_at: datetime, customer: str | None) -> list[dict[str, Any]]:
        gte, lte = stripe_redrive.listing_window(earlier_attempt_at, _utc_now())
        listing: PaymentIntentListParams = {
            "created": {"gte": gte, "lte": lte}, "limit": _PAGE, "expand": _EXPAND_LISTED_METHOD,
        }  # fmt: skip
        if customer:
            listing["customer"] = customer
        fetch = self._v1.payment_intents.list_async
        return await _all_pages(lambda page: fetch(cast("PaymentIntentListParams", page)), dict(listing))

    async def _earlier_refunds(self, payment_intent: str, key: str) -> list[Mapping[str, Any]]:
        listing: RefundListParams = {"payment_intent": payment_intent, "limit": _PAGE}
        fetch = self._v1.refunds.list_async
        listed = await _all_pages(lambda page: fetch(cast("RefundListParams", page)), dict(listing))
        return stripe_redrive.tagged_objects(listed, key)

    # ---- customers ------------------------------------------------------------------------------------------

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            fields = _customer_fields(request)
            fields["metadata"] = stripe_redrive.tagged(request.metadata, request.idempotency_key)
            earlier = await self._earlier_customers(request, fields)
            if len(earlier) > 1:
                return _unresolved("Customer", earlier, request.idempotency_key)
            customer = dict(earlier[0]) if earlier else await self._new_customer(request, fields)
            created["customer"] = customer["id"]
            made = stripe_results.customer_result(customer)
            if request.payment_method is None or made.details["default_payment_method"]:
                return made  # an adopted customer with its default set: its first attempt did the rest
            default = await self._attach(customer["id"], request.payment_method, request.idempotency_key)
            created["default_payment_method"] = default
            updated = await self._v1.customers.update_async(
                customer["id"],
                {"invoice_settings": {"default_payment_method": default}},
                _once(f"{request.idempotency_key}:default"),
            )
            return stripe_results.customer_result(updated.to_dict(), default)

        return await self._guard(run)

    async def _new_customer(self, request: CustomerRequest, fields: dict[str, Any]) -> dict[str, Any]:
        create = self._v1.customers.create_async
        return await _create_once(
            lambda sent: create(cast("CustomerCreateParams", sent), _once(request.idempotency_key)),
            fields,
            request.accepted_at,
        )

    async def _earlier_customers(self, request: CustomerRequest, sent: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The customers an earlier attempt of `request` may have made, once Stripe may have forgotten its key: the
        one tagged with it (Search), else (no room for the tag, or Search refused) those created since the command
        was accepted that show all it sent (listed by its email, when it sent one)."""
        if not stripe_redrive.key_may_be_forgotten(request.accepted_at, _utc_now()):
            return []
        assert request.accepted_at is not None  # key_may_be_forgotten said so
        key = request.idempotency_key
        if stripe_redrive.is_tagged(sent["metadata"], key):
            try:
                return stripe_redrive.tagged_objects(await self._searched_customers(key), key)
            except stripe.InvalidRequestError as error:  # Search is not offered everywhere (not in India)
                _log_failure(error)
        gte, lte = stripe_redrive.listing_window(request.accepted_at, _utc_now())
        listing: CustomerListParams = {"created": {"gte": gte, "lte": lte}, "limit": _PAGE}
        if request.email:
            listing["email"] = request.email
        fetch = self._v1.customers.list_async
        listed = await _all_pages(lambda page: fetch(cast("CustomerListParams", page)), dict(listing))
        shown = {**sent, "metadata": stripe_redrive.as_stored(sent["metadata"])}
        return [customer for customer in listed if all(customer.get(name) == shown[name] for name in shown)]

    async def _searched_customers(self, key: str) -> list[dict[str, Any]]:
        search: CustomerSearchParams = {"query": stripe_redrive.search_query(key), "limit": _PAGE}
        fetch = self._v1.customers.search_async
        return await _all_results(lambda page: fetch(cast("CustomerSearchParams", page)), dict(search))

    async def update_customer(self, reference: str, request: CustomerRequest) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            fields = cast("CustomerUpdateParams", _customer_fields(request))
            if "metadata" in fields:
                fields["metadata"] = stripe_redrive.untagging(request.metadata)
            default = None
            if request.payment_method is not None:
                default = await self._attach(reference, request.payment_method, request.idempotency_key)
                created["default_payment_method"] = default
                fields["invoice_settings"] = {"default_payment_method": default}
            if fields:
                customer = await self._v1.customers.update_async(reference, fields, _once(request.idempotency_key))
            else:
                customer = await self._v1.customers.retrieve_async(reference)
            return stripe_results.customer_result(customer.to_dict(), default)

        return await self._guard(run)

    async def retrieve_customer(self, reference: str) -> ProviderResult:
        """The customer as Stripe holds it now (a read): `details["object"]` is the customer (or its deletion)."""

        async def run(created: Created) -> ProviderResult:
            customer = (await self._v1.customers.retrieve_async(reference)).to_dict()
            return ProviderResult(Outcome.APPROVED, reference, details={"object": customer})

        return await self._guard(run)

    async def check_customer_deletable(self, reference: str, ours: Sequence[str]) -> ProviderResult:
        return ProviderResult(Outcome.APPROVED, reference)  # Stripe's deletion cancels every subscription itself

    async def delete_customer(self, reference: str, idempotency_key: str) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            try:
                await self._v1.customers.delete_async(reference)
            except stripe.InvalidRequestError as error:
                if not stripe_errors.is_missing_object(error):
                    raise
                # Already gone: an earlier attempt of this command deleted it before its answer was lost.
            return ProviderResult(Outcome.APPROVED, reference, details={"customer": reference, "deleted": True})

        return await self._guard(run)

    async def _attach(self, customer: str, method: PaymentMethod, idempotency_key: str) -> str:
        """Attach the PaymentMethod to the customer; its id (a test token like pm_card_visa yields a new one)."""
        attached = await self._v1.payment_methods.attach_async(
            _stripe_payment_method(method), {"customer": customer}, _once(f"{idempotency_key}:attach")
        )
        return str(attached.id)

    # ---- subscriptions --------------------------------------------------------------------------------------

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            customer = request.customer_reference
            if not customer:
                raise _Refused(
                    ProviderResult(
                        Outcome.PERMANENT,
                        message="A Stripe subscription needs a Stripe customer",
                        details={"invalid_param": "customer_id"},
                    )
                )
            if stripe_redrive.key_may_be_forgotten(request.accepted_at, _utc_now()):
                earlier = await self._earlier_subscriptions(request, customer)
                if len(earlier) > 1:
                    return _unresolved("Subscription", earlier, request.idempotency_key)
                if earlier:
                    return stripe_results.subscription_result(earlier[0])
            item = await self._new_item(request, created)
            params: SubscriptionCreateParams = {"customer": customer, "items": [item]}
            if request.payment_method is not None:
                default = await self._attach(customer, request.payment_method, request.idempotency_key)
                created["default_payment_method"] = default
                # This subscription's own: the customer's invoice default, which its other subscriptions bill,
                # stays as it is.
                params["default_payment_method"] = default
            if request.trial_days:
                params["trial_period_days"] = request.trial_days
            params["metadata"] = stripe_redrive.tagged(request.metadata, request.idempotency_key)
            create = self._v1.subscriptions.create_async
            subscription = await _create_once(
                lambda sent: create(cast("SubscriptionCreateParams", sent), _once(request.idempotency_key)),
                dict(params),
                request.accepted_at,
            )
            return stripe_results.subscription_result(subscription)

        return await self._guard(run)

    async def _earlier_subscriptions(self, request: SubscriptionRequest, customer: str) -> list[Mapping[str, Any]]:
        """The customer's subscriptions an earlier attempt of `request` may have made: the one tagged with its key,
        else (no room for the tag) those created since it was accepted with the metadata it sent (as Stripe stores
        it: no key for an empty value)."""
        assert request.accepted_at is not None  # key_may_be_forgotten said so
        try:
            listed = await self._listed_subscriptions(request.accepted_at, customer)
        except stripe.InvalidRequestError as error:
            if not stripe_errors.is_missing_object(error):
                raise
            # A customer deleted since (its subscriptions canceled with it): its list is refused, theirs stay listed.
            _log_failure(error)
            every = await self._listed_subscriptions(request.accepted_at, None)
            listed = [sub for sub in every if stripe_results.object_id(sub.get("customer")) == customer]
        metadata = stripe_redrive.tagged(request.metadata, request.idempotency_key)
        if stripe_redrive.is_tagged(metadata, request.idempotency_key):
            return stripe_redrive.tagged_objects(listed, request.idempotency_key)
        stored = stripe_redrive.as_stored(metadata)
        return [sub for sub in listed if sub.get("metadata") == stored]

    async def _listed_subscriptions(self, accepted_at: datetime, customer: str | None) -> list[dict[str, Any]]:
        """Every subscription (of `customer`, when given) created from shortly before `accepted_at` until now."""
        gte, lte = stripe_redrive.listing_window(accepted_at, _utc_now())
        listing: SubscriptionListParams = {"status": "all", "created": {"gte": gte, "lte": lte}, "limit": _PAGE}
        if customer:
            listing["customer"] = customer
        fetch = self._v1.subscriptions.list_async
        return await _all_pages(lambda page: fetch(cast("SubscriptionListParams", page)), dict(listing))

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            params: SubscriptionUpdateParams = {}
            if change.quantity is not None or change.price or change.amount is not None:
                current = stripe_results.subscription_result(
                    (await self._v1.subscriptions.retrieve_async(reference)).to_dict()
                ).details
                if change.price:
                    await self._check_changed_price(change.price, change, current)
                params["items"] = [await self._changed_item(current, change, created)]
            if change.cancel_at_period_end is not None:
                params["cancel_at_period_end"] = change.cancel_at_period_end
            if change.metadata:
                params["metadata"] = stripe_redrive.untagging(change.metadata)
            if not params:
                subscription = await self._v1.subscriptions.retrieve_async(reference)
            else:
                subscription = await self._v1.subscriptions.update_async(
                    reference, params, _once(change.idempotency_key)
                )
            return stripe_results.subscription_result(subscription.to_dict())

        return await self._guard(run)

    async def cancel_subscription(self, reference: str, at_period_end: bool, idempotency_key: str) -> ProviderResult:
        async def run(created: Created) -> ProviderResult:
            if at_period_end:
                subscription = await self._v1.subscriptions.update_async(
                    reference, {"cancel_at_period_end": True}, _once(idempotency_key)
                )
                return stripe_results.subscription_result(subscription.to_dict())
            return stripe_results.subscription_result(await self._cancel_now(reference))

        return await self._guard(run)

    async def _cancel_now(self, reference: str) -> dict[str, Any]:
        try:
            return (await self._v1.subscriptions.cancel_async(reference)).to_dict()
        except stripe.InvalidRequestError:
            # A repeated cancel (the first one's answer was lost) is refused by Stripe: fine if it is canceled.
            current = (await self._v1.subscriptions.retrieve_async(reference)).to_dict()
            if stripe_results.subscription_status(current.get("status")) != "canceled":
                raise
            return current

    async def _new_item(self, request: SubscriptionRequest, created: Created) -> SubscriptionCreateParamsItem:
        if request.price:
            await self._check_price(request.price, None, request.quantity, "quantity")  # it bills in the price's
            if _is_price_id(request.price):
                return {"price": request.price, "quantity": request.quantity}
            return {"plan": request.price, "quantity": request.quantity}
        plan = await self._create_plan(
            request.amount, request.currency, request.interval, request.interval_count, request.idempotency_key
        )
        created["plan"] = plan
        return {"plan": plan, "quantity": request.quantity}

    async def _check_changed_price(self, price: str, change: SubscriptionChange, current: Mapping[str, Any]) -> None:
        """A new price of a subscription: in its currency (Stripe never changes a subscription's currency), and
        its period bill within the largest amount."""
        currency = str(change.currency or current.get("currency") or "").lower() or None
        quantity = change.new_quantity or int(current.get("quantity") or 1)
        await self._check_price(price, currency, quantity, "quantity" if change.quantity is not None else "price")

    async def _check_price(self, price: str, currency: str | None, quantity: int, limit_param: str) -> None:
        """Refuse, before anything is made or changed, a price in another currency than `currency` (when given)
        or one whose period bill (its amount × `quantity`) is above the largest amount (400 on `limit_param`)."""
        if _is_price_id(price):
            found = (await self._v1.prices.retrieve_async(price)).to_dict()
            amount = found.get("unit_amount")
        else:
            found = (await self._v1.plans.retrieve_async(price)).to_dict()
            amount = found.get("amount")
        if currency and str(found.get("currency") or "").lower() != currency:
            message = f"The price bills in {found.get('currency')}; this subscription bills in {currency}."
            raise _Refused(ProviderResult(Outcome.PERMANENT, message=message, details={"invalid_param": "price"}))
        if isinstance(amount, int) and amount * quantity > MAX_AMOUNT:
            message = f"The price × quantity {quantity} bills {amount * quantity} a period; at most {MAX_AMOUNT}."
            details = {"invalid_param": limit_param}
            raise _Refused(ProviderResult(Outcome.PERMANENT, message=message, details=details))

    async def _changed_item(
        self, current: Mapping[str, Any], change: SubscriptionChange, created: Created
    ) -> SubscriptionUpdateParamsItem:
        """The subscription's (single) item with the new quantity and/or Plan/Price. The quantity is the one the
        change carries (so a repeat sends the same parameters under its key); Stripe's current one otherwise."""
        item: SubscriptionUpdateParamsItem = {"id": current["subscription_item"]}
        if change.price:
            if _is_price_id(change.price):
                item["price"] = change.price
            else:
                item["plan"] = change.price
        elif change.amount is not None:
            plan = await self._create_plan(
                change.amount,
                str(current["currency"]),
                str(current["interval"]),
                int(current.get("interval_count") or 1),
                change.idempotency_key,
            )
            created["plan"] = plan
            item["plan"] = plan
        # Always sent: Stripe keeps the quantity when it is omitted, localstripe resets it to 1.
        item["quantity"] = change.new_quantity or int(current.get("quantity") or 1)
        return item

    async def _create_plan(
        self, amount: int, currency: str, interval: str, interval_count: int, idempotency_key: str
    ) -> str:
        """A Plan for this amount and period (Plans, not Prices: Stripe still takes them and localstripe has no
        Prices). Its product is created inline."""
        params: PlanCreateParams = {
            "amount": amount,
            "currency": currency.lower(),
            "interval": interval,
            "interval_count": interval_count,
            "product": {"name": _plan_name(amount, currency.lower(), interval, interval_count)},
        }
        plan = await self._v1.plans.create_async(params, _once(f"{idempotency_key}:plan"))
        return str(plan.id)

    # ---- errors ---------------------------------------------------------------------------------------------

    async def _guard(self, run: Callable[[Created], Awaitable[ProviderResult]]) -> ProviderResult:
        """Run an operation; Stripe's errors become results. Ids created on the way are recorded either way."""
        created: Created = {}
        try:
            result = await run(created)
        except _Refused as refused:
            result = refused.result
        except stripe.StripeError as error:
            _log_failure(error)
            result = stripe_errors.result_for_error(error)
        if not created:
            return result
        return replace(result, details={**created, **result.details})


def _intent_params(request: PaymentRequest) -> PaymentIntentCreateParams:
    """What creates the PaymentIntent: the same on every attempt (Stripe replays a key only for the same)."""
    params: PaymentIntentCreateParams = {
        "amount": request.amount,
        "currency": request.currency.lower(),
        "payment_method": _stripe_payment_method(request.payment_method),
        "confirm": True,
        # Cards only: no redirect-based method can be picked, so confirming needs no return_url.
        # (API version 2026-09-30 and later refuse the older `payment_method_types`.)
        "allowed_payment_method_types": ["card"],
        "expand": ["payment_method"],
    }
    if not request.capture:
        params["capture_method"] = "manual"
    if request.customer_reference:
        params["customer"] = request.customer_reference
    if request.description:
        params["description"] = request.description
    metadata = stripe_redrive.tagged(request.metadata, request.idempotency_key)
    if metadata:
        params["metadata"] = metadata
    return params


def _refund_params(payment_intent: str, amount: int, key: str, reason: str | None) -> RefundCreateParams:
    params: RefundCreateParams = {"payment_intent": payment_intent, "amount": amount}
    metadata = {stripe_redrive.OPERATION_TAG: key}  # a refund's metadata is all ours (API.md's refund has none)
    if reason in _STRIPE_REFUND_REASONS:
        params["reason"] = reason
    elif reason:
        metadata["reason"] = reason[:500]  # Stripe's own reasons are an enum
    params["metadata"] = metadata
    return params


async def _create_once(
    create: Callable[[dict[str, Any]], Awaitable[Any]], params: dict[str, Any], earlier_attempt_at: datetime | None
) -> dict[str, Any]:
    """Create with our key. A re-drive that Stripe refuses as sent with other parameters under the same key is
    one whose earlier attempt a version that did not tag yet made (a rolling deploy): its parameters, resent,
    get that attempt's stored answer instead of a failure recorded for a payment Stripe made."""
    try:
        return dict((await create(params)).to_dict())
    except stripe.IdempotencyError as error:
        untagged = _untagged(params)
        if earlier_attempt_at is None or error.http_status != 400 or untagged == params:
            raise
        return dict((await create(untagged)).to_dict())


def _untagged(params: Mapping[str, Any]) -> dict[str, Any]:
    resent = {key: value for key, value in params.items() if key != "metadata"}
    sent: Mapping[str, str] = params.get("metadata") or {}
    metadata = {key: value for key, value in sent.items() if key != stripe_redrive.OPERATION_TAG}
    if metadata:
        resent["metadata"] = metadata
    return resent


async def _all_pages(fetch: Callable[[dict[str, Any]], Awaitable[Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object of a Stripe list, page after page."""
    listed: list[dict[str, Any]] = []
    while True:
        page = await fetch(params)
        objects = [item.to_dict() for item in page.data]
        listed.extend(objects)
        if not page.has_more or not objects:
            return listed
        params = {**params, "starting_after": objects[-1]["id"]}


async def _all_results(
    fetch: Callable[[dict[str, Any]], Awaitable[Any]], params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every object a Stripe search finds, page after page."""
    found: list[dict[str, Any]] = []
    while True:
        page = await fetch(params)
        found.extend(item.to_dict() for item in page.data)
        if not page.has_more or not page.next_page:
            return found
        params = {**params, "page": page.next_page}


async def _unclaimed(
    candidates: list[Mapping[str, Any]], request: PaymentRequest
) -> tuple[list[Mapping[str, Any]], bool]:
    """The candidates no other payment of ours has recorded, and whether another payment that sent the same is still
    without an answer (then none of them may be adopted). One another payment recorded is that payment's (the client
    paid the same order under another key): adopting it would count one PaymentIntent twice. With those left out,
    none left means the earlier attempt made nothing (an intent it made would match and be nobody's)."""
    if not candidates or request.claims is None:
        return candidates, False
    claims = await request.claims([stripe_redrive.candidate_id(intent) for intent in candidates])
    if claims.owned:
        log.warning(
            "Stripe re-drive: PaymentIntents another transaction recorded are not this payment's; left out",
            extra={"stripe_owned_elsewhere": sorted(claims.owned), "command_id": request.idempotency_key},
        )
    return stripe_redrive.without(candidates, claims.owned), claims.contested


def _unresolved(kind: str, candidates: list[Mapping[str, Any]], key: str) -> ProviderResult:
    result = stripe_redrive.unresolved(kind, candidates)
    log.error(
        "Stripe re-drive unresolved: several %ss may be the earlier attempt's; nothing created, the operation"
        " stays open until an operator decides",
        kind,
        extra={"stripe_candidates": result.candidates, "command_id": key},
    )
    return result


def _customer_fields(request: CustomerRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "email": request.email,
        "name": request.name,
        "phone": request.phone,
        "description": request.description,
    }
    present = {key: value for key, value in fields.items() if value is not None}
    present.update({key: "" for key in request.cleared})  # Stripe empties a field sent as ""
    if request.metadata:
        present["metadata"] = dict(request.metadata)
    return present


def _log_failure(error: stripe.StripeError) -> None:
    global _authentication_failure_logged
    if stripe_errors.is_authentication_failure(error):
        if not _authentication_failure_logged:
            _authentication_failure_logged = True
            log.critical(
                "Stripe rejected our API key (%s, HTTP %s): every Stripe call will fail until STRIPE_API_KEY is fixed",
                type(error).__name__,
                error.http_status,
            )
        return
    level = logging.INFO if isinstance(error, stripe.CardError) else logging.WARNING  # a decline is no fault
    log.log(
        level,
        "Stripe call failed",
        extra={
            "stripe_error": type(error).__name__,
            "http_status": error.http_status,
            "stripe_request_id": error.request_id,
            "stripe_code": error.code,
        },
    )
