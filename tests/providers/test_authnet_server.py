"""The Authorize.net test server itself: it validates like the API, answers like the API, keeps state."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from authorizenet import apicontractsv1
from payments_shared.providers.authnet import messages
from payments_shared.providers.authnet.parse import (
    BOM,
    ApiResponse,
    parse_response,
    subscription_list,
    transaction_list,
    transaction_response,
)

from tests.authnet_server import fixture
from tests.authnet_server.server import LOGIN_ID, TRANSACTION_KEY, AuthnetTestServer

CREDENTIALS = messages.Credentials(LOGIN_ID, TRANSACTION_KEY)
authnet_server = fixture.authnet_server
NS = 'xmlns="AnetApi/xml/v1/schema/AnetApiSchema.xsd"'


def post(server: AuthnetTestServer, body: bytes) -> httpx.Response:
    return httpx.post(server.url, content=body, headers={"Content-Type": "text/xml"}, timeout=5)


def charge(reference: str, value: str = "tok", amount: str = "10.00") -> bytes:
    return messages.payment_transaction(
        CREDENTIALS, reference, capture=True, amount=Decimal(amount), currency="usd", opaque=("D", value)
    )


def test_answers_start_with_the_bom_and_follow_the_schema(authnet_server):
    answers = [
        post(authnet_server, charge("inv-1", "tok-1")),
        post(authnet_server, charge("inv-2", "test-decline")),
        post(authnet_server, messages.unsettled_transactions(CREDENTIALS)),
        post(authnet_server, messages.transaction_details(CREDENTIALS, "1500000001")),
        post(
            authnet_server,
            messages.create_customer_profile(CREDENTIALS, "r", email="a@b.io", description=None, opaque=("D", "p")),
        ),
        post(
            authnet_server,
            messages.update_customer_profile(
                CREDENTIALS, "r", "1500000003", merchant_customer_id=None, email="c@d.io", description=None
            ),
        ),
        post(authnet_server, messages.get_customer_profile(CREDENTIALS, "1500000003")),
        post(authnet_server, messages.create_payment_profile(CREDENTIALS, "r", "1500000003", ("D", "q"))),
        post(
            authnet_server,
            messages.create_subscription(
                CREDENTIALS,
                "r",
                name="s",
                interval=(1, "months"),
                start=date(2030, 1, 1),
                amount=Decimal(5),
                quantity=1,
                profile=("1500000003", "1500000004"),
            ),
        ),
        post(authnet_server, messages.get_subscription(CREDENTIALS, "1500000006")),
        post(authnet_server, messages.subscription_list(CREDENTIALS, "subscriptionActive", 1)),
        post(authnet_server, messages.update_subscription_amount(CREDENTIALS, "r", "1500000006", Decimal(7), 2)),
        post(authnet_server, messages.cancel_subscription(CREDENTIALS, "r", "1500000006")),
        post(authnet_server, messages.delete_customer_profile(CREDENTIALS, "r", "1500000003")),
        post(authnet_server, messages.get_merchant_details(CREDENTIALS)),
        post(
            authnet_server,
            messages.payment_transaction(
                CREDENTIALS, "inv-3", capture=True, amount=Decimal(500), currency="jpy", opaque=("D", "tok-3")
            ),
        ),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.content.startswith(BOM)
        if parse_response(answer.content).kind == "getCustomerProfileResponse":
            continue  # the bindings fail on any profile with a merchantCustomerId (see test_authnet_parse)
        parsed = apicontractsv1.CreateFromDocument(answer.content[3:])  # the schema's bindings accept it
        assert parsed.messages.resultCode in ("Ok", "Error")
    assert [parse_response(a.content).ok for a in answers] == [True, False, *[True] * 13, False]


def test_wrong_credentials_are_e00007(authnet_server):
    wrong = messages.Credentials(LOGIN_ID, "NotTheRightKey00")
    answer = parse_response(post(authnet_server, messages.unsettled_transactions(wrong)).content)
    assert (answer.kind, answer.first_code) == ("getUnsettledTransactionListResponse", "E00007")


def test_elements_out_of_order_are_e00003(authnet_server):
    body = (
        f"<getTransactionDetailsRequest {NS}><transId>1</transId><merchantAuthentication><name>{LOGIN_ID}</name>"
        f"<transactionKey>{TRANSACTION_KEY}</transactionKey></merchantAuthentication></getTransactionDetailsRequest>"
    ).encode()
    answer = parse_response(post(authnet_server, body).content)
    assert (answer.kind, answer.first_code) == ("ErrorResponse", "E00003")


def test_a_missing_required_element_is_e00003(authnet_server):
    body = (
        f"<getTransactionDetailsRequest {NS}><merchantAuthentication><name>{LOGIN_ID}</name>"
        f"<transactionKey>{TRANSACTION_KEY}</transactionKey></merchantAuthentication></getTransactionDetailsRequest>"
    ).encode()
    assert parse_response(post(authnet_server, body).content).first_code == "E00003"


@pytest.mark.parametrize("body", [b"<notAnApiCall/>", f"<fooRequest {NS}/>".encode()])
def test_unknown_methods_are_e00004(authnet_server, body):
    assert parse_response(post(authnet_server, body).content).first_code == "E00004"


def test_unsettled_list_by_invoice_and_settlement(authnet_server):
    post(authnet_server, charge("inv-a", "tok-a"))
    post(authnet_server, charge("inv-b", "tok-b"))
    listed = transaction_list(
        parse_response(post(authnet_server, messages.unsettled_transactions(CREDENTIALS)).content)
    )
    assert [s.invoice_number for s in listed] == ["inv-b", "inv-a"]  # newest first, as asked
    assert {s.status for s in listed} == {"capturedPendingSettlement"}

    authnet_server.settle()

    after = parse_response(post(authnet_server, messages.unsettled_transactions(CREDENTIALS)).content)
    assert after.ok and transaction_list(after) == []
    assert {t.status for t in authnet_server.state.transactions.values()} == {"settledSuccessfully"}


def test_duplicate_within_the_window_is_reason_11_with_the_original(authnet_server):
    first = transaction_response(parse_response(post(authnet_server, charge("inv-d", "tok-d-card-5555")).content))
    second = transaction_response(parse_response(post(authnet_server, charge("inv-d", "tok-e-card-5555")).content))
    assert first is not None and second is not None
    assert (second.response_code, second.reason_code, second.trans_id) == ("3", "11", first.trans_id)
    assert len(authnet_server.state.transactions) == 1


def test_opaque_tokens_are_single_use(authnet_server):
    post(authnet_server, charge("inv-t1", "tok-once"))
    again = parse_response(post(authnet_server, charge("inv-t2", "tok-once")).content)
    assert again.first_code == "E00114"


@pytest.mark.parametrize("mode", ["timeout", "drop"])
def test_faults_record_the_request_and_give_no_answer(authnet_server, mode):
    authnet_server.stall_s = 1.0
    authnet_server.fail_next(mode)
    with pytest.raises(httpx.TransportError):
        httpx.post(authnet_server.url, content=charge("inv-f", "tok-f"), timeout=0.3)
    assert len(authnet_server.state.payments_with_invoice("inv-f")) == 1


def test_500_control(authnet_server):
    authnet_server.fail_next("500")
    assert post(authnet_server, charge("inv-5", "tok-5")).status_code == 500
    assert len(authnet_server.state.payments_with_invoice("inv-5")) == 1
    authnet_server.fail_next("refuse500")
    assert post(authnet_server, charge("inv-6", "tok-6")).status_code == 500
    assert authnet_server.state.payments_with_invoice("inv-6") == []


def test_a_profile_billed_by_an_active_subscription_cannot_be_deleted(authnet_server):
    created = parse_response(
        post(
            authnet_server,
            messages.create_customer_profile(
                CREDENTIALS, "cus-1", email="a@example.com", description=None, opaque=("D", "tok-p")
            ),
        ).content
    )
    profile_id = created.child_text("customerProfileId")
    assert profile_id is not None
    payment_profile_id = next(iter(authnet_server.state.profiles[profile_id].payment_profiles))
    subscribe = messages.create_subscription(
        CREDENTIALS,
        "sub-1",
        name="n",
        interval=(1, "months"),
        start=date(2027, 1, 1),
        amount=Decimal("9.00"),
        quantity=1,
        profile=(profile_id, payment_profile_id),
    )
    subscription_id = parse_response(post(authnet_server, subscribe).content).child_text("subscriptionId")
    assert subscription_id is not None
    delete = messages.delete_customer_profile(CREDENTIALS, "del-1", profile_id)

    refused = parse_response(post(authnet_server, delete).content)
    assert (refused.result_code, refused.first_code) == ("Error", "E00106")
    assert profile_id in authnet_server.state.profiles

    post(authnet_server, messages.cancel_subscription(CREDENTIALS, "can-1", subscription_id))
    deleted = parse_response(post(authnet_server, delete).content)
    assert (deleted.result_code, profile_id in authnet_server.state.profiles) == ("Ok", False)


def test_arb_refuses_a_start_before_its_day_and_lists_by_search_type(authnet_server):
    created = parse_response(
        post(
            authnet_server,
            messages.create_customer_profile(CREDENTIALS, "cus-l", email="l@x.io", description=None, opaque=("D", "l")),
        ).content
    )
    profile_id = created.child_text("customerProfileId") or ""
    profile = (profile_id, next(iter(authnet_server.state.profiles[profile_id].payment_profiles)))

    def subscribe(reference: str, start: date) -> ApiResponse:
        document = messages.create_subscription(
            CREDENTIALS,
            reference,
            name=f"subscription {reference}",
            interval=(1, "months"),
            start=start,
            amount=Decimal(5),
            quantity=1,
            profile=profile,
        )
        return parse_response(post(authnet_server, document).content)

    today = datetime.now(UTC).date()  # the server's day is UTC's, whatever the machine's time zone
    assert subscribe("late", today - timedelta(days=1)).first_code == "E00017"
    first, second = subscribe("one", today), subscribe("two", today)
    post(authnet_server, messages.cancel_subscription(CREDENTIALS, "c", second.child_text("subscriptionId") or ""))
    authnet_server.advance_clock(24 * 3600)
    assert subscribe("one", today).first_code == "E00017"  # a day later, today is in the past

    def listed(search_type: str) -> ApiResponse:
        return parse_response(post(authnet_server, messages.subscription_list(CREDENTIALS, search_type, 1)).content)

    active, inactive = listed("subscriptionActive"), listed("subscriptionInactive")
    assert [(s.subscription_id, s.name, s.invoice) for s in subscription_list(active)[0]] == [
        (first.child_text("subscriptionId"), "subscription one", "one")
    ]
    assert [s.status for s in subscription_list(inactive)[0]] == ["canceled"]
