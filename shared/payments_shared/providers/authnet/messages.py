"""Request documents for Authorize.net's XML API, built with the schema's own bindings (`apicontractsv1`).

The bindings enforce the schema's element order and types; `serialise` writes a document in the API's
default namespace (the form Authorize.net documents) rather than the `ns1:` prefixes pyxb would choose.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyxb.utils.domutils
from authorizenet import apicontractsv1 as anet

# pyxb warns "Multiple accepting paths" on every element of these bindings: noise, not a problem.
logging.getLogger("pyxb.binding.content").setLevel(logging.ERROR)

# Authorize.net refuses a second identical transaction within this many seconds (reason 11); 28800 is its maximum.
DUPLICATE_WINDOW_S = 28800
REFERENCE_LENGTH = 20  # refId, invoiceNumber and merchantCustomerId are at most 20 characters
LIST_PAGE = 1000  # the largest page the API serves
SUBSCRIPTION_PAGE = 1000  # the largest page of ARBGetSubscriptionList


def reference_for(idempotency_key: str) -> str:
    """The 20-character digest of a command id sent as `refId`/`invoiceNumber`: the same command, the same value."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:REFERENCE_LENGTH]


class Credentials:
    """The API login id and transaction key; `repr` never shows them."""

    def __init__(self, login_id: str, transaction_key: str) -> None:
        self._login_id = login_id
        self._transaction_key = transaction_key

    def binding(self) -> Any:
        return anet.merchantAuthenticationType(name=self._login_id, transactionKey=self._transaction_key)

    def __repr__(self) -> str:
        return "Credentials(***)"


def serialise(request: Any) -> bytes:
    support = pyxb.utils.domutils.BindingDOMSupport(default_namespace=anet.Namespace)
    document: bytes = request.toDOM(support).toxml(encoding="utf-8")
    return document


def _envelope(request: Any, credentials: Credentials, ref_id: str | None) -> Any:
    request.merchantAuthentication = credentials.binding()
    if ref_id is not None:
        request.refId = ref_id
    return request


def _transaction(credentials: Credentials, ref_id: str, transaction: Any) -> bytes:
    request = _envelope(anet.createTransactionRequest(), credentials, ref_id)
    request.transactionRequest = transaction
    return serialise(request)


def _settings(**values: str) -> Any:
    settings = anet.ArrayOfSetting()
    for name, value in values.items():
        settings.setting.append(anet.settingType(settingName=name, settingValue=value))
    return settings


def opaque_payment(data_descriptor: str, data_value: str) -> Any:
    payment = anet.paymentType()
    payment.opaqueData = anet.opaqueDataType(dataDescriptor=data_descriptor, dataValue=data_value)
    return payment


def payment_transaction(
    credentials: Credentials,
    reference: str,
    *,
    capture: bool,
    amount: Decimal,
    currency: str,
    opaque: tuple[str, str] | None = None,
    profile: tuple[str, str] | None = None,
    description: str | None = None,
) -> bytes:
    """authCaptureTransaction / authOnlyTransaction with opaque data or a customer payment profile."""
    transaction = anet.transactionRequestType()
    transaction.transactionType = "authCaptureTransaction" if capture else "authOnlyTransaction"
    transaction.amount = amount
    transaction.currencyCode = currency.upper()
    if opaque is not None:
        transaction.payment = opaque_payment(*opaque)
    if profile is not None:
        charged = anet.customerProfilePaymentType(customerProfileId=profile[0])
        charged.paymentProfile = anet.paymentProfile(paymentProfileId=profile[1])
        transaction.profile = charged
    transaction.order = anet.orderType(invoiceNumber=reference, description=(description or None) and description[:255])
    transaction.transactionSettings = _settings(duplicateWindow=str(DUPLICATE_WINDOW_S))
    return _transaction(credentials, reference, transaction)


def capture_transaction(credentials: Credentials, reference: str, trans_id: str, amount: Decimal) -> bytes:
    transaction = anet.transactionRequestType(transactionType="priorAuthCaptureTransaction", amount=amount)
    transaction.refTransId = trans_id
    return _transaction(credentials, reference, transaction)


