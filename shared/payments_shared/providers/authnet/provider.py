"""`AuthorizeNetProvider`: the provider port over Authorize.net's XML API.

Exactly-once without idempotency keys. Every request carries `refId` = a 20-character digest of the command id;
a new transaction (charge, authorization, refund) also carries it as `order.invoiceNumber` and sets
`duplicateWindow` explicitly. When a call ends ambiguously (read timeout, connection lost after sending, 5xx,
an unreadable answer) the adapter first looks the transaction up (the unsettled list, then its details,
matched by invoice number) and sends again only if it is not there. A duplicate-transaction answer (reason 11)
and a reused Accept.js token (E00114) resolve to the original transaction, never to a second one. Captures and
voids act on an existing transId: after an ambiguous end, the transaction's own status tells whether they
happened, and "already captured/voided" answers count as done.

Subscriptions are ARB subscriptions on a customer payment profile (see arb.py); ARB cannot cancel at the period
end, so that is reported unsupported.

Payment methods: Accept.js opaque data (`OpaqueData`), or a customer payment profile written
`"<customerProfileId>/<paymentProfileId>"` (a bare `<paymentProfileId>` is accepted with a customer). Anything
holding a card number is refused before any call.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import httpx

from payments_shared.carddata import contains_card_number
from payments_shared.money import minor_unit_exponent, to_major_units, to_minor_units
from payments_shared.providers.authnet import arb, messages
from payments_shared.providers.authnet.client import Ambiguous, AuthnetClient, NotSent, TransportFailure
from payments_shared.providers.authnet.outcomes import (
    ALREADY_CAPTURED,
    ALREADY_VOIDED,
    CREDITS_EXCEED_DEBIT,
    DUPLICATE_RECORD,
    DUPLICATE_TRANSACTION,
    INVALID_ONE_TIME_TOKEN,
    NOT_FOUND_CODES,
    NOT_SETTLED_FOR_CREDIT,
    PROFILE_BILLED_BY_SUBSCRIPTION,
    SUBSCRIPTION_NOT_FOUND,
    is_authentication_failure,
    judge_transaction,
    profile_billed_by_subscription,
    request_outcome,
    subscriptions_bill_profile,
    transaction_outcome,
)
from payments_shared.providers.authnet.parse import (
    ApiResponse,
    CustomerProfile,
    Message,
    SubscriptionSummary,
    TransactionDetails,
    TransactionResponse,
    TransactionSummary,
    account_currencies,
    customer_profile,
    customer_profile_id,
    payment_profile_ids,
    settled_batch_ids,
    subscription_list,
    transaction_details,
    transaction_list,
    transaction_response,
)
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

logger = logging.getLogger(__name__)

_PROFILE_TOKEN = re.compile(r"^(\d{1,20})/(\d{1,20})$")
_PAYMENT_PROFILE_ID = re.compile(r"^\d{1,20}$")
_DUPLICATE_RECORD_ID = re.compile(r"ID (\d+)")
_CAPTURED_STATUSES = frozenset({"capturedPendingSettlement", "settledSuccessfully", "pendingFinalSettlement"})
_REVIEW_STATUSES = frozenset({"FDSPendingReview", "FDSAuthorizedPendingReview", "underReview"})
_GONE_AHEAD_STATUSES = _CAPTURED_STATUSES | {"authorizedPendingCapture"}
_METHOD_FORMS = "Accept.js opaque data or a customer payment profile '<customerProfileId>/<paymentProfileId>'"
# An Accept.js token lives 15 minutes and the reports usually lag behind the transactions by about a minute: a payment
# that Authorize.net does not list this long after it was first sent was most likely never made. Authorize.net
# documents no bound on its reports' lag, so it is never failed on that guess: it is left unresolved for an operator
# (`payments-ops resolve --not-made`), and looked up again every `_UNLISTED_RETRY_S` until then.
NEVER_MADE_AFTER = timedelta(minutes=20)
_UNLISTED_RETRY_S = 300.0
_LISTED_SOON_RETRY_S = 30.0  # before NEVER_MADE_AFTER: the reports usually catch up within a minute
_SETTLED_LOOKBACK = timedelta(days=31)  # the widest range getSettledBatchList serves
_SETTLEMENT_CLOCK_MARGIN = timedelta(hours=1)  # our clock against Authorize.net's (submission and settlement times)
_BATCH_PAGES = 50  # a batch's transactions are read at most this many pages (of 1000) deep

PaymentSource = dict[str, tuple[str, str]]  # {"opaque": (descriptor, value)} or {"profile": (customer, payment)}


class _ArbTerms(NamedTuple):
    schedule: tuple[int, str]  # ARB's interval: (length, days|months)
    profile: tuple[str, str]  # (customer profile id, payment profile id)


class _LookupFailed(Exception):
    """A look-up could not tell whether the transaction exists."""

    def __init__(self, result: ProviderResult) -> None:
        super().__init__(result.message)
        self.result = result


class AuthorizeNetProvider:
    name = "authnet"

    def __init__(
        self,
        login_id: str,
        transaction_key: str,
        url: str,
        timeout_s: float = 10.0,
        attempts: int = 3,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._credentials = messages.Credentials(login_id, transaction_key)
        # `timeout_s` is the budget of one operation (the worker's deadline is PROVIDER_TIMEOUT_S): each HTTP
        # call gets a third of it, so that a call that times out and its look-up (two calls) fit within it.
        self._client = AuthnetClient(url, timeout_s / 3, http)
        self._attempts = max(1, attempts)
        self._unresolved: dict[str, datetime] = {}  # reference → when first sent, until answered definitely
        self._authentication_failure_logged = False
        self._billing_currency: str | None = None  # the account's, once asked

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> AuthorizeNetProvider | None:
        """The adapter when both credentials are set, else None."""
        if settings.missing_credentials("authnet"):
            return None
        assert settings.authnet_api_login_id and settings.authnet_transaction_key  # what missing_credentials checked
        return cls(
            settings.authnet_api_login_id,
            settings.authnet_transaction_key,
            settings.authnet_api_url,
            timeout_s=settings.provider_timeout_s,
            attempts=settings.provider_retry_attempts,
        )

    async def close(self) -> None:
        await self._client.aclose()

    # -- payments ---------------------------------------------------------------------------------------

    async def pay(self, request: PaymentRequest) -> ProviderResult:
        source = _payment_source(request.payment_method, request.customer_reference)
        if isinstance(source, ProviderResult):
            return source
        reference = messages.reference_for(request.idempotency_key)
        earlier = self._sent_since(reference, request.earlier_attempt_at)
        if _unsendable(source):
            resolved = await self._resolve_unsendable(reference, request.currency, earlier or _now())
            return _with_amount(resolved, request.amount)
        document = messages.payment_transaction(
            self._credentials,
            reference,
            capture=request.capture,
            amount=to_major_units(request.amount, request.currency),
            currency=request.currency,
            opaque=source.get("opaque"),
            profile=source.get("profile"),
            description=request.description,
        )
        result = await self._create(reference, document, request.currency, earlier)
        return _with_amount(_payment_method_refused(result, source), request.amount)

    async def capture(self, payment: PaymentRef, amount: int, idempotency_key: str) -> ProviderResult:
        reference = messages.reference_for(idempotency_key)
        document = messages.capture_transaction(
            self._credentials, reference, payment.reference, to_major_units(amount, payment.currency)
        )
        result = await self._act_on(payment, document, lambda found: found.status in _CAPTURED_STATUSES)
        return _with_amount(result, amount)

    async def void(self, payment: PaymentRef, idempotency_key: str) -> ProviderResult:
        reference = messages.reference_for(idempotency_key)
        document = messages.void_transaction(self._credentials, reference, payment.reference)
        return await self._act_on(payment, document, lambda found: found.status == "voided")

    async def refund(
        self,
        payment: PaymentRef,
        amount: int,
        idempotency_key: str,
        reason: str | None,
        earlier_attempt_at: datetime | None = None,
    ) -> ProviderResult:
        last_four = await self._last_four(payment)
        if isinstance(last_four, ProviderResult):
            return last_four
        reference = messages.reference_for(idempotency_key)
        document = messages.refund_transaction(
            self._credentials,
            reference,
            payment.reference,
            to_major_units(amount, payment.currency),
            last_four,
        )
        earlier = self._sent_since(reference, earlier_attempt_at)
        # Refused as exceeding the charge, with no known refund to explain it: its own earlier attempt may.
        unexplained = payment.known_credits + amount <= payment.amount_captured
        result = await self._create(reference, document, payment.currency, earlier, own_credit_possible=unexplained)
        if result.details.get("reason_code") != NOT_SETTLED_FOR_CREDIT:
            return _with_amount(_with_details(result, refund_of=payment.reference), amount)
        if amount < payment.amount_captured:
            return ProviderResult(
                Outcome.PERMANENT,
                message=(
                    "Authorize.net refunds only settled transactions (usually the day after capture): "
                    "refund part of it after settlement, or the whole amount now"
                ),
                details={"reason_code": NOT_SETTLED_FOR_CREDIT, "unsettled": True, "conflict": "charge_not_settled"},
            )
        voided = await self.void(payment, idempotency_key)
        if voided.outcome is not Outcome.APPROVED:
            return voided
        return _with_amount(_with_details(voided, refunded_by="void"), amount)

    # -- customers ----------------------------------------------------------------------------------------

    async def create_customer(self, request: CustomerRequest) -> ProviderResult:
        opaque = _opaque_only(request.payment_method)
        if isinstance(opaque, ProviderResult):
            return opaque
        reference = messages.reference_for(request.idempotency_key)
        document = messages.create_customer_profile(
            self._credentials,
            reference,
            email=request.email,
            description=request.description or request.name,
            opaque=opaque,
        )
        response = await self._send_repeatable(document)
        if isinstance(response, ProviderResult):
            return response
        if not response.ok and response.first_code == DUPLICATE_RECORD:
            return await self._existing_customer(response)
        if not response.ok and response.first_code == INVALID_ONE_TIME_TOKEN:
            return await self._created_by_earlier_attempt(reference) or self._refused(response)
        if not response.ok:
            return self._refused(response)
        profile_id = customer_profile_id(response)
        return ProviderResult(
            Outcome.APPROVED, reference=profile_id, details=_customer_details(profile_id, payment_profile_ids(response))
        )

    async def update_customer(self, reference: str, request: CustomerRequest) -> ProviderResult:
        """updateCustomerProfileRequest replaces every field: the current profile is read first and merged."""
        opaque = _opaque_only(request.payment_method)
        if isinstance(opaque, ProviderResult):
            return opaque
        current = await self._profile(reference)
        if isinstance(current, ProviderResult):
            return current
        ref_id = messages.reference_for(request.idempotency_key)
        document = messages.update_customer_profile(
            self._credentials,
            ref_id,
            reference,
            merchant_customer_id=current.merchant_customer_id,
            email=request.email or current.email,
            description=request.description or request.name or current.description,
        )
        response = await self._send_repeatable(document)
        if isinstance(response, ProviderResult):
            return response
        if not response.ok:
            return self._refused(response)
        if opaque is None:
            return ProviderResult(Outcome.APPROVED, reference=reference, details={"customer_profile_id": reference})
        recorded = request.recorded_payment_methods
        if not opaque[1]:  # the nonce is never stored: one that this attempt lacks was sent by an earlier one, if any
            earlier = _added_by_earlier_attempt(reference, current, recorded) if recorded is not None else None
            return earlier or _nonce_not_kept()
        added = await self._add_payment_profile(reference, ref_id, opaque)
        if added.details.get("error_code") == INVALID_ONE_TIME_TOKEN and recorded is not None:
            return _added_by_earlier_attempt(reference, current, recorded) or added
        return added

    async def delete_customer(self, reference: str, idempotency_key: str) -> ProviderResult:
        document = messages.delete_customer_profile(
            self._credentials, messages.reference_for(idempotency_key), reference
        )
        response = await self._send_repeatable(document)
        if isinstance(response, ProviderResult):
            return response
        if not response.ok and response.first_code in NOT_FOUND_CODES:
            return ProviderResult(Outcome.APPROVED, reference=reference, details={"already_deleted": True})
        if not response.ok and response.first_code == PROFILE_BILLED_BY_SUBSCRIPTION:
            return profile_billed_by_subscription(response)
        if not response.ok:
            return self._refused(response)
        return ProviderResult(Outcome.APPROVED, reference=reference, details={"deleted": True})

    async def check_customer_deletable(self, reference: str, ours: Sequence[str]) -> ProviderResult:
        """The profile's subscriptions (getCustomerProfile's `subscriptionIds`) other than `ours`, each read
        (ARBGetSubscription): one still billing the profile would make Authorize.net refuse the deletion (E00106)
        after this system had canceled its own; it is refused now, before anything is done."""
        profile = await self._profile(reference)
        if isinstance(profile, ProviderResult):
            gone = profile.details.get("error_code") in NOT_FOUND_CODES
            return ProviderResult(Outcome.APPROVED, reference) if gone else profile  # gone: nothing refuses it
        billing: list[str] = []
        for subscription_id in (found for found in profile.subscription_ids if found not in ours):
            current = await self._send_repeatable(messages.get_subscription(self._credentials, subscription_id))
            if isinstance(current, ProviderResult):
                return current
            if not current.ok and current.first_code not in (SUBSCRIPTION_NOT_FOUND, *NOT_FOUND_CODES):
                return self._refused(current)
            if current.ok and arb.bills_its_profile(current):
                billing.append(subscription_id)
        if billing:
            return subscriptions_bill_profile({"subscriptions": billing})
        return ProviderResult(Outcome.APPROVED, reference)

    async def create_subscription(self, request: SubscriptionRequest) -> ProviderResult:
        """ARBCreateSubscriptionRequest on a customer payment profile, starting the day the command was accepted.

        A resend is answered E00012 naming the first. On a later day it is E00017 (a start before the submission
        date): the subscription an earlier attempt made is looked up, and only when there is none is it created,
        starting today."""
        terms = await self._subscription_terms(request)
        if isinstance(terms, ProviderResult):
            return terms
        reference = messages.reference_for(request.idempotency_key)
        start = arb.start_date(request.trial_days, arb.accepted_day(request.accepted_at))
        response = await self._send_subscription(request, reference, terms, start)
        if isinstance(response, ApiResponse) and arb.start_date_passed(response):
            response = await self._made_earlier_or_now(request, reference, terms)
        if isinstance(response, ProviderResult):
            return response
        subscription_id = response.child_text("subscriptionId") if response.ok else arb.duplicate_of(response)
        if subscription_id is None:
            return self._refused(response)
        status = "trialing" if request.trial_days else "active"
        return ProviderResult(Outcome.APPROVED, reference=subscription_id, details={"status": status})

    async def _made_earlier_or_now(
        self, request: SubscriptionRequest, reference: str, terms: _ArbTerms
    ) -> ApiResponse | ProviderResult:
        """After E00017: the subscription an earlier attempt made, else ARB's answer to creating it from today."""
        listed = await self._listed_subscription(reference, request.accepted_at)
        if isinstance(listed, ProviderResult):
            return listed
        if listed is not None:
            status = arb.listed_status(listed, request.trial_days)
            return ProviderResult(Outcome.APPROVED, reference=listed.subscription_id, details={"status": status})
        return await self._send_subscription(request, reference, terms, arb.start_date(request.trial_days))

    async def _subscription_terms(self, request: SubscriptionRequest) -> _ArbTerms | ProviderResult:
        """ARB's schedule and payment profile for the request, or why ARB cannot bill it."""
        if request.price:
            return _invalid("Authorize.net subscriptions take amount, currency and interval, not a price id", "price")
        schedule = arb.interval(request.interval, request.interval_count)
        if schedule is None:
            return _invalid("Authorize.net schedules every 7 to 365 days or 1 to 12 months", "interval_count")
        profile = _payment_profile(request.payment_method, request.customer_reference)
        if profile is None:
            return _invalid("Authorize.net subscriptions charge a customer payment profile", "payment_method")
        billing_currency = await self._account_currency()
        if isinstance(billing_currency, ProviderResult):
            return billing_currency
        if request.currency != billing_currency:
            return _invalid(
                f"This Authorize.net account bills subscriptions in {billing_currency.upper()} only (ARB has no "
                "currency of its own)",
                "currency",
            )
        return _ArbTerms(schedule, profile)

    async def _send_subscription(
        self, request: SubscriptionRequest, reference: str, terms: _ArbTerms, start: date
    ) -> ApiResponse | ProviderResult:
        document = messages.create_subscription(
            self._credentials,
            reference,
            name=arb.subscription_name(reference),
            interval=terms.schedule,
            start=start,
            amount=to_major_units(request.amount * request.quantity, request.currency),
            quantity=request.quantity,
            profile=terms.profile,
        )
        return await self._send_repeatable(document)

    async def _listed_subscription(
        self, reference: str, accepted_at: datetime | None
    ) -> SubscriptionSummary | ProviderResult | None:
        """The subscription an earlier attempt made, among the active ones and then the others (a first charge
        that failed suspends it); None when there is none."""
        try:
            for search_type in arb.SEARCHES:
                found = await self._search_subscriptions(search_type, reference, accepted_at)
                if found is not None:
                    return found
        except _LookupFailed as failure:
            return failure.result
        return None

    async def _search_subscriptions(
        self, search_type: str, reference: str, accepted_at: datetime | None
    ) -> SubscriptionSummary | None:
        """Page through one search, newest first, until the subscription or those created before the command."""
        page = 1
        while True:
            response = await self._lookup_call(messages.subscription_list(self._credentials, search_type, page))
            listed, total = subscription_list(response)
            for summary in listed:
                if arb.is_ours(summary, reference):
                    return summary
            if not listed or page * messages.SUBSCRIPTION_PAGE >= total or arb.older_than(listed[-1], accepted_at):
                return None
            page += 1

    async def update_subscription(self, reference: str, change: SubscriptionChange) -> ProviderResult:
        """Amount and quantity through ARBUpdateSubscriptionRequest (ARB holds their product per occurrence)."""
        if change.price:
            return _invalid("Authorize.net subscriptions take an amount, not a price id", "price")
        if change.cancel_at_period_end:
            return _unsupported("Authorize.net cannot cancel a subscription at the period end: cancel it now")
        if change.amount is None and change.quantity is None:
            return ProviderResult(Outcome.APPROVED, reference=reference)  # metadata lives here, not at ARB
        if change.currency is None:
            raise ValueError("a subscription's amount or quantity changes in its currency: none given")
        current = await self._send_repeatable(messages.get_subscription(self._credentials, reference))
        if isinstance(current, ProviderResult):
            return current
        pricing = arb.current_pricing(current) if current.ok else None
        if pricing is None:
            return self._refused(current)
        total, quantity = pricing
        new_quantity = change.quantity or quantity
        if change.amount is not None:
            new_total = to_major_units(change.amount, change.currency) * new_quantity
        else:
            new_total = total * new_quantity / quantity
        document = messages.update_subscription_amount(
            self._credentials,
            messages.reference_for(change.idempotency_key),
            reference,
            new_total.quantize(Decimal(1).scaleb(-minor_unit_exponent(change.currency))),
            new_quantity,
        )
        response = await self._send_repeatable(document)
        if isinstance(response, ProviderResult):
            return response
        if not response.ok:
            return self._refused(response)
        return ProviderResult(Outcome.APPROVED, reference=reference)

    async def _account_currency(self) -> str | ProviderResult:
        """The currency ARB bills in: the account's own (getMerchantDetails lists it first). Asked once."""
        if self._billing_currency is None:
            response = await self._send_repeatable(messages.get_merchant_details(self._credentials))
            if isinstance(response, ProviderResult):
                return response
            if not response.ok:
                return self._refused(response)
            currencies = account_currencies(response)
            if not currencies:
                return ProviderResult(Outcome.PERMANENT, message="Authorize.net named no currency for this account")
            self._billing_currency = currencies[0]
        return self._billing_currency

    async def cancel_subscription(self, reference: str, at_period_end: bool, idempotency_key: str) -> ProviderResult:
        if at_period_end:
            return _unsupported("Authorize.net cannot cancel a subscription at the period end: cancel it now")
        document = messages.cancel_subscription(self._credentials, messages.reference_for(idempotency_key), reference)
        response = await self._send_repeatable(document)
        if isinstance(response, ProviderResult):
            return response
        if not response.ok:
            return self._refused(response)
        return ProviderResult(Outcome.APPROVED, reference=reference, details={"status": "canceled"})

    # -- exactly-once machinery -----------------------------------------------------------------------

    def _sent_since(self, reference: str, earlier_attempt_at: datetime | None) -> datetime | None:
        """Since when an earlier attempt for `reference` may have reached Authorize.net; None if none can have."""
        known = [when for when in (earlier_attempt_at, self._unresolved.get(reference)) if when is not None]
        return min(known) if known else None

    async def _create(
        self,
        reference: str,
        document: bytes,
        currency: str,
        earlier: datetime | None,
        own_credit_possible: bool = False,
    ) -> ProviderResult:
        """Send a transaction that creates a new transId, at most once per reference (its invoice number).

        `earlier`: since when an earlier attempt may have reached Authorize.net (None: this is the first), so the
        transaction is looked up before it is sent. The reference stays marked unresolved from before the first
        send until a definite answer, so an attempt cut short anywhere (timeout, cancellation by the caller's
        deadline) makes the next one look up first.
        """
        try:
            if earlier is not None:
                found = await self._find_by_invoice(reference, currency, earlier)
                if found is not None:
                    self._unresolved.pop(reference, None)
                    return found
            self._unresolved.setdefault(reference, earlier or _now())
            for _attempt in range(self._attempts):
                try:
                    response = await self._client.call(document)
                except NotSent:
                    continue
                except Ambiguous as failure:
                    logger.warning("Authorize.net call ended ambiguously (%s): looking the transaction up", failure)
                    earlier = self._unresolved[reference]
                    found = await self._find_by_invoice(reference, currency, earlier)
                    if found is not None:
                        self._unresolved.pop(reference, None)
                        return found
                    continue
                result = await self._judge_created(reference, response, currency, earlier, own_credit_possible)
                if result.outcome is not Outcome.RETRYABLE:
                    self._unresolved.pop(reference, None)
                return result
        except _LookupFailed as failure:
            return failure.result
        return _unreachable()

    async def _judge_created(
        self,
        reference: str,
        response: ApiResponse,
        currency: str,
        earlier: datetime | None,
        own_credit_possible: bool = False,
    ) -> ProviderResult:
        transaction = transaction_response(response)
        duplicate = transaction is not None and transaction.reason_code == DUPLICATE_TRANSACTION
        if transaction is not None and duplicate and transaction.response_code == "3":
            return await self._original_of_duplicate(reference, transaction, currency)
        if response.first_code == INVALID_ONE_TIME_TOKEN:
            found = await self._find_by_invoice(reference, currency, earlier or _now())
            if found is not None:
                return found
            if earlier is not None:  # the token may be spent by an earlier attempt the reports do not show yet
                return _unlisted(reference, earlier)
        if transaction is None:
            return self._refused(response)
        if transaction.reason_code == CREDITS_EXCEED_DEBIT and earlier is not None and own_credit_possible:
            return await self._refund_over_credits(reference, response, transaction, currency, earlier)
        return transaction_outcome(response, transaction)

    async def _refund_over_credits(
        self, reference: str, response: ApiResponse, refused: TransactionResponse, currency: str, earlier: datetime
    ) -> ProviderResult:
        """A refund sent again after an attempt that may have reached Authorize.net, refused because the credits
        would exceed the charge, and no refund known here explains it: the earlier attempt's own credit may be what
        exceeds it (a full refund's resend is refused so, not taken for a duplicate). Found, it is the refund;
        unlisted, it is looked up again until `NEVER_MADE_AFTER`, past which the reports would list it: the credits
        are another refund's, the refusal stands."""
        found = await self._find_by_invoice(reference, currency, earlier)
        if found is not None:
            return found
        if _now() - earlier < NEVER_MADE_AFTER:
            message = (
                "Authorize.net refuses this refund as exceeding the charge, and does not list an earlier attempt of "
                "it yet: it is looked up again shortly"
            )
            return ProviderResult.awaiting_reports(message, _LISTED_SOON_RETRY_S)
        return transaction_outcome(response, refused)

    async def _resolve_unsendable(self, reference: str, currency: str, since: datetime) -> ProviderResult:
        """A payment re-driven without its Accept.js token (never stored): only a look-up can tell its fate."""
        try:
            found = await self._find_by_invoice(reference, currency, since)
        except _LookupFailed as failure:
            return failure.result
        if found is not None:
            return found
        return _unlisted(reference, since)

    async def _original_of_duplicate(
        self, reference: str, duplicate: TransactionResponse, currency: str
    ) -> ProviderResult:
        if duplicate.trans_id is not None:
            details = await self._details(duplicate.trans_id)
            if details is not None and details.invoice_number == reference:
                return _from_details(details, currency)
        window_opened = _now() - timedelta(seconds=messages.DUPLICATE_WINDOW_S)  # the original is younger
        found = await self._find_by_invoice(reference, currency, window_opened)
        if found is not None:
            return found
        waiting = ProviderResult.awaiting_reports(
            "Authorize.net reports a duplicate whose original cannot be found yet", _LISTED_SOON_RETRY_S
        )
        return _replace(waiting, details={**waiting.details, "reason_code": DUPLICATE_TRANSACTION})

    async def _act_on(
        self, payment: PaymentRef, document: bytes, done: Callable[[TransactionDetails], bool]
    ) -> ProviderResult:
        """Capture or void an existing transaction: after an ambiguous end, its status tells what happened."""
        try:
            for _attempt in range(self._attempts):
                try:
                    response = await self._client.call(document)
                except NotSent:
                    continue
                except Ambiguous as failure:
                    logger.warning("Authorize.net call ended ambiguously (%s): checking the transaction", failure)
                    details = await self._details(payment.reference)
                    if details is not None and done(details):
                        return _from_details(details, payment.currency, reference=payment.reference)
                    continue
                return self._judge_action(payment, response)
        except _LookupFailed as failure:
            return failure.result
        return _unreachable()

    def _judge_action(self, payment: PaymentRef, response: ApiResponse) -> ProviderResult:
        transaction = transaction_response(response)
        if transaction is None:
            return self._refused(response)
        result = transaction_outcome(response, transaction)
        if transaction.reason_code in (ALREADY_CAPTURED, ALREADY_VOIDED):
            result = ProviderResult(Outcome.APPROVED, message=result.message, details=result.details)
        if result.outcome is Outcome.APPROVED:
            return ProviderResult(
                Outcome.APPROVED, reference=payment.reference, message=result.message, details=result.details
            )
        return result

    # ---- reads (a webhook's object re-fetched before it is applied) --------------------------------------------

    async def retrieve_payment(self, reference: str, currency: str | None = None) -> ProviderResult:
        """getTransactionDetails for `reference` (a transId). APPROVED means the read succeeded: `details` hold the
        transaction's status and type, the transaction it refers to (`ref_trans_id`, a refund's original) and its
        amounts in minor units of `currency` (USD when not given)."""
        try:
            details = await self._details(reference)
        except _LookupFailed as failed:
            return failed.result
        if details is None:
            return ProviderResult(Outcome.PERMANENT, message="Authorize.net does not know this transaction.")
        in_currency = currency or "usd"
        amounts = {"auth_amount": details.auth_amount, "settle_amount": details.settle_amount}
        read: dict[str, Any] = {
            "status": details.status,
            "transaction_type": details.transaction_type,
            "ref_trans_id": details.ref_trans_id,
            "response_code": details.response_code,
        }
        read.update({name: to_minor_units(value, in_currency) for name, value in amounts.items() if value})
        return ProviderResult(Outcome.APPROVED, reference=details.trans_id or reference, details=read)

    async def retrieve_customer(self, reference: str) -> ProviderResult:
        """getCustomerProfile: the profile's email and description (all a profile holds of ours)."""
        profile = await self._profile(reference)
        if isinstance(profile, ProviderResult):
            return profile
        details = {"customer_profile_id": reference, "email": profile.email, "description": profile.description}
        return ProviderResult(Outcome.APPROVED, reference=reference, details=details)

    async def _find_by_invoice(self, reference: str, currency: str, since: datetime) -> ProviderResult | None:
        """The transaction whose invoice number is `reference`, judged from its details; None if there is none.
        It is looked for among the unsettled transactions (page after page, the newest first, down to those
        submitted before `since`, when the first attempt may have been sent), then in the batches settled since
        `since`, the latest first."""
        oldest = since - _SETTLEMENT_CLOCK_MARGIN
        page = 1
        while True:
            listing = await self._lookup_call(messages.unsettled_transactions(self._credentials, page))
            found = await self._judge_listed(reference, currency, listing)
            if found is not None:
                return found
            listed = transaction_list(listing)
            if len(listed) < messages.LIST_PAGE or any(_submitted_before(summary, oldest) for summary in listed):
                break
            page += 1
        for batch_id in await self._batches_settled_since(since):
            for page in range(1, _BATCH_PAGES + 1):
                listing = await self._lookup_call(messages.batch_transactions(self._credentials, batch_id, page))
                found = await self._judge_listed(reference, currency, listing)
                if found is not None:
                    return found
                if len(transaction_list(listing)) < messages.LIST_PAGE:
                    break
        return None

    async def _judge_listed(self, reference: str, currency: str, listing: ApiResponse) -> ProviderResult | None:
        for summary in transaction_list(listing):
            if summary.invoice_number == reference:
                details = await self._details(summary.trans_id)
                if details is not None:
                    return _with_details(_from_details(details, currency), recovered_by="lookup")
        return None

    async def _batches_settled_since(self, since: datetime) -> list[str]:
        first = since - _SETTLEMENT_CLOCK_MARGIN
        last = min(_now(), first + _SETTLED_LOOKBACK)
        if last <= first:
            return []
        return settled_batch_ids(await self._lookup_call(messages.settled_batches(self._credentials, first, last)))

    async def _details(self, trans_id: str) -> TransactionDetails | None:
        response = await self._lookup_call(messages.transaction_details(self._credentials, trans_id))
        return transaction_details(response)

    async def _lookup_call(self, document: bytes) -> ApiResponse:
        for _attempt in range(self._attempts):
            try:
                response = await self._client.call(document)
            except TransportFailure:
                continue  # a look-up changes nothing: asking again is always safe
            if response.ok or response.first_code in ("I00004", *NOT_FOUND_CODES):
                return response
            raise _LookupFailed(self._refused(response))
        raise _LookupFailed(_unreachable())

    async def _send_repeatable(self, document: bytes) -> ApiResponse | ProviderResult:
        """Send a request that is safe to repeat (customer profile calls resolve their own duplicates)."""
        for _attempt in range(self._attempts):
            try:
                return await self._client.call(document)
            except TransportFailure:
                continue
        return _unreachable()

    async def _existing_customer(self, response: ApiResponse) -> ProviderResult:
        """E00039 names the profile an earlier attempt of this command created: that one, with its payment profile."""
        text = response.messages[0].text if response.messages else ""
        match = _DUPLICATE_RECORD_ID.search(text)
        if match is None:
            return request_outcome(response)
        profile_id = match.group(1)
        profile = await self._profile(profile_id)
        payment_profiles = [] if isinstance(profile, ProviderResult) else list(profile.payment_profile_ids)
        return _made_earlier(profile_id, payment_profiles)

    async def _created_by_earlier_attempt(self, merchant_customer_id: str) -> ProviderResult | None:
        """The profile an earlier attempt of this command created, its answer lost, when the nonce it spent is refused
        (E00114) before the duplicate is found: the merchantCustomerId is derived from the command's key, so a
        profile that holds it is this command's. None when there is none; a retryable result when that cannot be told
        now (the command stays open)."""
        found = await self._send_repeatable(messages.find_customer_profile(self._credentials, merchant_customer_id))
        if isinstance(found, ProviderResult):
            return found
        if not found.ok:
            refused = self._refused(found)
            return refused if refused.outcome is Outcome.RETRYABLE else None
        profile = customer_profile(found)
        if profile is None or not profile.profile_id or profile.merchant_customer_id != merchant_customer_id:
            return None
        return _made_earlier(profile.profile_id, list(profile.payment_profile_ids))

    async def _profile(self, profile_id: str) -> CustomerProfile | ProviderResult:
        response = await self._send_repeatable(messages.get_customer_profile(self._credentials, profile_id))
        if isinstance(response, ProviderResult):
            return response
        profile = customer_profile(response) if response.ok else None
        return profile if profile is not None else self._refused(response)

    async def _add_payment_profile(self, customer: str, ref_id: str, opaque: tuple[str, str]) -> ProviderResult:
        document = messages.create_payment_profile(self._credentials, ref_id, customer, opaque)
        response = await self._send_repeatable(document)
        if isinstance(response, ProviderResult):
            return response
        if not response.ok and response.first_code != DUPLICATE_RECORD:
            return self._refused(response)
        return ProviderResult(
            Outcome.APPROVED, reference=customer, details=_customer_details(customer, payment_profile_ids(response))
        )

    async def _last_four(self, payment: PaymentRef) -> str | ProviderResult:
        kept = payment.details.get("last4") or str(payment.details.get("account_number") or "")[-4:]
        if kept:
            return str(kept)
        try:
            details = await self._details(payment.reference)
        except _LookupFailed as failure:
            return failure.result
        if details is None or not details.account_number:
            return ProviderResult(Outcome.PERMANENT, message="the original transaction's card is unknown")
        return details.account_number[-4:]

    def _refused(self, response: ApiResponse) -> ProviderResult:
        if is_authentication_failure(response) and not self._authentication_failure_logged:
            self._authentication_failure_logged = True
            logger.error(
                "Authorize.net rejected the API credentials (%s): check AUTHNET_API_LOGIN_ID and "
                "AUTHNET_TRANSACTION_KEY, and that AUTHNET_API_URL is the environment they belong to",
                response.first_code,
            )
        return request_outcome(response)


