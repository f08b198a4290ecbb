"""Every transaction route of API.md over a real socket against the embedded server: charge, authorize,
capture (full, partial), refund (partial, the rest, too much), void, get, audit trail, each sandbox card."""

from __future__ import annotations

from typing import Any

import pytest

from tests.blackbox.server import Api, new_key

APPROVED = ["pm_card_visa", "pm_card_mastercard", "pm_card_amex"]
DECLINED = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
}
TRANSACTION_FIELDS = {
    "id",
    "object",
    "workspace",
    "status",
    "amount",
    "currency",
    "amount_authorized",
    "amount_captured",
    "amount_refunded",
    "provider",
    "provider_reference",
    "customer_id",
    "description",
    "metadata",
    "refunds",
    "failure_code",
    "failure_message",
    "next_action",
    "created_at",
    "updated_at",
    "dispute",  # an extension: the latest dispute a provider reported, or null
}


def created(response: Any, status: str) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("method", APPROVED)
def test_charge_with_each_approved_card(api: Api, method: str) -> None:
    response = api.charge(
        amount=1099, currency="USD", payment_method=method, description="order 7", metadata={"order": "7"}
    )
    body = created(response, "captured")
    assert set(body) == TRANSACTION_FIELDS
    assert body["id"].startswith("txn_")
    assert body["object"] == "transaction"
    assert body["workspace"] == api.workspace
    assert (body["amount"], body["currency"]) == (1099, "usd")
    assert (body["amount_authorized"], body["amount_captured"], body["amount_refunded"]) == (1099, 1099, 0)
    assert body["provider"] == "sandbox"
    assert body["provider_reference"]
    assert body["description"] == "order 7"
    assert body["metadata"] == {"order": "7"}
    assert body["refunds"] == []
    assert api.get(body["id"]).json() == body


def test_an_empty_metadata_value_on_a_charge_sets_no_key(api: Api) -> None:
    """As at Stripe, where "" unsets a key, on create as on update."""
    body = created(api.charge(metadata={"order": "7", "note": ""}), "captured")
    assert body["metadata"] == {"order": "7"}
    assert api.get(body["id"]).json()["metadata"] == {"order": "7"}


@pytest.mark.parametrize(("method", "decline_code"), list(DECLINED.items()))
def test_declines_are_402_card_error(api: Api, method: str, decline_code: str) -> None:
    response = api.charge(payment_method=method)
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "card_declined"
    assert error["decline_code"] == decline_code
    failed = api.get(error["transaction_id"])
    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"
    assert failed.json()["failure_code"]


def test_authentication_required_is_requires_action(api: Api) -> None:
    response = api.charge(payment_method="pm_card_authenticationRequired")
    assert response.status_code in (201, 202), response.text
    body = response.json()
    assert body["status"] == "requires_action"
    assert body["next_action"]


def test_processing_error_is_502(api: Api) -> None:
    response = api.charge(payment_method="pm_card_processingError")
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "provider_error"


def test_unknown_payment_method_is_400_on_payment_method(api: Api) -> None:
    response = api.charge(payment_method="pm_card_unknown")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "payment_method"


def test_authorize_then_full_capture(api: Api) -> None:
    authorized = created(api.authorize(amount=5000), "authorized")
    assert (authorized["amount_authorized"], authorized["amount_captured"]) == (5000, 0)
    captured = api.post("capture", {"transaction_id": authorized["id"]})
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"
    assert captured.json()["amount_captured"] == 5000


def test_partial_capture_releases_the_rest(api: Api) -> None:
    authorized = created(api.authorize(amount=5000), "authorized")
    captured = api.post("capture", {"transaction_id": authorized["id"], "amount": 3000})
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"
    assert captured.json()["amount_captured"] == 3000
    again = api.post("capture", {"transaction_id": authorized["id"], "amount": 1000})
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "conflict"


def test_capture_above_authorized_is_refused(api: Api) -> None:
    authorized = created(api.authorize(amount=5000), "authorized")
    response = api.post("capture", {"transaction_id": authorized["id"], "amount": 5001})
    assert response.status_code in (400, 409)
    assert api.get(authorized["id"]).json()["status"] == "authorized"