def void_transaction(credentials: Credentials, reference: str, trans_id: str) -> bytes:
    transaction = anet.transactionRequestType(transactionType="voidTransaction")
    transaction.refTransId = trans_id
    return _transaction(credentials, reference, transaction)


def refund_transaction(
    credentials: Credentials, reference: str, trans_id: str, amount: Decimal, last_four: str
) -> bytes:
    transaction = anet.transactionRequestType(transactionType="refundTransaction", amount=amount)
    payment = anet.paymentType()
    payment.creditCard = anet.creditCardType(cardNumber=last_four, expirationDate="XXXX")
    transaction.payment = payment
    transaction.refTransId = trans_id
    transaction.order = anet.orderType(invoiceNumber=reference)
    transaction.transactionSettings = _settings(duplicateWindow=str(DUPLICATE_WINDOW_S))
    return _transaction(credentials, reference, transaction)


def unsettled_transactions(credentials: Credentials, page: int = 1) -> bytes:
    """One page (from 1) of the unsettled transactions, the newest first."""
    request = _envelope(anet.getUnsettledTransactionListRequest(), credentials, None)
    request.sorting = anet.TransactionListSorting(orderBy="submitTimeUTC", orderDescending=True)
    request.paging = anet.Paging(limit=LIST_PAGE, offset=page)
    return serialise(request)


def settled_batches(credentials: Credentials, first: datetime, last: datetime) -> bytes:
    """The batches settled between `first` and `last` (UTC; at most 31 days apart, the API's limit)."""
    request = _envelope(anet.getSettledBatchListRequest(), credentials, None)
    request.includeStatistics = False
    request.firstSettlementDate = first.replace(tzinfo=None)
    request.lastSettlementDate = last.replace(tzinfo=None)
    return serialise(request)


def batch_transactions(credentials: Credentials, batch_id: str, page: int) -> bytes:
    """One page (from 1) of a settled batch's transactions, the newest first."""
    request = _envelope(anet.getTransactionListRequest(), credentials, None)
    request.batchId = batch_id
    request.sorting = anet.TransactionListSorting(orderBy="submitTimeUTC", orderDescending=True)
    request.paging = anet.Paging(limit=LIST_PAGE, offset=page)
    return serialise(request)


def transaction_details(credentials: Credentials, trans_id: str) -> bytes:
    request = _envelope(anet.getTransactionDetailsRequest(), credentials, None)
    request.transId = trans_id
    return serialise(request)


def create_customer_profile(
    credentials: Credentials,
    reference: str,
    *,
    email: str | None,
    description: str | None,
    opaque: tuple[str, str] | None,
) -> bytes:
    profile = anet.customerProfileType(merchantCustomerId=reference)
    if description:
        profile.description = description[:255]
    if email:
        profile.email = email[:255]
    if opaque is not None:
        payment_profile = anet.customerPaymentProfileType(customerType="individual")
        payment_profile.payment = opaque_payment(*opaque)
        payment_profile.defaultPaymentProfile = True
        profile.paymentProfiles.append(payment_profile)
    request = _envelope(anet.createCustomerProfileRequest(), credentials, reference)
    request.profile = profile
    request.validationMode = "none"
    return serialise(request)


def update_customer_profile(
    credentials: Credentials,
    reference: str,
    customer_profile_id: str,
    *,
    merchant_customer_id: str | None,
    email: str | None,
    description: str | None,
) -> bytes:
    profile = anet.customerProfileExType(customerProfileId=customer_profile_id)
    if merchant_customer_id:
        profile.merchantCustomerId = merchant_customer_id
    if description:
        profile.description = description[:255]
    if email:
        profile.email = email[:255]
    request = _envelope(anet.updateCustomerProfileRequest(), credentials, reference)
    request.profile = profile
    return serialise(request)