# -- pure helpers -----------------------------------------------------------------------------------------


def _added_by_earlier_attempt(
    reference: str, profile: CustomerProfile, recorded: frozenset[str]
) -> ProviderResult | None:
    """A re-drive's nonce was spent (E00114), most likely by its earlier attempt, whose answer was lost: the one
    payment profile the profile (read before this attempt sent anything) holds beyond those this system recorded
    is the one it added. None when there is not exactly one: the refusal stands."""
    unrecorded = [made for made in profile.payment_profile_ids if f"{reference}/{made}" not in recorded]
    return _made_earlier(reference, unrecorded) if len(unrecorded) == 1 else None


def _made_earlier(profile_id: str, payment_profiles: list[str]) -> ProviderResult:
    """A customer profile (with its payment profiles) that an earlier attempt of the command made."""
    details = _customer_details(profile_id, payment_profiles)
    details["existing"] = True
    return ProviderResult(Outcome.APPROVED, reference=profile_id, details=details)


def _nonce_not_kept() -> ProviderResult:
    """An update carried on without its Accept.js nonce (never stored) that had added nothing: it cannot be sent."""
    return ProviderResult(
        Outcome.PERMANENT,
        message="The Accept.js payment method of this update is not kept here: send a new one with a new key.",
        details={"invalid_param": "payment_method"},
    )


