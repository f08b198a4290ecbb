"""From Authorize.net's resultCode, responseCode and reason/error codes to the port's outcomes. Pure.

responseCode: 1 approved, 2 declined, 3 error, 4 held for review. Reason codes follow Authorize.net's published
response reason code list; decline codes use Stripe's names so a client can act on them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payments_shared.providers.authnet.parse import ApiResponse, TransactionResponse
from payments_shared.providers.port import Outcome, ProviderResult

# API message codes (messages/message/code) for a whole request.
AUTHENTICATION_CODES = frozenset({"E00005", "E00006", "E00007", "E00008", "E00059"})
RETRYABLE_CODES = frozenset({"E00001", "E00053", "E00104"})  # unexpected error, server too busy, maintenance
NOT_FOUND_CODES = frozenset({"E00040", "E00051"})  # record not found, original subscription not found
SUBSCRIPTION_NOT_FOUND = "E00035"  # ARBGetSubscription of an id Authorize.net does not hold
DUPLICATE_RECORD = "E00039"  # "A duplicate record with ID 123 already exists."
INVALID_ONE_TIME_TOKEN = "E00114"  # Accept.js opaque data used twice or expired
PROFILE_BILLED_BY_SUBSCRIPTION = "E00106"  # a customer profile an active or suspended ARB subscription bills
SUBSCRIPTION_BILLS_PROFILE = (
    "An Authorize.net subscription still bills this customer's payment profile: cancel it at Authorize.net first."
)

# Transaction reason codes that the adapter handles itself.
DUPLICATE_TRANSACTION = "11"
NOT_SETTLED_FOR_CREDIT = "54"
CREDITS_EXCEED_DEBIT = "55"  # "The sum of credits against the referenced transaction would exceed original debit…"
ALREADY_VOIDED = "310"
ALREADY_CAPTURED = "311"
UNSUPPORTED_CURRENCY = "39"  # "The supplied currency code is either invalid, not supported, not allowed…"

# Reason code -> decline code: what a client can act on.
DECLINE_CODES: dict[str, str] = {
    "2": "generic_decline",
    "3": "call_issuer",
    "4": "pickup_card",
    "6": "incorrect_number",
    "7": "invalid_expiry_date",
    "8": "expired_card",
    "17": "card_not_supported",
    "27": "incorrect_address",
    "28": "card_not_supported",
    "37": "incorrect_number",
    "41": "fraudulent",
    "44": "incorrect_cvc",
    "45": "incorrect_cvc",
    "65": "incorrect_cvc",
    "78": "incorrect_cvc",
    "127": "incorrect_address",
    "145": "incorrect_cvc",
    "165": "incorrect_cvc",
    "250": "fraudulent",
    "251": "fraudulent",
    "254": "fraudulent",
    "315": "incorrect_number",
    "316": "invalid_expiry_date",
    "317": "expired_card",
}
# Reasons under responseCode 3 that are about the card: a decline the customer can fix, not a system error.
CARD_ERROR_REASONS = frozenset({"6", "7", "8", "17", "28", "37", "78", "315", "316", "317"})
# Processor trouble ("An error occurred during processing. Please try again in 5 minutes.", reasons 19-23 and the
# like) is an error transaction Authorize.net keeps under the invoice number: a final failure, as Stripe's
# `processing_error`. The same attempt is never made again: its Accept.js token is spent (and never kept for a
# re-drive), and a look-up finds the error transaction; the client tries again with a new Idempotency-Key.


def transaction_outcome(response: ApiResponse, transaction: TransactionResponse) -> ProviderResult:
    """The outcome of a createTransactionResponse that carries a transactionResponse."""
    return judge_transaction(transaction, response.result_code, None if response.ok else response.first_code)


def judge_transaction(transaction: TransactionResponse, result_code: str, error_code: str | None) -> ProviderResult:
    reason = transaction.reason_code or ""
    message = transaction.reason_text
    details = _transaction_details(transaction, result_code, error_code)
    if transaction.response_code == "1":
        return ProviderResult(Outcome.APPROVED, reference=transaction.trans_id, message=message, details=details)
    if transaction.response_code == "4":
        return ProviderResult(Outcome.PENDING_REVIEW, reference=transaction.trans_id, message=message, details=details)
    if transaction.response_code == "2" or reason in CARD_ERROR_REASONS:
        decline = DECLINE_CODES.get(reason, "generic_decline")
        return ProviderResult(
            Outcome.DECLINED, reference=transaction.trans_id, decline_code=decline, message=message, details=details
        )
    if reason == UNSUPPORTED_CURRENCY:
        details["invalid_param"] = "currency"
    if reason == CREDITS_EXCEED_DEBIT:  # a refund above what remains refundable there: API.md's 409
        details["conflict"] = "amount_too_large"
    return ProviderResult(Outcome.PERMANENT, reference=transaction.trans_id, message=message, details=details)


def request_outcome(response: ApiResponse) -> ProviderResult:
    """The outcome of a request answered with messages only (resultCode Error, no transaction verdict)."""
    code = response.first_code or ""
    text = response.messages[0].text if response.messages else "Authorize.net refused the request"
    details = {"result_code": response.result_code, "error_code": code}
    if response.ok:
        return ProviderResult(Outcome.APPROVED, message=text, details=details)
    if code in RETRYABLE_CODES:
        return ProviderResult(Outcome.RETRYABLE, message=text, details=details)
    if code in AUTHENTICATION_CODES:
        return ProviderResult(Outcome.PERMANENT, message="Authorize.net rejected the API credentials", details=details)
    return ProviderResult(Outcome.PERMANENT, message=text, details=details)


def profile_billed_by_subscription(response: ApiResponse) -> ProviderResult:
    """E00106 on a profile's deletion: an ARB subscription still bills it, one this system does not know (made
    outside it; those it knows are canceled first). Only the merchant can end it: the profile's present state
    refuses the deletion (API.md's 409), Authorize.net did not fail."""
    return subscriptions_bill_profile(
        {"result_code": response.result_code, "error_code": PROFILE_BILLED_BY_SUBSCRIPTION}
    )


def subscriptions_bill_profile(details: Mapping[str, Any]) -> ProviderResult:
    """A profile's deletion refused (or, checked before, that would be) for ARB subscriptions still billing it."""
    return ProviderResult(
        Outcome.PERMANENT,
        message=SUBSCRIPTION_BILLS_PROFILE,
        details={**details, "conflict": "provider_subscription_active"},
    )


def is_authentication_failure(response: ApiResponse) -> bool:
    return not response.ok and response.first_code in AUTHENTICATION_CODES


def _transaction_details(transaction: TransactionResponse, result_code: str, error_code: str | None) -> dict[str, str]:
    details = {"result_code": result_code, "response_code": transaction.response_code}
    optional = {
        "reason_code": transaction.reason_code,
        "account_number": transaction.account_number,
        "account_type": transaction.account_type,
        "auth_code": transaction.auth_code,
    }
    details.update({key: value for key, value in optional.items() if value})
    if transaction.account_number:
        details["last4"] = transaction.account_number[-4:]
    if error_code:
        details["error_code"] = error_code
    return details