def create_payment_profile(
    credentials: Credentials, reference: str, customer_profile_id: str, opaque: tuple[str, str]
) -> bytes:
    payment_profile = anet.customerPaymentProfileType(customerType="individual")
    payment_profile.payment = opaque_payment(*opaque)
    payment_profile.defaultPaymentProfile = True
    request = _envelope(anet.createCustomerPaymentProfileRequest(), credentials, reference)
    request.customerProfileId = customer_profile_id
    request.paymentProfile = payment_profile
    request.validationMode = "none"
    return serialise(request)


def get_customer_profile(credentials: Credentials, customer_profile_id: str) -> bytes:
    request = _envelope(anet.getCustomerProfileRequest(), credentials, None)
    request.customerProfileId = customer_profile_id
    return serialise(request)


def find_customer_profile(credentials: Credentials, merchant_customer_id: str) -> bytes:
    """getCustomerProfileRequest by merchantCustomerId (the schema takes it in place of customerProfileId)."""
    request = _envelope(anet.getCustomerProfileRequest(), credentials, None)
    request.merchantCustomerId = merchant_customer_id
    return serialise(request)


def delete_customer_profile(credentials: Credentials, reference: str, customer_profile_id: str) -> bytes:
    request = _envelope(anet.deleteCustomerProfileRequest(), credentials, reference)
    request.customerProfileId = customer_profile_id
    return serialise(request)


ONGOING_OCCURRENCES = 9999  # ARB's "no end date"


def create_subscription(
    credentials: Credentials,
    reference: str,
    *,
    name: str,
    interval: tuple[int, str],
    start: date,
    amount: Decimal,
    quantity: int,
    profile: tuple[str, str],
) -> bytes:
    """ARBCreateSubscriptionRequest charging a customer payment profile every `interval` (length, days|months).

    ARB knows one amount per occurrence; the quantity it is made of is kept in the order description.
    """
    schedule = anet.paymentScheduleType(startDate=start, totalOccurrences=ONGOING_OCCURRENCES)
    schedule.interval = anet.paymentScheduleTypeInterval(length=interval[0], unit=interval[1])
    subscription = anet.ARBSubscriptionType(name=name[:50], paymentSchedule=schedule, amount=amount)
    subscription.order = anet.orderType(invoiceNumber=reference, description=quantity_note(quantity))
    subscription.profile = anet.customerProfileIdType(customerProfileId=profile[0], customerPaymentProfileId=profile[1])
    request = _envelope(anet.ARBCreateSubscriptionRequest(), credentials, reference)
    request.subscription = subscription
    return serialise(request)


def quantity_note(quantity: int) -> str:
    return f"quantity={quantity}"


def update_subscription_amount(
    credentials: Credentials, reference: str, subscription_id: str, amount: Decimal, quantity: int
) -> bytes:
    request = _envelope(anet.ARBUpdateSubscriptionRequest(), credentials, reference)
    request.subscriptionId = subscription_id
    subscription = anet.ARBSubscriptionType(amount=amount)
    subscription.order = anet.orderType(description=quantity_note(quantity))
    request.subscription = subscription
    return serialise(request)


def get_merchant_details(credentials: Credentials) -> bytes:
    return serialise(_envelope(anet.getMerchantDetailsRequest(), credentials, None))


def get_subscription(credentials: Credentials, subscription_id: str) -> bytes:
    request = _envelope(anet.ARBGetSubscriptionRequest(), credentials, None)
    request.subscriptionId = subscription_id
    return serialise(request)


def subscription_list(credentials: Credentials, search_type: str, page: int) -> bytes:
    """One page (1-based) of the subscriptions `search_type` finds, the newest created first."""
    request = _envelope(anet.ARBGetSubscriptionListRequest(), credentials, None)
    request.searchType = search_type
    request.sorting = anet.ARBGetSubscriptionListSorting(orderBy="createTimeStampUTC", orderDescending=True)
    request.paging = anet.Paging(limit=SUBSCRIPTION_PAGE, offset=page)
    return serialise(request)


def cancel_subscription(credentials: Credentials, reference: str, subscription_id: str) -> bytes:
    request = _envelope(anet.ARBCancelSubscriptionRequest(), credentials, reference)
    request.subscriptionId = subscription_id
    return serialise(request)