def _payment_method_refused(result: ProviderResult, source: PaymentSource) -> ProviderResult:
    """Authorize.net's refusals of the payment method itself are the client's to fix: 400 on payment_method, as
    Stripe answers a token used twice or a payment method it does not hold (a provider error would say retry)."""
    if result.outcome is not Outcome.PERMANENT:
        return result
    code = result.details.get("error_code")
    if code == INVALID_ONE_TIME_TOKEN and "opaque" in source:
        return _invalid_method("This Accept.js token was already used or has expired: ask Accept.js for a new one.")
    if code in NOT_FOUND_CODES and "profile" in source:
        return _invalid_method("No such payment method: Authorize.net holds no such customer payment profile.")
    return result


def _payment_source(method: PaymentMethod, customer_reference: str | None) -> PaymentSource | ProviderResult:
    if isinstance(method, OpaqueData):
        return {"opaque": (method.data_descriptor, method.data_value)}
    token = method.strip()
    if contains_card_number(token):
        return _invalid_method("card numbers are refused: send " + _METHOD_FORMS)
    profile = _PROFILE_TOKEN.match(token)
    if profile:
        return {"profile": (profile.group(1), profile.group(2))}
    if customer_reference and _PAYMENT_PROFILE_ID.match(token):
        return {"profile": (customer_reference, token)}
    return _invalid_method(f"Authorize.net takes {_METHOD_FORMS}")


