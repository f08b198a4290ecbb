"""Reading Authorize.net's XML answers with lxml.

The generated bindings leave some answers empty (the transaction list of
`getUnsettledTransactionListResponse`) and reject documents with elements newer than the SDK, so answers are
read by element name in the API's namespace, tolerating what is not there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from lxml import etree

NAMESPACE = "AnetApi/xml/v1/schema/AnetApiSchema.xsd"
_NS = {"a": NAMESPACE}
BOM = b"\xef\xbb\xbf"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class MalformedResponse(Exception):
    """The body is not one of the API's XML answers."""


@dataclass(frozen=True)
class Message:
    code: str
    text: str


@dataclass(frozen=True)
class ApiResponse:
    kind: str  # the root element's local name, e.g. createTransactionResponse
    result_code: str  # Ok | Error
    messages: tuple[Message, ...]
    ref_id: str | None
    root: etree._Element = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.result_code == "Ok"

    @property
    def first_code(self) -> str | None:
        return self.messages[0].code if self.messages else None

    def child_text(self, name: str) -> str | None:
        return _text(self.root, name)


@dataclass(frozen=True)
class TransactionResponse:
    response_code: str
    trans_id: str | None
    ref_trans_id: str | None
    auth_code: str | None
    account_number: str | None  # XXXX1111
    account_type: str | None
    messages: tuple[Message, ...]
    errors: tuple[Message, ...]

    @property
    def reason_code(self) -> str | None:
        if self.errors:
            return self.errors[0].code
        return self.messages[0].code if self.messages else None

    @property
    def reason_text(self) -> str | None:
        if self.errors:
            return self.errors[0].text
        return self.messages[0].text if self.messages else None


@dataclass(frozen=True)
class TransactionSummary:
    trans_id: str
    status: str
    invoice_number: str | None
    account_number: str | None
    settle_amount: Decimal | None
    submitted: datetime | None = None  # submitTimeUTC


@dataclass(frozen=True)
class TransactionDetails:
    trans_id: str
    ref_trans_id: str | None
    transaction_type: str | None
    status: str
    response_code: str | None
    reason_code: str | None
    reason_text: str | None
    invoice_number: str | None
    auth_amount: Decimal | None
    settle_amount: Decimal | None
    account_number: str | None


def strip_bom(body: bytes) -> bytes:
    """Authorize.net puts a UTF-8 byte order mark before its XML declaration."""
    body = body.lstrip()
    while body.startswith(BOM):
        body = body[len(BOM) :].lstrip()
    return body


def parse_response(body: bytes) -> ApiResponse:
    try:
        root = etree.fromstring(strip_bom(body), _PARSER)
    except etree.XMLSyntaxError as error:
        raise MalformedResponse(f"not XML: {error}") from None
    qname = etree.QName(root)
    if qname.namespace != NAMESPACE:
        raise MalformedResponse(f"unexpected root element {qname.text}")
    result_code = _text(root, "messages/a:resultCode")
    if result_code is None:
        raise MalformedResponse("no messages/resultCode")
    messages = tuple(_messages(root, "messages/a:message", "code", "text"))
    return ApiResponse(qname.localname, result_code, messages, _text(root, "refId"), root)


def transaction_response(response: ApiResponse) -> TransactionResponse | None:
    node = response.root.find("a:transactionResponse", _NS)
    if node is None:
        return None
    return TransactionResponse(
        response_code=_text(node, "responseCode") or "3",
        trans_id=_nonzero(_text(node, "transId")),
        ref_trans_id=_nonzero(_text(node, "refTransID")),
        auth_code=_text(node, "authCode"),
        account_number=_text(node, "accountNumber"),
        account_type=_text(node, "accountType"),
        messages=tuple(_messages(node, "messages/a:message", "code", "description")),
        errors=tuple(_messages(node, "errors/a:error", "errorCode", "errorText")),
    )


def transaction_list(response: ApiResponse) -> list[TransactionSummary]:
    summaries = []
    for node in response.root.iterfind("a:transactions/a:transaction", _NS):
        summaries.append(
            TransactionSummary(
                trans_id=_text(node, "transId") or "",
                status=_text(node, "transactionStatus") or "",
                invoice_number=_text(node, "invoiceNumber"),
                account_number=_text(node, "accountNumber"),
                settle_amount=_decimal(_text(node, "settleAmount")),
                submitted=_utc_timestamp(_text(node, "submitTimeUTC")),
            )
        )
    return summaries


def settled_batch_ids(response: ApiResponse) -> list[str]:
    """The batch ids of a getSettledBatchListResponse, the latest settled first."""
    batches = [
        (_text(node, "settlementTimeUTC") or "", _text(node, "batchId"))
        for node in response.root.iterfind("a:batchList/a:batch", _NS)
    ]
    return [batch_id for _, batch_id in sorted(batches, reverse=True) if batch_id]


