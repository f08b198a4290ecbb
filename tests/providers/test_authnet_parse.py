"""Reading every Authorize.net answer the adapter uses, building its requests, and the outcome mapping (pure)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import pyxb
from authorizenet import apicontractsv1
from lxml import etree
from payments_shared.providers.authnet import arb, messages, outcomes
from payments_shared.providers.authnet.parse import (
    BOM,
    MalformedResponse,
    Message,
    TransactionResponse,
    customer_profile,
    customer_profile_id,
    parse_response,
    payment_profile_ids,
    strip_bom,
    transaction_details,
    transaction_list,
    transaction_response,
)
from payments_shared.providers.port import Outcome

FIXTURES = Path(__file__).parents[1] / "authnet_server" / "fixtures"
CREDENTIALS = messages.Credentials("login-id", "0123456789abcdef")


def fixture(name: str) -> bytes:
    body = (FIXTURES / name).read_bytes()
    assert body.startswith(BOM)  # as Authorize.net sends them
    return body


def test_bom_is_stripped_and_its_absence_tolerated():
    body = fixture("create_transaction_approved.xml")
    assert strip_bom(body) == body[3:]
    assert parse_response(body).kind == parse_response(body[3:]).kind == "createTransactionResponse"


@pytest.mark.parametrize("body", [b"", b"<html>502 Bad Gateway</html>", b"\xef\xbb\xbfnot xml", b"<a xmlns='x'/>"])
def test_a_body_that_is_not_an_api_answer_is_malformed(body):
    with pytest.raises(MalformedResponse):
        parse_response(body)


def test_approved_transaction_response():
    response = parse_response(fixture("create_transaction_approved.xml"))
    transaction = transaction_response(response)
    assert response.ok and response.ref_id == "123456"
    assert transaction is not None
    assert (transaction.response_code, transaction.trans_id, transaction.account_number) == (
        "1",
        "2149186848",
        "XXXX1111",
    )
    assert transaction.ref_trans_id is None  # <refTransID /> is empty
    result = outcomes.transaction_outcome(response, transaction)
    assert result.outcome is Outcome.APPROVED
    assert result.details["last4"] == "1111" and result.details["auth_code"] == "2H5G7S"


def test_declined_transaction_response():
    response = parse_response(fixture("create_transaction_declined.xml"))
    transaction = transaction_response(response)
    assert transaction is not None and not response.ok
    assert transaction.errors[0].code == "27"
    result = outcomes.transaction_outcome(response, transaction)
    assert (result.outcome, result.decline_code) == (Outcome.DECLINED, "incorrect_address")
    assert result.details["error_code"] == "E00027"


def test_authentication_failure():
    response = parse_response(fixture("authentication_failed.xml"))
    assert transaction_response(response) is None
    assert outcomes.is_authentication_failure(response)
    result = outcomes.request_outcome(response)
    assert result.outcome is Outcome.PERMANENT and result.details["error_code"] == "E00007"


def test_unsettled_transaction_list():
    summaries = transaction_list(parse_response(fixture("unsettled_list.xml")))
    assert [(s.trans_id, s.status, s.invoice_number, s.settle_amount) for s in summaries] == [
        ("12345", "authorizedPendingCapture", "INV00001", Decimal("2.00")),
        ("12346", "refundPendingSettlement", "INV00002", Decimal("1.00")),
    ]


def test_the_bindings_leave_the_unsettled_list_empty_which_is_why_lxml_reads_it():
    parsed = apicontractsv1.CreateFromDocument(fixture("unsettled_list.xml")[3:])
    assert parsed.transactions is None  # though the document holds two transactions


def test_transaction_details():
    details = transaction_details(parse_response(fixture("transaction_details.xml")))
    assert details is not None
    assert (details.trans_id, details.status, details.invoice_number, details.account_number) == (
        "12345",
        "authorizedPendingCapture",
        "INV00001",
        "XXXX1111",
    )
    assert (details.response_code, details.reason_code, details.auth_amount) == ("1", "1", Decimal("2.00"))


def test_customer_profile_answers():
    created = parse_response(fixture("create_customer_profile.xml"))
    assert (customer_profile_id(created), payment_profile_ids(created)) == ("190178", ["157497"])
    duplicate = parse_response(fixture("duplicate_customer_profile.xml"))
    assert not duplicate.ok and duplicate.first_code == outcomes.DUPLICATE_RECORD


def test_customer_profile_details():
    profile = customer_profile(parse_response(fixture("get_customer_profile.xml")))
    assert profile is not None
    assert (profile.merchant_customer_id, profile.email, profile.payment_profile_ids) == (
        "Merchant_Customer_ID",
        "customer-profile-email@here.com",
        ("35936989", "35945000"),
    )
    assert profile.subscription_ids == ("3078153",)  # listed beside the profile, as in Authorize.net's reference


def test_the_bindings_cannot_read_a_profile_with_a_merchant_customer_id_which_lxml_can():
    with pytest.raises(pyxb.PyXBException):
        apicontractsv1.CreateFromDocument(fixture("get_customer_profile.xml")[3:])


def test_reference_is_a_stable_20_character_digest():
    reference = messages.reference_for("3f0c1bd6-9a0e-4f4e-9d59-2e7d1d7a3a21")
    assert len(reference) == 20
    assert reference == messages.reference_for("3f0c1bd6-9a0e-4f4e-9d59-2e7d1d7a3a21")
    assert reference != messages.reference_for("another command")


def every_request() -> list[bytes]:
    ref = messages.reference_for("cmd")
    return [
        messages.payment_transaction(
            CREDENTIALS, ref, capture=True, amount=Decimal("10.99"), currency="usd", opaque=("D", "V"), description="x"
        ),
        messages.payment_transaction(
            CREDENTIALS, ref, capture=False, amount=Decimal(1), currency="usd", profile=("1", "2")
        ),
        messages.capture_transaction(CREDENTIALS, ref, "123", Decimal(5)),
        messages.void_transaction(CREDENTIALS, ref, "123"),
        messages.refund_transaction(CREDENTIALS, ref, "123", Decimal(1), "1111"),
        messages.unsettled_transactions(CREDENTIALS),
        messages.transaction_details(CREDENTIALS, "123"),
        messages.create_customer_profile(CREDENTIALS, ref, email="a@b.io", description="d", opaque=("D", "V")),
        messages.update_customer_profile(
            CREDENTIALS, ref, "55", merchant_customer_id=None, email="a@b.io", description=None
        ),
        messages.create_payment_profile(CREDENTIALS, ref, "55", ("D", "V")),
        messages.delete_customer_profile(CREDENTIALS, ref, "55"),
        messages.get_customer_profile(CREDENTIALS, "55"),
        messages.create_subscription(
            CREDENTIALS,
            ref,
            name="s",
            interval=(1, "months"),
            start=date(2030, 1, 1),
            amount=Decimal(5),
            quantity=1,
            profile=("1", "2"),
        ),
        messages.get_subscription(CREDENTIALS, "9"),
        messages.subscription_list(CREDENTIALS, "subscriptionInactive", 2),
        messages.update_subscription_amount(CREDENTIALS, ref, "9", Decimal(7), 2),
        messages.cancel_subscription(CREDENTIALS, ref, "9"),
    ]


@pytest.mark.parametrize("document", every_request())
def test_every_request_follows_the_schema_in_the_default_namespace(document):
    apicontractsv1.CreateFromDocument(document)  # raises on order, type or a missing element
    root = parse_request_root(document)
    assert root.startswith("{AnetApi/xml/v1/schema/AnetApiSchema.xsd}") and b"ns1:" not in document
    assert b"<refId>" not in document or len(document.split(b"<refId>")[1].split(b"<")[0]) <= 20


def parse_request_root(document: bytes) -> str:
    return str(etree.fromstring(document).tag)


def test_duplicate_window_and_invoice_are_sent_on_new_transactions():
    document = every_request()[0]
    assert b"<settingName>duplicateWindow</settingName>" in document
    assert f"<invoiceNumber>{messages.reference_for('cmd')}</invoiceNumber>".encode() in document


def test_credentials_never_show_in_repr():
    assert "0123456789abcdef" not in repr(CREDENTIALS)


def verdict(response_code: str, reason: str) -> TransactionResponse:
    message = (outcomes_message(reason),)
    approved = response_code in ("1", "4")
    return TransactionResponse(
        response_code, "1", None, None, "XXXX1111", "Visa", message if approved else (), () if approved else message
    )


def outcomes_message(reason: str) -> Message:
    return Message(reason, "text")


@pytest.mark.parametrize(
    ("response_code", "reason", "outcome", "decline_code"),
    [
        ("1", "1", Outcome.APPROVED, None),
        ("2", "2", Outcome.DECLINED, "generic_decline"),
        ("2", "27", Outcome.DECLINED, "incorrect_address"),
        ("2", "44", Outcome.DECLINED, "incorrect_cvc"),
        ("2", "45", Outcome.DECLINED, "incorrect_cvc"),
        ("2", "65", Outcome.DECLINED, "incorrect_cvc"),
        ("2", "250", Outcome.DECLINED, "fraudulent"),
        ("3", "8", Outcome.DECLINED, "expired_card"),
        ("3", "6", Outcome.DECLINED, "incorrect_number"),
        ("3", "19", Outcome.PERMANENT, None),
        ("3", "120", Outcome.PERMANENT, None),
        ("3", "13", Outcome.PERMANENT, None),
        ("3", "54", Outcome.PERMANENT, None),
        ("4", "253", Outcome.PENDING_REVIEW, None),
    ],
)
def test_outcome_mapping(response_code, reason, outcome, decline_code):
    result = outcomes.judge_transaction(verdict(response_code, reason), "Ok", None)
    assert (result.outcome, result.decline_code) == (outcome, decline_code)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [("E00001", Outcome.RETRYABLE), ("E00053", Outcome.RETRYABLE), ("E00007", Outcome.PERMANENT)],
)
def test_request_level_codes(code, outcome):
    body = (
        b'<createTransactionResponse xmlns="AnetApi/xml/v1/schema/AnetApiSchema.xsd"><messages>'
        b"<resultCode>Error</resultCode><message><code>" + code.encode() + b"</code><text>t</text></message>"
        b"</messages></createTransactionResponse>"
    )
    assert outcomes.request_outcome(parse_response(body)).outcome is outcome


@pytest.mark.parametrize(
    ("unit", "count", "schedule"),
    [
        ("day", 7, (7, "days")),
        ("day", 3, None),
        ("week", 2, (14, "days")),
        ("week", 53, None),
        ("month", 1, (1, "months")),
        ("month", 13, None),
        ("year", 1, (12, "months")),
        ("year", 2, None),
        ("fortnight", 1, None),
    ],
)
def test_arb_intervals(unit, count, schedule):
    assert arb.interval(unit, count) == schedule


def test_arb_start_date_moves_by_the_trial():
    assert arb.start_date(14, date(2030, 1, 1)) == date(2030, 1, 15)
    assert arb.start_date(None, date(2030, 1, 1)) == date(2030, 1, 1)


def test_arb_answers():
    duplicate = parse_response(
        b'<ARBCreateSubscriptionResponse xmlns="AnetApi/xml/v1/schema/AnetApiSchema.xsd"><messages>'
        b"<resultCode>Error</resultCode><message><code>E00012</code><text>You have submitted a duplicate of "
        b"Subscription 2990599. A duplicate subscription will not be created.</text></message></messages>"
        b"</ARBCreateSubscriptionResponse>"
    )
    assert arb.duplicate_of(duplicate) == "2990599"
    current = parse_response(
        b'<ARBGetSubscriptionResponse xmlns="AnetApi/xml/v1/schema/AnetApiSchema.xsd"><messages>'
        b"<resultCode>Ok</resultCode><message><code>I00001</code><text>Successful.</text></message></messages>"
        b"<subscription><name>s</name><amount>15.00</amount><status>active</status><order>"
        b"<invoiceNumber>x</invoiceNumber><description>quantity=3</description></order></subscription>"
        b"</ARBGetSubscriptionResponse>"
    )
    assert arb.current_pricing(current) == (Decimal(15), 3)