def _opaque_only(method: PaymentMethod | None) -> tuple[str, str] | ProviderResult | None:
    if method is None:
        return None
    if isinstance(method, OpaqueData):
        return (method.data_descriptor, method.data_value)
    return _invalid_method("a customer's payment method on Authorize.net is Accept.js opaque data")


def _unsendable(source: PaymentSource) -> bool:
    """Opaque data whose value was not kept (a re-drive from the stream): it cannot be sent again."""
    opaque = source.get("opaque")
    return opaque is not None and not opaque[1]


def _now() -> datetime:
    return datetime.now(UTC)


def _submitted_before(summary: TransactionSummary, moment: datetime) -> bool:
    return summary.submitted is not None and summary.submitted < moment


def _unlisted(reference: str, since: datetime) -> ProviderResult:
    """A payment that may have been made but is not listed (and cannot be sent again: its token is spent or was not
    kept): looked up again shortly; past `NEVER_MADE_AFTER`, left unresolved for an operator, never failed."""
    if _now() - since < NEVER_MADE_AFTER:
        message = "Authorize.net does not list this payment yet; it is looked up again shortly"
        return ProviderResult.awaiting_reports(message, _LISTED_SOON_RETRY_S)
    message = (
        f"Authorize.net does not list this payment (invoice number {reference}) {_minutes(NEVER_MADE_AFTER)} "
        "minutes after it was first sent, and its Accept.js token cannot be sent again: an operator checks the "
        "Merchant Interface for the invoice number (payments-ops resolve --not-made if it is not there); it is "
        "looked up again until then"
    )
    return ProviderResult.left_unresolved([reference], message, _UNLISTED_RETRY_S)