def test_refunds_partial_then_rest_then_nothing_left(api: Api) -> None:
    charged = created(api.charge(amount=1000), "captured")
    partial = api.post("refund", {"transaction_id": charged["id"], "amount": 300, "reason": "requested_by_customer"})
    assert partial.status_code == 200, partial.text
    assert partial.json()["status"] == "partially_refunded"
    assert partial.json()["amount_refunded"] == 300
    assert len(partial.json()["refunds"]) == 1
    assert partial.json()["refunds"][0]["id"].startswith("re_")
    too_much = api.post("refund", {"transaction_id": charged["id"], "amount": 701})
    assert too_much.status_code == 409
    assert too_much.json()["error"]["type"] == "conflict"
    rest = api.post("refund", {"transaction_id": charged["id"]})
    assert rest.status_code == 200, rest.text
    assert rest.json()["status"] == "refunded"
    assert rest.json()["amount_refunded"] == 1000
    assert [r["amount"] for r in rest.json()["refunds"]] == [300, 700]
    assert len({r["id"] for r in rest.json()["refunds"]}) == 2
    final = api.post("refund", {"transaction_id": charged["id"], "amount": 1})
    assert final.status_code == 409


def test_refund_of_an_uncaptured_authorization_is_409(api: Api) -> None:
    authorized = created(api.authorize(), "authorized")
    assert api.post("refund", {"transaction_id": authorized["id"]}).status_code == 409


def test_void_then_capture_is_409(api: Api) -> None:
    authorized = created(api.authorize(), "authorized")
    voided = api.post("void", {"transaction_id": authorized["id"]})
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    capture = api.post("capture", {"transaction_id": authorized["id"]})
    assert capture.status_code == 409
    assert capture.json()["error"]["type"] == "conflict"
    assert api.post("void", {"transaction_id": authorized["id"]}).status_code == 409


def test_void_of_a_captured_charge_is_409(api: Api) -> None:
    charged = created(api.charge(), "captured")
    assert api.post("void", {"transaction_id": charged["id"]}).status_code == 409


@pytest.mark.parametrize("route", ["capture", "refund", "void"])
def test_unknown_transaction_is_404(api: Api, route: str) -> None:
    response = api.post(route, {"transaction_id": "txn_doesnotexist000000000000"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_get_unknown_is_404(api: Api) -> None:
    for response in (api.get("txn_doesnotexist000000000000"), api.events("txn_doesnotexist000000000000")):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"


def test_audit_trail_lists_every_event_with_metadata(api: Api) -> None:
    charged = created(api.charge(amount=1000, key=new_key()), "captured")
    api.post("refund", {"transaction_id": charged["id"], "amount": 100}, key=new_key())
    response = api.events(charged["id"])
    assert response.status_code == 200, response.text
    events = response.json()["data"]
    assert len(events) >= 3
    assert [e["stream_version"] for e in events] == list(range(len(events)))
    positions = [e["position"] for e in events]
    assert positions == sorted(positions)
    for event in events:
        assert set(event) >= {"type", "data", "metadata", "stream_version", "position"}
        metadata = event["metadata"]
        assert metadata["actor"] == "blackbox-tester"
        assert metadata["workspace"] == api.workspace
        for name in ("correlation_id", "causation_id", "occurred_at"):
            assert metadata[name], name
    types = [e["type"] for e in events]
    assert any("Refund" in t for t in types)


def test_correlation_id_from_the_request_reaches_the_events(api: Api) -> None:
    response = api.http.post(
        "/api/v1/payments/charge",
        json={"amount": 500, "currency": "usd", "payment_method": "pm_card_visa"},
        headers={**api.headers(), "X-Request-Id": "trace-me-123"},
    )
    transaction = created(response, "captured")
    events = api.events(transaction["id"]).json()["data"]
    assert {e["metadata"]["correlation_id"] for e in events} == {"trace-me-123"}