def transaction_details(response: ApiResponse) -> TransactionDetails | None:
    node = response.root.find("a:transaction", _NS)
    if node is None:
        return None
    return TransactionDetails(
        trans_id=_text(node, "transId") or "",
        ref_trans_id=_nonzero(_text(node, "refTransId")),
        transaction_type=_text(node, "transactionType"),
        status=_text(node, "transactionStatus") or "",
        response_code=_text(node, "responseCode"),
        reason_code=_text(node, "responseReasonCode"),
        reason_text=_text(node, "responseReasonDescription"),
        invoice_number=_text(node, "order/a:invoiceNumber"),
        auth_amount=_decimal(_text(node, "authAmount")),
        settle_amount=_decimal(_text(node, "settleAmount")),
        account_number=_text(node, "payment/a:creditCard/a:cardNumber"),
    )


def customer_profile_id(response: ApiResponse) -> str | None:
    return response.child_text("customerProfileId")


def account_currencies(response: ApiResponse) -> tuple[str, ...]:
    """The currencies of a getMerchantDetailsResponse, lower case, the account's own first."""
    found = (node.text or "" for node in response.root.iterfind("a:currencies/a:currency", _NS))
    return tuple(code.strip().lower() for code in found if code.strip())


def payment_profile_ids(response: ApiResponse) -> list[str]:
    found = [node.text or "" for node in response.root.iterfind("a:customerPaymentProfileIdList/a:numericString", _NS)]
    single = response.child_text("customerPaymentProfileId")
    if single:
        found.append(single)
    return [value for value in found if value]


@dataclass(frozen=True)
class CustomerProfile:
    merchant_customer_id: str | None
    email: str | None
    description: str | None
    payment_profile_ids: tuple[str, ...]
    subscription_ids: tuple[str, ...] = ()  # the ARB subscriptions Authorize.net lists on the profile, any status
    profile_id: str | None = None  # customerProfileId


def customer_profile(response: ApiResponse) -> CustomerProfile | None:
    """The profile of a getCustomerProfileResponse."""
    node = response.root.find("a:profile", _NS)
    if node is None:
        return None
    ids = (_text(item, "customerPaymentProfileId") for item in node.iterfind("a:paymentProfiles", _NS))
    subscriptions = (item.text for item in response.root.iterfind("a:subscriptionIds/a:subscriptionId", _NS))
    return CustomerProfile(
        merchant_customer_id=_text(node, "merchantCustomerId"),
        email=_text(node, "email"),
        description=_text(node, "description"),
        payment_profile_ids=tuple(value for value in ids if value),
        subscription_ids=tuple(value.strip() for value in subscriptions if value and value.strip()),
        profile_id=_text(node, "customerProfileId"),
    )


@dataclass(frozen=True)
class SubscriptionSummary:
    """One `subscriptionDetail` of an ARBGetSubscriptionListResponse."""

    subscription_id: str
    name: str | None
    status: str | None
    created: datetime | None  # createTimeStampUTC
    invoice: str | None


def subscription_list(response: ApiResponse) -> tuple[list[SubscriptionSummary], int]:
    """The page of subscriptions an ARBGetSubscriptionListResponse holds, and how many the whole search found."""
    found = [
        SubscriptionSummary(
            subscription_id=_text(node, "id") or "",
            name=_text(node, "name"),
            status=_text(node, "status"),
            created=_utc_timestamp(_text(node, "createTimeStampUTC")),
            invoice=_text(node, "invoice"),
        )
        for node in response.root.iterfind("a:subscriptionDetails/a:subscriptionDetail", _NS)
    ]
    total = response.child_text("totalNumInResultSet")
    return found, int(total) if total and total.isdigit() else len(found)


def _utc_timestamp(value: str | None) -> datetime | None:
    """An API timestamp (`2024-04-28T23:59:47.33`, UTC, any number of decimals, maybe a `Z`)."""
    if value is None:
        return None
    whole, _, fraction = value.removesuffix("Z").partition(".")
    try:
        moment = datetime.fromisoformat(whole)
    except ValueError:
        return None
    micros = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    return moment.replace(microsecond=micros, tzinfo=UTC)


def _path(path: str) -> str:
    return path if path.startswith("a:") else f"a:{path}"


def _text(node: etree._Element, path: str) -> str | None:
    found = node.find(_path(path), _NS)
    if found is None or found.text is None:
        return None
    text = found.text.strip()
    return text or None


def _messages(node: etree._Element, path: str, code: str, text: str) -> list[Message]:
    return [Message(_text(item, code) or "", _text(item, text) or "") for item in node.iterfind(_path(path), _NS)]


def _nonzero(value: str | None) -> str | None:
    return None if value in (None, "0") else value


def _decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None