def _minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


def _invalid_method(message: str) -> ProviderResult:
    details = {"invalid_payment_method": True, "invalid_param": "payment_method"}
    return ProviderResult(Outcome.PERMANENT, message=message, details=details)


def _from_details(details: TransactionDetails, currency: str, reference: str | None = None) -> ProviderResult:
    """A verdict rebuilt from getTransactionDetails, as if it were the transaction's own answer."""
    code = details.response_code or ("1" if details.status not in ("declined", "generalError") else "2")
    reason = (Message(details.reason_code or code, details.reason_text or details.status),)
    if details.status in _REVIEW_STATUSES:
        code = "4"
    elif code == "4":  # held, and reviewed since: its responseCode stays 4, its status is the merchant's decision
        code = "1" if details.status in _GONE_AHEAD_STATUSES else "2"
        reason = (Message(code, f"Held for review, then {details.status}."),)
    approved_or_held = code in ("1", "4")
    transaction = TransactionResponse(
        response_code=code,
        trans_id=reference or details.trans_id,
        ref_trans_id=details.ref_trans_id,
        auth_code=None,
        account_number=details.account_number,
        account_type=None,
        messages=reason if approved_or_held else (),
        errors=() if approved_or_held else reason,
    )
    result = judge_transaction(transaction, "Ok" if approved_or_held else "Error", None)
    amount = details.settle_amount or details.auth_amount
    extra: dict[str, Any] = {"transaction_status": details.status}
    if amount is not None and amount > Decimal(0):
        return _with_amount(_with_details(result, **extra), to_minor_units(amount, currency))
    return _with_details(result, **extra)


