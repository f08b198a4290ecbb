"""What the test server remembers and how it answers, after Authorize.net's API reference.

Transactions move authorizedPendingCapture → capturedPendingSettlement → settledSuccessfully (a `settle` call,
the nightly batch), or to voided; refunds are new transactions in refundPendingSettlement. Only unbatched
transactions are in the unsettled list; each `settle` makes a batch, listed by getSettledBatchList (its
settlement time within the asked range) and read by getTransactionList. A transaction with the same type,
amount, card and invoice number as one within its duplicateWindow (default 120 s) is answered with responseCode
3, reason 11 and the original's transId and authCode. Accept.js tokens are single-use (E00114 the second time).

ARB subscriptions: a startDate before the server's day (UTC, its clock: `advance_clock`) is E00017; one with the same
profile, amount, interval, startDate and invoice number as an active one is E00012 naming it.
ARBGetSubscriptionListRequest pages through them by search type (subscriptionActive: active; subscriptionInactive:
suspended, canceled, terminated or expired), sorted as asked; totalNumInResultSet counts the whole search.

Test payment data, in the opaque `dataValue`: `test-reason-<N>` answers with reason code N (its response code
from REASONS), `test-decline`, `test-review` and `test-error` are short for 2, 253 and 19; `…-card-<4 digits>`
sets the card's last four digits (default 1111).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from lxml import etree

from tests.authnet_server.responses import NAMESPACE, Child, document

_NS = {"a": NAMESPACE}
# reason code -> (response code, text): the ones this server produces.
REASONS: dict[int, tuple[int, str]] = {
    1: (1, "This transaction has been approved."),
    2: (2, "This transaction has been declined."),
    4: (2, "This transaction has been declined."),
    6: (3, "The credit card number is invalid."),
    8: (3, "The credit card has expired."),
    11: (3, "A duplicate transaction has been submitted."),
    16: (3, "The transaction cannot be found."),
    19: (3, "An error occurred during processing. Please try again in 5 minutes."),
    27: (2, "The transaction has been declined because of an AVS mismatch."),
    33: (3, "A required field cannot be left blank."),
    44: (2, "This transaction has been declined."),
    45: (2, "This transaction has been declined."),
    47: (3, "The amount requested for settlement cannot be greater than the original amount authorized."),
    54: (3, "The referenced transaction does not meet the criteria for issuing a credit."),
    55: (3, "The sum of credits against the referenced transaction would exceed original debit amount."),
    39: (
        3,
        "The supplied currency code is either invalid, not supported, not allowed for this merchant "
        "or doesn't have an exchange rate.",
    ),
    65: (2, "This transaction has been declined."),
    252: (4, "Your order has been received. Thank you for your business!"),
    253: (4, "Your order has been received. Thank you for your business!"),
    310: (1, "This transaction has already been voided."),
    311: (1, "This transaction has already been captured."),
}
_SHORTHAND = {"test-decline": 2, "test-review": 253, "test-error": 19}
_UNSETTLED = ("authorizedPendingCapture", "capturedPendingSettlement", "refundPendingSettlement")


@dataclass
class Transaction:
    trans_id: str
    kind: str  # authCaptureTransaction, authOnlyTransaction, refundTransaction
    status: str
    response_code: int
    reason_code: int
    amount: Decimal
    invoice_number: str | None
    last_four: str
    payment_key: str  # the card or payment profile charged, for duplicate detection
    submitted: float
    auth_code: str
    ref_trans_id: str | None = None
    settle_amount: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)
    batch_id: str | None = None

    @property
    def batched(self) -> bool:
        return self.batch_id is not None


@dataclass
class CustomerProfile:
    profile_id: str
    merchant_customer_id: str | None
    email: str | None
    description: str | None
    payment_profiles: dict[str, str] = field(default_factory=dict)  # payment profile id -> last four


@dataclass
class Subscription:
    subscription_id: str
    customer_profile_id: str
    payment_profile_id: str
    amount: Decimal
    interval: tuple[int, str]
    start_date: str
    invoice_number: str | None
    order_description: str | None
    status: str = "active"
    name: str | None = None
    created: float = 0.0  # the server's clock


_INACTIVE = ("suspended", "canceled", "terminated", "expired")
_SEARCHES = {"subscriptionActive": ("active",), "subscriptionInactive": _INACTIVE}
_SUBSCRIPTION_ORDER = {
    "id": lambda s: int(s.subscription_id),
    "name": lambda s: s.name or "",
    "status": lambda s: s.status,
    "createTimeStampUTC": lambda s: s.created,
    "amount": lambda s: s.amount,
}


PROFILE_BILLED_BY_A_SUBSCRIPTION = (
    "The specified customer profile is associated with an active or suspended subscription and cannot be deleted."
)


class AuthnetState:
    def __init__(self, login_id: str, transaction_key: str) -> None:
        self.login_id = login_id
        self.transaction_key = transaction_key
        self.lock = threading.RLock()
        self.transactions: dict[str, Transaction] = {}
        self.profiles: dict[str, CustomerProfile] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.used_tokens: set[str] = set()
        # control: refuse a spent Accept.js token (E00114) before finding a duplicate profile (E00039). Which of the
        # two Authorize.net checks first is not published: the adapter must hold in either order.
        self.tokens_checked_first = False
        self.requests: list[str] = []  # root element names, in arrival order
        self.forced_reasons: list[int] = []  # control: answer the next payments with these reason codes
        self.lagging_lists = 0  # control: this many unsettled lists still miss the newest transactions
        self.currencies = ["USD"]  # control: the account's currencies, its own first; ARB bills in that one
        self.batches: dict[str, float] = {}  # batch id -> settlement time
        self.clock_offset_s = 0.0  # control: how far the server's clock is ahead of the real one
        # Within xsd:int, as the schema has profile and subscription ids (in a subscription list, for one).
        self._ids = itertools.count(1500000001)
        self._batch_ids = itertools.count(9100001)

    # -- control ----------------------------------------------------------------------------------------

    def settle(self) -> None:
        """The nightly batch: captured → settled, refunds → refundSettledSuccessfully; all leave the list."""
        with self.lock:
            batch_id = str(next(self._batch_ids))
            self.batches[batch_id] = time.time()  # the clock transactions are submitted by
            for transaction in self.transactions.values():
                if transaction.batched:
                    continue
                if transaction.status == "capturedPendingSettlement":
                    transaction.status = "settledSuccessfully"
                elif transaction.status == "refundPendingSettlement":
                    transaction.status = "refundSettledSuccessfully"
                if transaction.status != "authorizedPendingCapture":
                    transaction.batch_id = batch_id

    def add_other_payments(self, count: int) -> None:
        """`count` approved charges of other invoices, each submitted after every transaction so far."""
        with self.lock:
            latest = max((t.submitted for t in self.transactions.values()), default=self.now())
            for index in range(count):
                other = self._record(
                    "authCaptureTransaction", "capturedPendingSettlement", 1, 1, Decimal("1.00"), None, "4242", "x"
                )
                other.invoice_number = f"other-{other.trans_id}"
                other.payment_key = f"card:other-{other.trans_id}"
                other.settle_amount = other.amount
                other.submitted = latest + 1 + index / 1000

    def review(self, trans_id: str, approve: bool) -> None:
        """The merchant's decision on a held transaction (Merchant Interface, Suspicious Transactions): approved, it
        goes on as authorized or captured; declined, it is voided. Its original responseCode (4) stays."""
        with self.lock:
            held = self.transactions[trans_id]
            assert held.status in ("FDSPendingReview", "FDSAuthorizedPendingReview"), held.status
            if not approve:
                held.status = "voided"
            elif held.kind == "authOnlyTransaction":
                held.status = "authorizedPendingCapture"
            else:
                held.status = "capturedPendingSettlement"
                held.settle_amount = held.amount

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def today(self) -> str:
        return datetime.fromtimestamp(self.now(), UTC).date().isoformat()

    def payments_with_invoice(self, invoice_number: str) -> list[Transaction]:
        with self.lock:
            return [t for t in self.transactions.values() if t.invoice_number == invoice_number]

    # -- dispatch ---------------------------------------------------------------------------------------

    def answer(self, root: etree._Element) -> bytes:
        kind = etree.QName(root).localname
        response_kind = kind.removesuffix("Request") + "Response"
        ref_id = _text(root, "refId")
        with self.lock:
            self.requests.append(kind)
            if not self._authenticated(root):
                return document(
                    response_kind,
                    "Error",
                    "E00007",
                    "User authentication failed due to invalid authentication values.",
                    ref_id,
                )
            handler = getattr(self, f"_{kind}", None)
            if handler is None:
                return document(
                    "ErrorResponse", "Error", "E00004", "The name of the requested API method is invalid.", None
                )
            answer: bytes = handler(root, response_kind, ref_id)
            return answer

    def _authenticated(self, root: etree._Element) -> bool:
        return (
            _text(root, "merchantAuthentication/a:name") == self.login_id
            and _text(root, "merchantAuthentication/a:transactionKey") == self.transaction_key
        )

    def _not_a_token(self, token: str) -> bool:
        """An Accept.js token Authorize.net refuses (E00114): spent already, or empty (no nonce was sent)."""
        return not token or token in self.used_tokens

    # -- createTransactionRequest ------------------------------------------------------------------------

    def _createTransactionRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        request = root.find("a:transactionRequest", _NS)
        assert request is not None  # the schema requires it
        transaction_type = _text(request, "transactionType")
        if transaction_type in ("authCaptureTransaction", "authOnlyTransaction"):
            return self._pay(request, transaction_type, kind, ref_id)
        if transaction_type == "priorAuthCaptureTransaction":
            return self._capture(request, kind, ref_id)
        if transaction_type == "voidTransaction":
            return self._void(request, kind, ref_id)
        if transaction_type == "refundTransaction":
            return self._refund(request, kind, ref_id)
        return _transaction_answer(kind, ref_id, 3, 33, None, "XXXX0000")

    def _pay(self, request: etree._Element, transaction_type: str, kind: str, ref_id: str | None) -> bytes:
        currency = _text(request, "currencyCode")
        if currency is not None and currency not in self.currencies:
            return _transaction_answer(kind, ref_id, 3, 39, None, "XXXX0000")
        amount = Decimal(_text(request, "amount") or "0")
        invoice = _text(request, "order/a:invoiceNumber")
        token = _text(request, "payment/a:opaqueData/a:dataValue")
        if token is not None:
            if token in self.used_tokens:
                return document(kind, "Error", "E00114", "Invalid OTS Token.", ref_id)
            self.used_tokens.add(token)
            last_four, reason = _test_card(token)
            payment_key = f"card:{last_four}"
        else:
            customer = _text(request, "profile/a:customerProfileId") or ""
            payment_profile = _text(request, "profile/a:paymentProfile/a:paymentProfileId") or ""
            profile = self.profiles.get(customer)
            if profile is None or payment_profile not in profile.payment_profiles:
                return document(kind, "Error", "E00040", "The record cannot be found.", ref_id)
            last_four, reason = profile.payment_profiles[payment_profile], 1
            payment_key = f"profile:{customer}/{payment_profile}"
        if self.forced_reasons:
            reason = self.forced_reasons.pop(0)
        duplicate = self._duplicate_of(request, transaction_type, amount, payment_key, invoice)
        if duplicate is not None:
            return _transaction_answer(kind, ref_id, 3, 11, duplicate.trans_id, f"XXXX{last_four}", duplicate.auth_code)
        response_code = REASONS[reason][0]
        status = _status_after_payment(transaction_type, response_code)
        transaction = self._record(
            transaction_type, status, response_code, reason, amount, invoice, last_four, payment_key
        )
        if response_code == 1 and transaction_type == "authCaptureTransaction":
            transaction.settle_amount = amount
        return _transaction_answer(
            kind, ref_id, response_code, reason, transaction.trans_id, f"XXXX{last_four}", transaction.auth_code
        )

    def _capture(self, request: etree._Element, kind: str, ref_id: str | None) -> bytes:
        original = self.transactions.get(_text(request, "refTransId") or "")
        if original is None or original.kind != "authOnlyTransaction" or original.status == "voided":
            return _transaction_answer(kind, ref_id, 3, 16, None, "XXXX0000")
        if original.status != "authorizedPendingCapture":
            return _transaction_answer(kind, ref_id, 1, 311, original.trans_id, f"XXXX{original.last_four}")
        amount = Decimal(_text(request, "amount") or original.amount)
        if amount > original.amount:
            return _transaction_answer(kind, ref_id, 3, 47, None, f"XXXX{original.last_four}")
        original.status = "capturedPendingSettlement"
        original.settle_amount = amount
        return _transaction_answer(
            kind, ref_id, 1, 1, original.trans_id, f"XXXX{original.last_four}", original.auth_code
        )

    def _void(self, request: etree._Element, kind: str, ref_id: str | None) -> bytes:
        original = self.transactions.get(_text(request, "refTransId") or "")
        if original is None or original.batched:
            return _transaction_answer(kind, ref_id, 3, 16, None, "XXXX0000")
        if original.status == "voided":
            return _transaction_answer(kind, ref_id, 1, 310, original.trans_id, f"XXXX{original.last_four}")
        original.status = "voided"
        return _transaction_answer(
            kind, ref_id, 1, 1, original.trans_id, f"XXXX{original.last_four}", original.auth_code
        )

    def _refund(self, request: etree._Element, kind: str, ref_id: str | None) -> bytes:
        original = self.transactions.get(_text(request, "refTransId") or "")
        card = _text(request, "payment/a:creditCard/a:cardNumber") or ""
        amount = Decimal(_text(request, "amount") or "0")
        invoice = _text(request, "order/a:invoiceNumber")
        if original is None or original.status != "settledSuccessfully" or card[-4:] != original.last_four:
            return _transaction_answer(kind, ref_id, 3, 54, None, f"XXXX{card[-4:]}")
        if amount > original.settle_amount - original.refunded:
            return _transaction_answer(kind, ref_id, 3, 55, None, f"XXXX{card[-4:]}")
        payment_key = f"refund:{original.trans_id}"
        duplicate = self._duplicate_of(request, "refundTransaction", amount, payment_key, invoice)
        if duplicate is not None:
            return _transaction_answer(kind, ref_id, 3, 11, duplicate.trans_id, f"XXXX{card[-4:]}", duplicate.auth_code)
        refund = self._record(
            "refundTransaction", "refundPendingSettlement", 1, 1, amount, invoice, original.last_four, payment_key
        )
        refund.ref_trans_id = original.trans_id
        refund.settle_amount = amount
        original.refunded += amount
        return _transaction_answer(kind, ref_id, 1, 1, refund.trans_id, f"XXXX{card[-4:]}", refund_of=original.trans_id)

    def _duplicate_of(
        self, request: etree._Element, kind: str, amount: Decimal, payment_key: str, invoice: str | None
    ) -> Transaction | None:
        window = 120
        for setting in request.iterfind("a:transactionSettings/a:setting", _NS):
            if _text(setting, "settingName") == "duplicateWindow":
                window = int(_text(setting, "settingValue") or "120")
        now = self.now()
        for earlier in self.transactions.values():
            same = (earlier.kind, earlier.amount, earlier.payment_key, earlier.invoice_number) == (
                kind,
                amount,
                payment_key,
                invoice,
            )
            if same and now - earlier.submitted < window:
                return earlier
        return None

    def _record(
        self,
        kind: str,
        status: str,
        response_code: int,
        reason: int,
        amount: Decimal,
        invoice: str | None,
        last_four: str,
        payment_key: str,
    ) -> Transaction:
        trans_id = str(next(self._ids))
        transaction = Transaction(
            trans_id,
            kind,
            status,
            response_code,
            reason,
            amount,
            invoice,
            last_four,
            payment_key,
            self.now(),
            auth_code=f"A{trans_id[-5:]}" if response_code in (1, 4) else "",
        )
        self.transactions[trans_id] = transaction
        return transaction

    # -- reporting ----------------------------------------------------------------------------------------

    def _getUnsettledTransactionListRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        # Authorize.net's reporting lags behind its transactions: a lagging list misses the last minute.
        newest_shown = self.now() - 60 if self.lagging_lists > 0 else float("inf")
        self.lagging_lists = max(0, self.lagging_lists - 1)
        listed = [t for t in self.transactions.values() if not t.batched and t.submitted < newest_shown]
        return _transaction_page(root, kind, ref_id, listed)

    def _getSettledBatchListRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        # Dates are UTC, e.g. 2010-09-01T08:15:30; without them, the last 24 hours.
        last = _utc_seconds(_text(root, "lastSettlementDate")) or time.time()
        first = _utc_seconds(_text(root, "firstSettlementDate")) or last - 86400
        listed = [(batch_id, settled) for batch_id, settled in self.batches.items() if first <= settled <= last]
        if not listed:
            return document(kind, "Ok", "I00004", "No records found.", ref_id)
        batches = [("batch", _batch(batch_id, settled)) for batch_id, settled in listed]
        return document(kind, "Ok", "I00001", "Successful.", ref_id, [("batchList", batches)])

    def _getTransactionListRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        batch_id = _text(root, "batchId") or ""
        return _transaction_page(root, kind, ref_id, [t for t in self.transactions.values() if t.batch_id == batch_id])

    def _getTransactionDetailsRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        transaction = self.transactions.get(_text(root, "transId") or "")
        if transaction is None:
            return document(kind, "Error", "E00040", "The record cannot be found.", ref_id)
        return document(kind, "Ok", "I00001", "Successful.", ref_id, [("transaction", _details(transaction))])

    # -- customer profiles ----------------------------------------------------------------------------

    def _createCustomerProfileRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        merchant_id = _text(root, "profile/a:merchantCustomerId")
        email = _text(root, "profile/a:email")
        description = _text(root, "profile/a:description")
        if not (merchant_id or email or description):
            return document(kind, "Error", "E00041", "One or more fields in the profile must contain a value.", ref_id)
        tokens = [
            _text(node, "dataValue") or ""
            for node in root.iterfind("a:profile/a:paymentProfiles/a:payment/a:opaqueData", _NS)
        ]
        spent = any(self._not_a_token(token) for token in tokens)
        if spent and self.tokens_checked_first:
            return document(kind, "Error", "E00114", "Invalid OTS Token.", ref_id)
        for existing in self.profiles.values():
            if (existing.merchant_customer_id, existing.email, existing.description) == (
                merchant_id,
                email,
                description,
            ):
                return document(
                    kind, "Error", "E00039", f"A duplicate record with ID {existing.profile_id} already exists.", ref_id
                )
        if spent:
            return document(kind, "Error", "E00114", "Invalid OTS Token.", ref_id)
        profile = CustomerProfile(str(next(self._ids)), merchant_id, email, description)
        for token in tokens:
            self.used_tokens.add(token)
            profile.payment_profiles[str(next(self._ids))] = _test_card(token)[0]
        self.profiles[profile.profile_id] = profile
        body: list[Child] = [
            ("customerProfileId", profile.profile_id),
            ("customerPaymentProfileIdList", [("numericString", p) for p in profile.payment_profiles]),
            ("customerShippingAddressIdList", []),
            ("validationDirectResponseList", []),
        ]
        return document(kind, "Ok", "I00001", "Successful.", ref_id, body)

    def _getCustomerProfileRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        profile_id, merchant_id = _text(root, "customerProfileId"), _text(root, "merchantCustomerId")
        if profile_id or not merchant_id:
            profile = self.profiles.get(profile_id or "")
        else:  # the schema takes a merchantCustomerId in place of the profile id
            profile = next((p for p in self.profiles.values() if p.merchant_customer_id == merchant_id), None)
        if profile is None:
            return document(kind, "Error", "E00040", "The record cannot be found.", ref_id)
        payment_profiles: list[Child] = [
            (
                "paymentProfiles",
                [
                    ("customerProfileId", profile.profile_id),
                    ("customerPaymentProfileId", payment_profile_id),
                    ("payment", [("creditCard", [("cardNumber", f"XXXX{last_four}"), ("expirationDate", "XXXX")])]),
                ],
            )
            for payment_profile_id, last_four in profile.payment_profiles.items()
        ]
        body: list[Child] = [
            ("merchantCustomerId", profile.merchant_customer_id),
            ("description", profile.description),
            ("email", profile.email),
            ("customerProfileId", profile.profile_id),
            *payment_profiles,
        ]
        # As Authorize.net's reference shows it: the profile's ARB subscriptions (any status) beside the profile.
        billing = [
            sub.subscription_id for sub in self.subscriptions.values() if sub.customer_profile_id == profile.profile_id
        ]
        subscriptions: list[Child] = [("subscriptionIds", [("subscriptionId", found) for found in billing])]
        return document(
            kind, "Ok", "I00001", "Successful.", ref_id, [("profile", body), *(subscriptions if billing else [])]
        )

    def _updateCustomerProfileRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        profile = self.profiles.get(_text(root, "profile/a:customerProfileId") or "")
        if profile is None:
            return document(kind, "Error", "E00040", "The record cannot be found.", ref_id)
        # Authorize.net replaces the profile's fields with what the request holds.
        profile.merchant_customer_id = _text(root, "profile/a:merchantCustomerId")
        profile.email = _text(root, "profile/a:email")
        profile.description = _text(root, "profile/a:description")
        return document(kind, "Ok", "I00001", "Successful.", ref_id)

    def _createCustomerPaymentProfileRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        profile = self.profiles.get(_text(root, "customerProfileId") or "")
        if profile is None:
            return document(kind, "Error", "E00040", "The record cannot be found.", ref_id)
        token = _text(root, "paymentProfile/a:payment/a:opaqueData/a:dataValue") or ""
        if self._not_a_token(token):
            return document(kind, "Error", "E00114", "Invalid OTS Token.", ref_id)
        self.used_tokens.add(token)
        payment_profile_id = str(next(self._ids))
        profile.payment_profiles[payment_profile_id] = _test_card(token)[0]
        body: list[Child] = [
            ("customerProfileId", profile.profile_id),
            ("customerPaymentProfileId", payment_profile_id),
        ]
        return document(kind, "Ok", "I00001", "Successful.", ref_id, body)

    def _deleteCustomerProfileRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        profile_id = _text(root, "customerProfileId") or ""
        if profile_id not in self.profiles:
            return document(kind, "Error", "E00040", "The record cannot be found.", ref_id)
        if any(sub.customer_profile_id == profile_id and sub.status == "active" for sub in self.subscriptions.values()):
            return document(kind, "Error", "E00106", PROFILE_BILLED_BY_A_SUBSCRIPTION, ref_id)
        del self.profiles[profile_id]
        return document(kind, "Ok", "I00001", "Successful.", ref_id)

    # -- merchant ---------------------------------------------------------------------------------------

    def _getMerchantDetailsRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        body: list[Child] = [
            ("isTestMode", "false"),
            ("processors", [("processor", [("name", "First Data Nashville"), ("id", 2)])]),
            ("merchantName", "Test Merchant"),
            ("gatewayId", "565697"),
            ("marketTypes", [("marketType", "eCommerce")]),
            ("productCodes", [("productCode", "CNP")]),
            ("paymentMethods", [("paymentMethod", "Visa"), ("paymentMethod", "MasterCard")]),
            ("currencies", [("currency", code) for code in self.currencies]),
        ]
        return document(kind, "Ok", "I00001", "Successful.", ref_id, body)

    # -- recurring billing (ARB) ----------------------------------------------------------------------

    def _ARBCreateSubscriptionRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        customer = _text(root, "subscription/a:profile/a:customerProfileId") or ""
        payment_profile = _text(root, "subscription/a:profile/a:customerPaymentProfileId") or ""
        profile = self.profiles.get(customer)
        if profile is None or payment_profile not in profile.payment_profiles:
            return document(kind, "Error", "E00040", "The record cannot be found.", ref_id)
        length = int(_text(root, "subscription/a:paymentSchedule/a:interval/a:length") or 0)
        unit = _text(root, "subscription/a:paymentSchedule/a:interval/a:unit") or ""
        if not (7 <= length <= 365 if unit == "days" else 1 <= length <= 12):
            return document(kind, "Error", "E00018", "The subscription interval is not valid.", ref_id)
        start_date = _text(root, "subscription/a:paymentSchedule/a:startDate") or ""
        if start_date < self.today():
            return document(kind, "Error", "E00017", "Start Date must not occur before the submission date.", ref_id)
        candidate = Subscription(
            str(next(self._ids)),
            customer,
            payment_profile,
            Decimal(_text(root, "subscription/a:amount") or "0"),
            (length, unit),
            start_date,
            _text(root, "subscription/a:order/a:invoiceNumber"),
            _text(root, "subscription/a:order/a:description"),
            name=_text(root, "subscription/a:name"),
            created=self.now(),
        )
        for existing in self.subscriptions.values():
            if existing.status == "active" and _same_schedule(existing, candidate):
                text = f"You have submitted a duplicate of Subscription {existing.subscription_id}. "
                return document(kind, "Error", "E00012", text + "A duplicate subscription will not be created.", ref_id)
        self.subscriptions[candidate.subscription_id] = candidate
        body: list[Child] = [
            ("subscriptionId", candidate.subscription_id),
            ("profile", [("customerProfileId", customer), ("customerPaymentProfileId", payment_profile)]),
        ]
        return document(kind, "Ok", "I00001", "Successful.", ref_id, body)

    def _ARBGetSubscriptionRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        found = self.subscriptions.get(_text(root, "subscriptionId") or "")
        if found is None:
            return document(kind, "Error", "E00035", "The subscription cannot be found.", ref_id)
        schedule: list[Child] = [
            ("interval", [("length", found.interval[0]), ("unit", found.interval[1])]),
            ("startDate", found.start_date),
            ("totalOccurrences", 9999),
            ("trialOccurrences", 0),
        ]
        subscription: list[Child] = [
            ("name", found.name),
            ("paymentSchedule", schedule),
            ("amount", f"{found.amount:.2f}"),
            ("trialAmount", "0.00"),
            ("status", found.status),
            ("order", [("invoiceNumber", found.invoice_number), ("description", found.order_description)]),
        ]
        return document(kind, "Ok", "I00001", "Successful.", ref_id, [("subscription", subscription)])

    def _ARBGetSubscriptionListRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        statuses = _SEARCHES.get(_text(root, "searchType") or "", ())
        listed = sorted(
            (s for s in self.subscriptions.values() if s.status in statuses),
            key=_SUBSCRIPTION_ORDER.get(_text(root, "sorting/a:orderBy") or "id", _SUBSCRIPTION_ORDER["id"]),
            reverse=(_text(root, "sorting/a:orderDescending") or "false") == "true",
        )
        limit = int(_text(root, "paging/a:limit") or "1000")
        offset = int(_text(root, "paging/a:offset") or "1")
        page = listed[(offset - 1) * limit : offset * limit]
        body: list[Child] = [("totalNumInResultSet", len(listed))]
        if page:
            body.append(("subscriptionDetails", [("subscriptionDetail", self._subscription_detail(s)) for s in page]))
        return document(kind, "Ok", "I00001", "Successful.", ref_id, body)

    def _subscription_detail(self, subscription: Subscription) -> list[Child]:
        profile = self.profiles.get(subscription.customer_profile_id)
        last_four = profile.payment_profiles.get(subscription.payment_profile_id, "1111") if profile else "1111"
        return [
            ("id", subscription.subscription_id),
            ("name", subscription.name),
            ("status", subscription.status),
            ("createTimeStampUTC", _timestamp(subscription.created)[:-1]),
            ("firstName", ""),
            ("lastName", ""),
            ("totalOccurrences", 9999),
            ("pastOccurrences", 0),
            ("paymentMethod", "creditCard"),
            ("accountNumber", f"XXXX{last_four}"),
            ("invoice", subscription.invoice_number or ""),
            ("amount", f"{subscription.amount:.2f}"),
            ("currencyCode", self.currencies[0]),
            ("customerProfileId", subscription.customer_profile_id),
            ("customerPaymentProfileId", subscription.payment_profile_id),
        ]

    def _ARBUpdateSubscriptionRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        found = self.subscriptions.get(_text(root, "subscriptionId") or "")
        if found is None:
            return document(kind, "Error", "E00035", "The subscription cannot be found.", ref_id)
        if found.status != "active":
            return document(kind, "Error", "E00037", "The subscription cannot be updated.", ref_id)
        amount = _text(root, "subscription/a:amount")
        if amount is not None:
            found.amount = Decimal(amount)
        description = _text(root, "subscription/a:order/a:description")
        if description is not None:
            found.order_description = description
        return document(kind, "Ok", "I00001", "Successful.", ref_id)

    def _ARBCancelSubscriptionRequest(self, root: etree._Element, kind: str, ref_id: str | None) -> bytes:
        found = self.subscriptions.get(_text(root, "subscriptionId") or "")
        if found is None:
            return document(kind, "Error", "E00035", "The subscription cannot be found.", ref_id)
        if found.status == "canceled":
            return document(kind, "Ok", "I00002", "The subscription has already been canceled.", ref_id)
        found.status = "canceled"
        return document(kind, "Ok", "I00001", "Successful.", ref_id)


def _same_schedule(one: Subscription, other: Subscription) -> bool:
    fields = ("customer_profile_id", "payment_profile_id", "amount", "interval", "start_date", "invoice_number")
    return all(getattr(one, name) == getattr(other, name) for name in fields)


def _text(node: etree._Element, path: str) -> str | None:
    found = node.find(path if path.startswith("a:") else f"a:{path}", _NS)
    return None if found is None or found.text is None else found.text.strip()


def _test_card(token: str) -> tuple[str, int]:
    """(last four digits, reason code) that a test opaque dataValue stands for."""
    card = re.search(r"-card-(\d{4})", token)
    last_four = card.group(1) if card else "1111"
    forced = re.match(r"test-reason-(\d+)", token)
    if forced:
        return last_four, int(forced.group(1))
    for prefix, reason in _SHORTHAND.items():
        if token.startswith(prefix):
            return last_four, reason
    return last_four, 1


def _status_after_payment(transaction_type: str, response_code: int) -> str:
    if response_code == 1:
        return "authorizedPendingCapture" if transaction_type == "authOnlyTransaction" else "capturedPendingSettlement"
    if response_code == 4:
        return "FDSPendingReview"
    return "declined" if response_code == 2 else "generalError"


def _transaction_answer(
    kind: str,
    ref_id: str | None,
    response_code: int,
    reason: int,
    trans_id: str | None,
    account_number: str,
    auth_code: str = "",
    refund_of: str | None = None,
) -> bytes:
    text = REASONS[reason][1]
    verdict: Child = (
        ("messages", [("message", [("code", reason), ("description", text)])])
        if response_code in (1, 4)
        else ("errors", [("error", [("errorCode", reason), ("errorText", text)])])
    )
    transaction: list[Child] = [
        ("responseCode", response_code),
        ("authCode", auth_code),
        ("avsResultCode", "Y" if response_code == 1 else "P"),
        ("cvvResultCode", "P"),
        ("cavvResultCode", "2"),
        ("transId", trans_id or "0"),
        ("refTransID", refund_of or ""),
        ("transHash", ""),
        ("testRequest", "0"),
        ("accountNumber", account_number),
        ("accountType", "Visa"),
        verdict,
        ("transHashSha2", ""),
    ]
    if response_code in (1, 4):
        return document(kind, "Ok", "I00001", "Successful.", ref_id, [("transactionResponse", transaction)])
    return document(
        kind, "Error", "E00027", "The transaction was unsuccessful.", ref_id, [("transactionResponse", transaction)]
    )


def _transaction_page(root: etree._Element, kind: str, ref_id: str | None, listed: list[Transaction]) -> bytes:
    """A transaction list answer: `listed` sorted by submission time as asked, the page asked for."""
    descending = (_text(root, "sorting/a:orderDescending") or "false") == "true"
    ordered = sorted(listed, key=lambda t: t.submitted, reverse=descending)
    limit = int(_text(root, "paging/a:limit") or "1000")
    offset = int(_text(root, "paging/a:offset") or "1")
    page = ordered[(offset - 1) * limit : offset * limit]
    body: list[Child] = []
    if page:
        body.append(("transactions", [("transaction", _summary(t)) for t in page]))
    body.append(("totalNumInResultSet", len(page)))
    return document(kind, "Ok", "I00001", "Successful.", ref_id, body)


def _batch(batch_id: str, settled: float) -> list[Child]:
    return [
        ("batchId", batch_id),
        ("settlementTimeUTC", _timestamp(settled)),
        ("settlementTimeLocal", _timestamp(settled)[:-1]),
        ("settlementState", "settledSuccessfully"),
        ("paymentMethod", "creditCard"),
        ("marketType", "eCommerce"),
        ("product", "Card Not Present"),
    ]


def _utc_seconds(text: str | None) -> float | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _summary(transaction: Transaction) -> list[Child]:
    return [
        ("transId", transaction.trans_id),
        ("submitTimeUTC", _timestamp(transaction.submitted)),
        ("submitTimeLocal", _timestamp(transaction.submitted)[:-1]),
        ("transactionStatus", transaction.status),
        ("invoiceNumber", transaction.invoice_number),
        ("accountType", "Visa"),
        ("accountNumber", f"XXXX{transaction.last_four}"),
        ("settleAmount", f"{transaction.settle_amount or transaction.amount:.2f}"),
        ("marketType", "eCommerce"),
        ("product", "Card Not Present"),
    ]


def _details(transaction: Transaction) -> list[Child]:
    reason_text = REASONS[transaction.reason_code][1]
    return [
        ("transId", transaction.trans_id),
        ("refTransId", transaction.ref_trans_id),
        ("submitTimeUTC", _timestamp(transaction.submitted)),
        ("submitTimeLocal", _timestamp(transaction.submitted)[:-1]),
        ("transactionType", transaction.kind),
        ("transactionStatus", transaction.status),
        ("responseCode", transaction.response_code),
        ("responseReasonCode", transaction.reason_code),
        ("responseReasonDescription", reason_text),
        ("authCode", transaction.auth_code or None),
        ("AVSResponse", "Y"),
        ("order", [("invoiceNumber", transaction.invoice_number)] if transaction.invoice_number else None),
        ("authAmount", f"{transaction.amount:.2f}"),
        ("settleAmount", f"{transaction.settle_amount:.2f}"),
        ("taxExempt", "false"),
        (
            "payment",
            [
                (
                    "creditCard",
                    [("cardNumber", f"XXXX{transaction.last_four}"), ("expirationDate", "XXXX"), ("cardType", "Visa")],
                )
            ],
        ),
        ("recurringBilling", "false"),
        ("product", "Card Not Present"),
        ("marketType", "eCommerce"),
    ]