def _customer_details(profile_id: str | None, payment_profiles: list[str]) -> dict[str, Any]:
    details: dict[str, Any] = {"customer_profile_id": profile_id}
    if payment_profiles:
        details["payment_profile_id"] = payment_profiles[0]
        details["default_payment_method"] = f"{profile_id}/{payment_profiles[0]}"
    return details


def _with_amount(result: ProviderResult, amount: int) -> ProviderResult:
    if result.outcome not in (Outcome.APPROVED, Outcome.PENDING_REVIEW) or result.amount is not None:
        return result
    return _replace(result, amount=amount)


def _with_details(result: ProviderResult, **extra: Any) -> ProviderResult:
    return _replace(result, details={**result.details, **extra})


def _replace(result: ProviderResult, **changes: Any) -> ProviderResult:
    return dataclasses.replace(result, **changes)


def _unreachable() -> ProviderResult:
    return ProviderResult(Outcome.RETRYABLE, message="Authorize.net did not answer", retry_after=1.0)


def _unsupported(message: str) -> ProviderResult:
    return ProviderResult(Outcome.PERMANENT, message=message, details={"unsupported": True})


def _invalid(message: str, param: str) -> ProviderResult:
    return ProviderResult(Outcome.PERMANENT, message=message, details={"invalid_param": param})


def _payment_profile(method: PaymentMethod | None, customer_reference: str | None) -> tuple[str, str] | None:
    if method is None or isinstance(method, OpaqueData):
        return None
    source = _payment_source(method, customer_reference)
    return None if isinstance(source, ProviderResult) else source.get("profile")
