"""State is always a fold of the stream, and an operator can replay the audit trail event by event.

A seeded random walk of valid operations on one workspace of a real embedded server: charges and authorizations
with the sandbox's test cards, captures (partial and full), refunds (partial, full, with and without an
Idempotency-Key), replays of keyed requests, voids, customers (create, PUT merge, DELETE), subscriptions (create, PUT,
cancel now and at period end) and signed provider webhooks naming those objects. After every step each object it
touched is read back and checked:
- its `GET` equals the project's own fold of its stream (`Transaction.from_events` rendered by `transaction_json`
  from `GET …/events`; the billing folds over the stored stream), so the reply is built from the stream alone;
- it equals what a small model of the walk expects (status, amounts, merged fields);
- amounts are consistent (captured ≤ authorized, refunded = the succeeded refunds ≤ captured) and its status moved
  only along API.md's diagram (the subscription's along its own).
At the end, with the server stopped, `payments-ops verify` reports nothing, the workspace's `payments-ops export`
folded stream by stream gives every object as the lists served it, `payments-ops audit` gives every object's
timeline as stored, and `payments-ops replay` (into an empty read model) rebuilds the lists the list routes served.

The second test walks the same way with Stripe (localstripe) as the provider, where webhooks move the objects too.
`FOLD_WALK_SEED` picks another walk, `FOLD_WALK_STEPS` / `FOLD_WALK_STRIPE_STEPS` a longer one; a failure names its
seed and step.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from payments_billing import customer as customer_domain
from payments_billing import subscription as subscription_domain
from payments_ops import cli as ops_cli
from payments_shared.eventstore.port import RecordedEvent
from payments_shared.eventstore.sqlite import to_recorded
from payments_transactions.domain.state import Transaction
from payments_transactions.views import events_json, transaction_json

from tests.blackbox.server import API, Server, embedded_server, mint_token, new_workspace
from tests.blackbox.test_customers import BILLING_PERMISSIONS
from tests.blackbox.test_webhooks import (
    AUTHNET,
    STRIPE,
    authnet_event,
    authnet_headers,
    stripe_event,
    stripe_headers,
    webhook_env,
)
from tests.ops.conftest import run_ops
from tests.support.localstripe_server import authenticate, running_localstripe, three_d_secure_method
from tests.support.stripe_webhooks import signed_stripe_event, stripe_signature_headers

SEED: Final = int(os.environ.get("FOLD_WALK_SEED", "20261127"))
STEPS: Final = int(os.environ.get("FOLD_WALK_STEPS", "300"))
WAIT_S: Final = 15.0

APPROVED: Final = ("pm_card_visa", "pm_card_mastercard", "pm_card_amex")
DECLINED: Final = (
    "pm_card_chargeDeclined",
    "pm_card_chargeDeclinedInsufficientFunds",
    "pm_card_chargeDeclinedExpiredCard",
)
CURRENCIES: Final = ("usd", "eur", "jpy")

# API.md: the only moves between statuses.
MOVES: Final = {
    "pending": {"authorized", "captured", "failed", "requires_action"},
    "requires_action": {"authorized", "captured", "failed"},
    "authorized": {"captured", "voided"},
    "captured": {"partially_refunded", "refunded"},
    "partially_refunded": {"partially_refunded", "refunded"},
    "failed": set(),
    "voided": set(),
    "refunded": set(),
}
REFUNDABLE: Final = ("captured", "partially_refunded")


# ---- what the walk expects -------------------------------------------------------------------------------------


@dataclass
class Txn:
    id: str
    status: str
    authorized: int
    captured: int = 0
    refunds: list[int] = field(default_factory=list)

    @property
    def refunded(self) -> int:
        return sum(self.refunds)

    @property
    def refundable(self) -> int:
        return self.captured - self.refunded


@dataclass
class Cus:
    id: str
    fields: dict[str, Any]
    deleted: bool = False
    subscriptions: list[str] = field(default_factory=list)


@dataclass
class Sub:
    id: str
    customer_id: str
    status: str
    quantity: int
    metadata: dict[str, str]
    cancel_at_period_end: bool = False


@dataclass
class Keyed:
    """A request sent with an Idempotency-Key and its first answer."""

    method: str
    route: str
    body: Any
    key: str
    status: int
    answer: Any


@dataclass
class Walk:
    http: httpx.Client
    data_dir: Path
    rng: random.Random
    workspace: str = field(default_factory=new_workspace)
    txns: dict[str, Txn] = field(default_factory=dict)
    customers: dict[str, Cus] = field(default_factory=dict)
    subscriptions: dict[str, Sub] = field(default_factory=dict)
    keyed: list[Keyed] = field(default_factory=list)
    seen_status: dict[str, str] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    step: int = 0

    def __post_init__(self) -> None:
        self.token = mint_token(self.workspace, ["payments:admin", *BILLING_PERMISSIONS], expires_in_s=3600)

    def call(self, method: str, route: str, body: Any = None, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        response = self.http.request(method, f"{API}/{route}", json=body, headers=headers)
        if key is not None and response.status_code != 409:
            self.keyed.append(Keyed(method, route, body, key, response.status_code, response.json()))
        return response

    def maybe_key(self) -> str | None:
        return f"walk-{uuid.UUID(int=self.rng.getrandbits(128)).hex}" if self.rng.random() < 0.6 else None

    def where(self) -> str:
        return f"seed {SEED}, step {self.step}"

    def expect(self, response: httpx.Response, status: int) -> Any:
        assert response.status_code == status, f"{self.where()}: {response.status_code} {response.text}"
        return response.json()

    # ---- transactions ------------------------------------------------------------------------------------------

    def pay(self) -> None:
        kind = self.rng.choice(("charge", "authorize"))
        amount = self.rng.randint(1, 20_000)
        method = self.rng.choices(
            (
                self.rng.choice(APPROVED),
                self.rng.choice(DECLINED),
                "pm_card_authenticationRequired",
                "pm_card_processingError",
            ),
            weights=(10, 2, 1, 1),
        )[0]
        body: dict[str, Any] = {"amount": amount, "currency": self.rng.choice(CURRENCIES), "payment_method": method}
        live = [c.id for c in self.customers.values() if not c.deleted]
        if live and self.rng.random() < 0.3:
            body["customer_id"] = self.rng.choice(live)
        if self.rng.random() < 0.3:
            body["metadata"] = {"order": str(self.step)}
        response = self.call("POST", kind, body, self.maybe_key())
        if method in APPROVED:
            answer = self.expect(response, 201)
            status = "captured" if kind == "charge" else "authorized"
            txn = Txn(answer["id"], status, amount, amount if kind == "charge" else 0)
        elif method in DECLINED:
            txn = Txn(self.expect(response, 402)["error"]["transaction_id"], "failed", 0)
        elif method == "pm_card_authenticationRequired":
            txn = Txn(self.expect(response, 201)["id"], "requires_action", 0)
        else:
            error = self.expect(response, 502)["error"]
            if not error.get("transaction_id"):
                return
            txn = Txn(error["transaction_id"], "failed", 0)
        self.txns[txn.id] = txn
        self.touched.add(txn.id)

    def pick_txn(self, *statuses: str) -> Txn | None:
        fitting = [t for t in self.txns.values() if not statuses or t.status in statuses]
        if not fitting or self.rng.random() < 0.1:  # now and then any transaction: the state must refuse
            fitting = list(self.txns.values())
        return self.rng.choice(fitting) if fitting else None

    def capture(self) -> None:
        txn = self.pick_txn("authorized")
        if txn is None:
            return
        body: dict[str, Any] = {"transaction_id": txn.id}
        if txn.status == "authorized" and self.rng.random() < 0.5:
            body["amount"] = self.rng.randint(1, txn.authorized)
        response = self.call("POST", "capture", body, self.maybe_key())
        self.touched.add(txn.id)
        if txn.status != "authorized":
            self.expect(response, 409)
            return
        self.expect(response, 200)
        txn.status, txn.captured = "captured", body.get("amount", txn.authorized)

    def refund(self) -> None:
        txn = self.pick_txn(*REFUNDABLE)
        if txn is None:
            return
        body: dict[str, Any] = {"transaction_id": txn.id}
        roll = self.rng.random()
        if roll < 0.6 and txn.refundable > 0:
            body["amount"] = self.rng.randint(1, max(1, txn.refundable // 2))
        elif roll < 0.7:
            body["amount"] = txn.refundable + 1  # above what is refundable: 409
        if self.rng.random() < 0.3:
            body["reason"] = "requested_by_customer"
        response = self.call("POST", "refund", body, self.maybe_key())
        self.touched.add(txn.id)
        amount = body.get("amount", txn.refundable)
        if txn.status not in REFUNDABLE or not 0 < amount <= txn.refundable:
            self.expect(response, 409)
            return
        self.expect(response, 200)
        txn.refunds.append(amount)
        txn.status = "refunded" if txn.refunded == txn.captured else "partially_refunded"

    def racing_refunds(self) -> None:
        """Three refunds of half of what is refundable sent at once: at most two succeed, the rest are 409."""
        txn = self.pick_txn(*REFUNDABLE)
        if txn is None or txn.status not in REFUNDABLE or txn.refundable < 2:
            return
        half = txn.refundable // 2
        body = {"transaction_id": txn.id, "amount": half}
        keys = [self.maybe_key() for _ in range(3)]
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda key: self.call("POST", "refund", body, key), keys))
        statuses = sorted(answer.status_code for answer in answers)
        assert set(statuses) <= {200, 409} and 1 <= statuses.count(200) <= 2, f"{self.where()}: {statuses}"
        txn.refunds.extend([half] * statuses.count(200))
        txn.status = "refunded" if txn.refunded == txn.captured else "partially_refunded"
        self.touched.add(txn.id)

    def capture_racing_void(self) -> None:
        """A capture and a void of one authorization sent at once: exactly one wins."""
        txn = self.pick_txn("authorized")
        if txn is None or txn.status != "authorized":
            return
        requests = [("capture", self.maybe_key()), ("void", self.maybe_key())]
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda r: self.call("POST", r[0], {"transaction_id": txn.id}, r[1]), requests))
        captured, voided = (answer.status_code for answer in answers)
        assert sorted((captured, voided)) == [200, 409], f"{self.where()}: capture {captured}, void {voided}"
        txn.status = "captured" if captured == 200 else "voided"
        txn.captured = txn.authorized if captured == 200 else 0
        self.touched.add(txn.id)

    def void(self) -> None:
        txn = self.pick_txn("authorized")
        if txn is None:
            return
        response = self.call("POST", "void", {"transaction_id": txn.id}, self.maybe_key())
        self.touched.add(txn.id)
        if txn.status != "authorized":
            self.expect(response, 409)
            return
        self.expect(response, 200)
        txn.status = "voided"

    def replay(self) -> None:
        """A keyed request sent again: its first answer, byte for byte, and nothing recorded; with another body 422."""
        if not self.keyed:
            return
        first = self.rng.choice(self.keyed)
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": first.key}
        again = self.http.request(first.method, f"{API}/{first.route}", json=first.body, headers=headers)
        assert (again.status_code, again.json()) == (first.status, first.answer), self.where()
        assert again.headers.get("Idempotent-Replayed") == "true", self.where()
        if isinstance(first.body, dict) and "amount" in first.body and self.rng.random() < 0.3:
            other = {**first.body, "amount": first.body["amount"] + 1}
            changed = self.http.request(first.method, f"{API}/{first.route}", json=other, headers=headers)
            self.expect(changed, 422)
        self.touched.update(_ids_in(first.answer))

    # ---- customers and subscriptions ---------------------------------------------------------------------------

    def create_customer(self) -> None:
        body: dict[str, Any] = {"email": f"c{self.step}@example.com", "payment_method": "pm_card_visa"}
        if self.rng.random() < 0.5:
            body["name"] = f"Customer {self.step}"
        if self.rng.random() < 0.5:
            body["metadata"] = {"tier": self.rng.choice(("a", "b")), "since": str(self.step)}
        answer = self.expect(self.call("POST", "customers", body, self.maybe_key()), 201)
        fields = {"email": body["email"], "name": body.get("name"), "metadata": dict(body.get("metadata", {}))}
        self.customers[answer["id"]] = Cus(answer["id"], fields)
        self.touched.add(answer["id"])

    def pick_customer(self) -> Cus | None:
        live = [c for c in self.customers.values() if not c.deleted]
        return self.rng.choice(live) if live else None

    def update_customer(self) -> None:
        cus = self.pick_customer()
        if cus is None:
            return
        body: dict[str, Any] = {}
        if self.rng.random() < 0.5:
            body["name"] = f"Renamed {self.step}"
        if self.rng.random() < 0.5:
            body["phone"] = f"+1555{self.step:07d}"
        metadata = {self.rng.choice(("tier", "since", "note")): self.rng.choice(("", "x", "y"))}
        body["metadata"] = metadata
        self.expect(self.call("PUT", f"customers/{cus.id}", body, self.maybe_key()), 200)
        cus.fields.update({name: value for name, value in body.items() if name != "metadata"})
        merged = {**cus.fields["metadata"], **metadata}
        cus.fields["metadata"] = {name: value for name, value in merged.items() if value != ""}
        self.touched.add(cus.id)

    def delete_customer(self) -> None:
        cus = self.pick_customer()
        if cus is None:
            return
        answer = self.expect(self.call("DELETE", f"customers/{cus.id}", key=self.maybe_key()), 200)
        assert answer == {"id": cus.id, "object": "customer", "deleted": True}, self.where()
        cus.deleted = True
        self.touched.add(cus.id)
        for sub_id in cus.subscriptions:  # its subscriptions are canceled first, as Stripe does
            self.subscriptions[sub_id].status = "canceled"
            self.subscriptions[sub_id].cancel_at_period_end = False
            self.touched.add(sub_id)

    def subscribe(self) -> None:
        cus = self.pick_customer()
        if cus is None:
            return
        body: dict[str, Any] = {"customer_id": cus.id, "amount": self.rng.randint(100, 5000), "currency": "usd"}
        body["interval"] = self.rng.choice(("day", "week", "month", "year"))
        body["quantity"] = self.rng.randint(1, 3)
        trial = self.rng.random() < 0.3
        if trial:
            body["trial_days"] = self.rng.randint(1, 30)
        answer = self.expect(self.call("POST", "subscriptions", body, self.maybe_key()), 201)
        status = "trialing" if trial else "active"
        self.subscriptions[answer["id"]] = Sub(answer["id"], cus.id, status, body["quantity"], {})
        cus.subscriptions.append(answer["id"])
        self.touched.add(answer["id"])

    def pick_subscription(self) -> Sub | None:
        if not self.subscriptions:
            return None
        open_ones = [s for s in self.subscriptions.values() if s.status != "canceled"]
        return self.rng.choice(
            open_ones if open_ones and self.rng.random() < 0.9 else list(self.subscriptions.values())
        )

    def update_subscription(self) -> None:
        sub = self.pick_subscription()
        if sub is None:
            return
        body: dict[str, Any] = {}
        roll = self.rng.random()
        if roll < 0.3:
            body["quantity"] = self.rng.randint(1, 5)
        elif roll < 0.55:
            body["metadata"] = {self.rng.choice(("plan", "seat")): self.rng.choice(("", "pro", "team"))}
        elif roll < 0.75:
            body["cancel_at_period_end"] = self.rng.random() < 0.5
        elif roll < 0.9:
            body["amount"] = self.rng.randint(100, 5000)
        else:  # a price of its own interval: a new period may start
            body["price"] = self.rng.choice(("price_sandbox_weekly", "price_sandbox_monthly", "price_sandbox_yearly"))
        response = self.call("PUT", f"subscriptions/{sub.id}", body, self.maybe_key())
        self.touched.add(sub.id)
        if sub.status == "canceled" and set(body) != {"metadata"}:  # as at Stripe, it takes only new metadata
            self.expect(response, 409)
            return
        self.expect(response, 200)
        sub.quantity = body.get("quantity", sub.quantity)
        sub.cancel_at_period_end = body.get("cancel_at_period_end", sub.cancel_at_period_end)
        merged = {**sub.metadata, **body.get("metadata", {})}
        sub.metadata = {name: value for name, value in merged.items() if value != ""}

    def cancel_subscription(self) -> None:
        sub = self.pick_subscription()
        if sub is None:
            return
        at_period_end = self.rng.random() < 0.5
        response = self.call(
            "POST", f"subscriptions/{sub.id}/cancel", {"at_period_end": at_period_end}, self.maybe_key()
        )
        self.touched.add(sub.id)
        if sub.status == "canceled":
            self.expect(response, 409)
        elif at_period_end:
            self.expect(response, 200)
            sub.cancel_at_period_end = True
        else:
            self.expect(response, 200)
            sub.status, sub.cancel_at_period_end = "canceled", False

    # ---- provider webhooks ---------------------------------------------------------------------------------------

    def webhook(self) -> None:
        """A signed Stripe or Authorize.net event naming one of our objects' provider ids. They are the sandbox's, so
        each is recorded once and changes nothing; a second delivery is a duplicate."""
        objects = [*self.txns, *self.customers, *self.subscriptions]
        if not objects:
            return
        object_id = self.rng.choice(objects)
        reference = self.read(object_id).get("provider_reference") or object_id
        route, body = self.rng.choice(_provider_events(reference))
        headers = stripe_headers(body) if route == STRIPE else authnet_headers(body)
        for duplicate in (False, True):
            response = self.http.post(route, content=body, headers=headers)
            assert (response.status_code, response.json()) == (200, {"received": True, "duplicate": duplicate})
        self.touched.add(object_id)

    # ---- reading back and checking ------------------------------------------------------------------------------

    def read(self, object_id: str) -> dict[str, Any]:
        route = {"txn": "transactions", "cus": "customers", "sub": "subscriptions"}[object_id[:3]]
        response = self.call("GET", f"{route}/{object_id}")
        if response.status_code == 404:
            return {}
        return dict(self.expect(response, 200))

    def stored(self, object_id: str) -> list[RecordedEvent]:
        stream = {"txn": "transaction-", "cus": "customer-", "sub": "subscription-"}[object_id[:3]] + object_id
        return stream_events(self.data_dir, stream)

    def check_touched(self) -> None:
        for object_id in sorted(self.touched):
            {"txn": self.check_transaction, "cus": self.check_customer, "sub": self.check_subscription}[object_id[:3]](
                object_id
            )
        self.touched.clear()

    def check_transaction(self, txn_id: str) -> None:
        shown = self.read(txn_id)
        served = self.expect(self.call("GET", f"transactions/{txn_id}/events"), 200)["data"]
        folded = Transaction.from_events([served_event(txn_id, event) for event in served])
        assert folded is not None, self.where()
        assert shown == transaction_json(folded), f"{self.where()}: {txn_id} is not the fold of its events"
        assert served_as_stored(self.stored(txn_id)) == served, f"{self.where()}: {txn_id}'s events are not as stored"
        expected = self.txns[txn_id]
        assert (shown["status"], shown["amount_captured"], shown["amount_refunded"]) == (
            expected.status,
            expected.captured,
            expected.refunded,
        ), f"{self.where()}: {txn_id} {shown}"
        assert [r["amount"] for r in shown["refunds"] if r["status"] == "succeeded"] == expected.refunds, self.where()
        assert shown["amount_authorized"] == expected.authorized, self.where()
        self.check_amounts(shown)
        self.check_move(txn_id, shown["status"], MOVES)

    def check_amounts(self, shown: dict[str, Any]) -> None:
        succeeded = sum(r["amount"] for r in shown["refunds"] if r["status"] == "succeeded")
        assert shown["amount_captured"] <= shown["amount_authorized"] <= shown["amount"], self.where()
        assert shown["amount_refunded"] == succeeded <= shown["amount_captured"], self.where()

    def check_move(self, object_id: str, status: str, moves: dict[str, Any]) -> None:
        before = self.seen_status.get(object_id)
        if before is not None and before != status:
            assert status in moves[before], f"{self.where()}: {object_id} moved from {before} to {status}"
        self.seen_status[object_id] = status

    def check_customer(self, cus_id: str) -> None:
        shown = self.read(cus_id)
        folded = customer_domain.fold(self.stored(cus_id))
        assert folded is not None, self.where()
        expected = self.customers[cus_id]
        if expected.deleted:
            assert (shown, folded.deleted) == ({}, True), f"{self.where()}: {cus_id} still shown after DELETE"
            return
        assert shown == folded.to_api(), f"{self.where()}: {cus_id} is not the fold of its stream"
        assert {name: shown[name] for name in expected.fields} == expected.fields, self.where()

    def check_subscription(self, sub_id: str) -> None:
        shown = self.read(sub_id)
        folded = subscription_domain.fold(self.stored(sub_id))
        assert folded is not None, self.where()
        assert shown == folded.to_api(), f"{self.where()}: {sub_id} is not the fold of its stream"
        expected = self.subscriptions[sub_id]
        assert (shown["status"], shown["quantity"], shown["metadata"], shown["cancel_at_period_end"]) == (
            expected.status,
            expected.quantity,
            expected.metadata,
            expected.cancel_at_period_end,
        ), f"{self.where()}: {sub_id} {shown}"
        # As Stripe: canceled once it is, or when a cancel at the period end was asked (the time it was asked).
        ended_or_ending = expected.status == "canceled" or expected.cancel_at_period_end
        assert (shown["canceled_at"] is not None) == ended_or_ending, self.where()
        self.check_move(sub_id, shown["status"], {**subscription_domain.MOVES})

    # ---- the walk ------------------------------------------------------------------------------------------------

    def run(self, steps: int) -> None:
        moves: dict[Callable[[], None], int] = {
            self.pay: 8,
            self.capture: 4,
            self.refund: 6,
            self.racing_refunds: 1,
            self.void: 2,
            self.capture_racing_void: 1,
            self.replay: 3,
            self.create_customer: 2,
            self.update_customer: 2,
            self.delete_customer: 1,
            self.subscribe: 2,
            self.update_subscription: 2,
            self.cancel_subscription: 1,
            self.webhook: 2,
        }
        for self.step in range(steps):
            move = self.rng.choices(list(moves), weights=list(moves.values()))[0]
            move()
            self.check_touched()


def _ids_in(answer: Any) -> set[str]:
    if not isinstance(answer, dict):
        return set()
    found = {str(answer.get("id") or "")} | {str(answer.get("error", {}).get("transaction_id") or "")}
    return {object_id for object_id in found if object_id[:4] in ("txn_", "cus_", "sub_")}


def _provider_events(reference: str) -> list[tuple[str, bytes]]:
    charge = f"ch_{uuid.uuid4().hex[:24]}"
    return [
        (STRIPE, stripe_event("payment_intent.succeeded", {"id": reference, "object": "payment_intent", "amount": 1})),
        (STRIPE, stripe_event("payment_intent.payment_failed", {"id": reference, "object": "payment_intent"})),
        (
            STRIPE,
            stripe_event(
                "charge.refunded",
                {"id": charge, "object": "charge", "payment_intent": reference, "amount_refunded": 1, "refunds": {}},
            ),
        ),
        (STRIPE, stripe_event("customer.subscription.deleted", {"id": reference, "object": "subscription"})),
        (STRIPE, stripe_event("customer.deleted", {"id": reference, "object": "customer"})),
        (AUTHNET, authnet_event("net.authorize.payment.void.created", trans_id=reference)),
    ]


# ---- the stream, as served and as stored ---------------------------------------------------------------------


def served_event(txn_id: str, event: dict[str, Any]) -> RecordedEvent:
    """An event of `GET …/events` as the fold takes it (the store's own id and time are not served: unused by it)."""
    return RecordedEvent(
        id=uuid.uuid4(),
        stream=f"transaction-{txn_id}",
        type=event["type"],
        data=event["data"],
        metadata=event["metadata"],
        version=event["stream_version"],
        position=event["position"],
        recorded_at=datetime.fromtimestamp(0, UTC),
    )


def folded_status(txn_id: str, served: list[dict[str, Any]]) -> str:
    folded = Transaction.from_events([served_event(txn_id, event) for event in served])
    assert folded is not None
    return folded.status.value


def served_as_stored(stored: list[RecordedEvent]) -> list[dict[str, Any]]:
    return list(events_json(stored)["data"])


def stream_events(data_dir: Path, stream: str) -> list[RecordedEvent]:
    database = sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True, timeout=30)
    try:
        sql = "SELECT position, id, stream, version, type, data, metadata, recorded_at FROM events WHERE stream = ?"
        rows = database.execute(sql + " ORDER BY version", (stream,)).fetchall()
    finally:
        database.close()
    return [to_recorded(row) for row in rows]


def last_position(data_dir: Path) -> int:
    database = sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True, timeout=30)
    try:
        return int(database.execute("SELECT MAX(position) FROM events").fetchone()[0] or 0)
    finally:
        database.close()


# ---- lists ----------------------------------------------------------------------------------------------------


LISTS: Final = ("transactions", "customers", "subscriptions")
EVERY_STATUS: Final = {"subscriptions": {"status": "all"}}  # as Stripe's, that list leaves canceled ones out


def whole_list(http: httpx.Client, token: str, kind: str, caught_up_to: int) -> list[dict[str, Any]]:
    """Every object of the list, newest first, once its projection reflects position `caught_up_to`."""
    deadline = time.monotonic() + WAIT_S
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        objects: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100, **EVERY_STATUS.get(kind, {})}
        positions = []
        while True:
            page = http.get(f"{API}/{kind}", params=params, headers=headers)
            assert page.status_code == 200, page.text
            body = page.json()
            objects.extend(body["data"])
            positions.append(int(body["projection_position"]))
            if not body["has_more"]:
                break
            params["starting_after"] = body["data"][-1]["id"]
        if min(positions) >= caught_up_to:
            return objects
        assert time.monotonic() < deadline, f"the {kind} list did not catch up with position {caught_up_to}"
        time.sleep(0.05)


def served_lists(server: Server, token: str) -> dict[str, list[dict[str, Any]]]:
    target = last_position(server.data_dir)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        return {kind: whole_list(http, token, kind, target) for kind in LISTS}


# ---- the test -------------------------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def server_env() -> dict[str, str]:
    return webhook_env(RATE_LIMIT_READ="100000/minute", RATE_LIMIT_WRITE="100000/minute")


@pytest.fixture
def walked(data_dir: Path) -> Iterator[tuple[Walk, dict[str, list[dict[str, Any]]]]]:
    """The walk done on a server that is stopped afterwards, with the lists it served at the end."""
    data_dir.mkdir()
    with (
        embedded_server(data_dir, **server_env()) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        walk = Walk(http, data_dir, random.Random(SEED))
        walk.run(STEPS)
        lists = served_lists(server, walk.token)
        for listed in (obj for objects in lists.values() for obj in objects):  # a list shows each as its GET does
            assert listed == walk.read(listed["id"]), listed["id"]
        live_customers = {c.id for c in walk.customers.values() if not c.deleted}
        assert {c["id"] for c in lists["customers"]} == live_customers
        assert {t["id"] for t in lists["transactions"]} == set(walk.txns)
        assert {s["id"] for s in lists["subscriptions"]} == set(walk.subscriptions)
    yield walk, lists


def exported_event(line: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        id=uuid.UUID(line["id"]),
        stream=line["stream"],
        type=line["type"],
        data=line["data"],
        metadata=line["metadata"],
        version=line["stream_version"],
        position=line["position"],
        recorded_at=datetime.fromisoformat(line["recorded_at"]),
    )


def folded_export(lines: str) -> dict[str, dict[str, Any]]:
    """`payments-ops export` replayed: each object stream of the export folded, as the lists show it."""
    streams: dict[str, list[RecordedEvent]] = {}
    for line in lines.splitlines():
        event = exported_event(json.loads(line))
        streams.setdefault(event.stream, []).append(event)
    folded: dict[str, dict[str, Any]] = {kind: {} for kind in LISTS}
    for stream, events in streams.items():
        if stream.startswith("transaction-txn_"):
            transaction = Transaction.from_events(events)
            assert transaction is not None
            folded["transactions"][transaction.id] = transaction_json(transaction)
        elif stream.startswith("customer-cus_"):
            customer = customer_domain.fold(events)
            if customer is not None and not customer.deleted:
                folded["customers"][customer.id] = customer.to_api()
        elif stream.startswith("subscription-sub_"):
            subscription = subscription_domain.fold(events)
            assert subscription is not None
            folded["subscriptions"][subscription.id] = subscription.to_api()
    return folded


def audit(object_id: str, capsys: pytest.CaptureFixture[str], *options: str) -> str:
    """`payments-ops audit` run in this process (a subprocess per object would take seconds each)."""
    with pytest.raises(SystemExit) as exited:
        ops_cli.main(["audit", object_id, *options])
    captured = capsys.readouterr()
    assert exited.value.code == 0, captured.err
    return captured.out


def test_every_object_is_the_fold_of_its_stream_and_the_trail_replays(
    walked: tuple[Walk, dict[str, list[dict[str, Any]]]],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    walk, lists = walked
    assert len(walk.txns) > 20 and len(walk.customers) > 3 and len(walk.subscriptions) > 3, "the walk did too little"

    verified = run_ops(data_dir, "verify")
    assert verified.status == 0, verified.stdout + verified.stderr

    until = str(int(time.time()) + 3600)
    exported = run_ops(data_dir, "export", "--since", "0", "--until", until, "--workspace", walk.workspace)
    assert exported.status == 0, exported.stderr
    assert folded_export(exported.stdout) == {kind: {o["id"]: o for o in objects} for kind, objects in lists.items()}

    monkeypatch.delenv("EVENTSTORE_URI", raising=False)
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    for object_id in [*walk.txns, *walk.customers, *walk.subscriptions]:
        stored = walk.stored(object_id)
        trail = json.loads(audit(object_id, capsys, "--json"))["events"]
        assert [(e["stream_version"], e["type"], e["data"]) for e in trail] == [
            (e.version, e.type, dict(e.data)) for e in stored
        ], object_id
        timeline = audit(object_id, capsys).splitlines()
        assert [line.split()[2] for line in timeline[1:]] == [e.type for e in stored], object_id
    busiest = max(walk.txns, key=lambda txn_id: len(walk.stored(txn_id)))
    as_a_command = run_ops(data_dir, "audit", busiest)
    assert as_a_command.status == 0 and as_a_command.stdout.splitlines() == audit(busiest, capsys).splitlines()

    for name in ("readmodels.db", "readmodels.db-wal", "readmodels.db-shm"):  # replay into an empty read model
        (data_dir / name).unlink(missing_ok=True)
    for kind in LISTS:
        replayed = run_ops(data_dir, "replay", kind)
        assert replayed.status == 0, replayed.stderr
    with embedded_server(data_dir, **server_env()) as server:
        assert served_lists(server, walk.token) == lists


# ---- the same property with Stripe (localstripe) and the webhooks that move a payment -------------------------

STRIPE_KEY: Final = "sk_test_fold_walk_localstripe_0123456789"
STRIPE_WEBHOOK_SECRET: Final = "whsec_fold_walk_localstripe_0123456789"
STRIPE_STEPS: Final = int(os.environ.get("FOLD_WALK_STRIPE_STEPS", "70"))
QUIET_S: Final = 0.3  # a stream that did not grow for this long after a webhook: its effects have landed
REFUND_COUNTED: Final = ("succeeded", "pending")  # a pending refund counts in amount_refunded, as at Stripe


@dataclass
class StripeWalk:
    """Payments at localstripe, moved by our own calls and by what happens at Stripe: 3-D Secure completed, refunds
    made in the dashboard, refunds failing after they were accepted, disputes opened and closed (the events
    localstripe does not send are signed by the walk, about objects localstripe holds). Each step's effects are
    waited for, then every payment it touched is checked as in the sandbox walk (the fold, amounts, moves)."""

    http: httpx.Client
    stripe: httpx.Client
    rng: random.Random
    data_dir: Path
    workspace: str = field(default_factory=new_workspace)
    txns: dict[str, str] = field(default_factory=dict)  # id → kind (charge | authorize)
    delivered: list[bytes] = field(default_factory=list)
    dispute_ids: dict[str, str] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)  # id → Stripe's id
    subscriptions: dict[str, str] = field(default_factory=dict)  # id → Stripe's id
    step: int = 0

    def __post_init__(self) -> None:
        self.token = mint_token(self.workspace, ["payments:admin", *BILLING_PERMISSIONS], expires_in_s=3600)

    def send(self, method: str, route: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.http.request(method, f"{API}/{route}", json=body, headers=headers)

    def where(self) -> str:
        return f"seed {SEED}, stripe step {self.step}"

    def call(self, route: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is None:
            return self.http.get(f"{API}/{route}", headers=headers)
        return self.http.post(f"{API}/{route}", json=body, headers=headers)

    def state(self, txn_id: str) -> dict[str, Any]:
        response = self.call(f"transactions/{txn_id}")
        assert response.status_code == 200, f"{self.where()}: {response.text}"
        return dict(response.json())

    def served_events(self, txn_id: str) -> list[dict[str, Any]]:
        response = self.call(f"transactions/{txn_id}/events")
        assert response.status_code == 200, f"{self.where()}: {response.text}"
        return list(response.json()["data"])

    def pick(self, *statuses: str) -> tuple[str, dict[str, Any]] | None:
        states = {txn_id: self.state(txn_id) for txn_id in self.txns}
        fitting = [txn_id for txn_id, shown in states.items() if shown["status"] in statuses]
        if not fitting:
            return None
        txn_id = self.rng.choice(fitting)
        return txn_id, states[txn_id]

    def deliver(self, event_type: str, obj: dict[str, Any]) -> None:
        body, headers = signed_stripe_event(STRIPE_WEBHOOK_SECRET, event_type, obj)
        response = self.http.post(STRIPE, content=body, headers=headers)
        assert response.status_code == 200, f"{self.where()}: {response.text}"
        self.delivered.append(body)

    def settle(self, txn_id: str) -> None:
        """Until the stream has not grown for QUIET_S (webhooks are applied after their 200)."""
        deadline = time.monotonic() + WAIT_S
        count, quiet_since = len(self.served_events(txn_id)), time.monotonic()
        while time.monotonic() - quiet_since < QUIET_S and time.monotonic() < deadline:
            time.sleep(0.05)
            now = len(self.served_events(txn_id))
            if now != count:
                count, quiet_since = now, time.monotonic()

    # ---- our own calls --------------------------------------------------------------------------------------------

    def pay(self) -> None:
        kind = self.rng.choice(("charge", "authorize"))
        method = "pm_card_visa" if self.rng.random() < 0.7 else three_d_secure_method(self.stripe)
        amount = self.rng.randint(50, 20_000)
        body = {"amount": amount, "currency": "usd", "payment_method": method, "provider": "stripe"}
        response = self.call(kind, body)
        assert response.status_code == 201, f"{self.where()}: {response.text}"
        self.txns[response.json()["id"]] = kind
        self.touch(response.json()["id"])

    def capture(self) -> None:
        picked = self.pick("authorized")
        if picked is None:
            return
        txn_id, shown = picked
        body: dict[str, Any] = {"transaction_id": txn_id}
        if self.rng.random() < 0.5:
            body["amount"] = self.rng.randint(50, shown["amount_authorized"])
        response = self.call("capture", body)
        assert response.status_code == 200, f"{self.where()}: {response.text}"
        self.touch(txn_id)

    def void(self) -> None:
        picked = self.pick("authorized")
        if picked is None:
            return
        response = self.call("void", {"transaction_id": picked[0]})
        assert response.status_code == 200, f"{self.where()}: {response.text}"
        self.touch(picked[0])

    def refund(self) -> None:
        picked = self.pick(*REFUNDABLE, "refunded")
        if picked is None:
            return
        txn_id, shown = picked
        reserved = sum(r["amount"] for r in shown["refunds"] if r["status"] in REFUND_COUNTED)
        refundable = shown["amount_captured"] - reserved
        body: dict[str, Any] = {"transaction_id": txn_id}
        if refundable > 1 and self.rng.random() < 0.6:
            body["amount"] = self.rng.randint(1, refundable // 2)
        response = self.call("refund", body)
        disputed = (shown["dispute"] or {}).get("status") in ("needs_response", "under_review", "lost")
        expected = 409 if disputed or refundable <= 0 else 200
        assert response.status_code == expected, f"{self.where()}: {shown} {body} {response.text}"
        self.touch(txn_id)

    # ---- what happens at Stripe ---------------------------------------------------------------------------------

    def authenticate(self) -> None:
        picked = self.pick("requires_action")
        if picked is None:
            return
        txn_id, shown = picked
        intent = authenticate(self.stripe, shown["provider_reference"])
        if self.txns[txn_id] == "authorize":  # localstripe does not send it for a manual-capture intent
            self.deliver("payment_intent.amount_capturable_updated", intent)
        deadline = time.monotonic() + WAIT_S  # localstripe's own payment_intent.succeeded comes when it comes
        while self.state(txn_id)["status"] == "requires_action" and time.monotonic() < deadline:
            time.sleep(0.05)
        self.touch(txn_id)

    def dashboard_refund(self) -> None:
        picked = self.pick(*REFUNDABLE)
        if picked is None:
            return
        txn_id, shown = picked
        if shown["amount_captured"] < shown["amount"]:  # localstripe captures less by refunding the rest; Stripe not
            return
        intent_id = shown["provider_reference"]
        left = shown["amount_captured"] - sum(r["amount"] for r in shown["refunds"] if r["status"] in REFUND_COUNTED)
        if left < 1:
            return
        made = self.stripe.post("/v1/refunds", data={"payment_intent": intent_id, "amount": self.rng.randint(1, left)})
        if made.status_code != 200:  # Stripe counts what a refund reversed here still holds: it may refuse
            return
        self.deliver("charge.refunded", self.charge_of(intent_id))
        self.touch(txn_id)

    def refund_fails(self) -> None:
        picked = self.pick(*REFUNDABLE, "refunded")
        if picked is None:
            return
        txn_id, shown = picked
        listed = self.refunds_at_stripe(shown["provider_reference"])
        if not listed:
            return
        failed = {**self.rng.choice(listed), "status": "failed", "failure_reason": "expired_or_canceled_card"}
        self.deliver("refund.failed", failed)
        self.touch(txn_id)

    def dispute(self) -> None:
        picked = self.pick(*REFUNDABLE, "refunded")
        if picked is None:
            return
        txn_id, shown = picked
        current = shown["dispute"]
        if current is None or self.rng.random() < 0.3:
            dispute_id = f"dp_{uuid.UUID(int=self.rng.getrandbits(128)).hex[:24]}"
            event_type, status = "charge.dispute.created", self.rng.choice(("needs_response", "warning_needs_response"))
        else:
            dispute_id = str(self.dispute_ids.get(txn_id))
            event_type, status = "charge.dispute.closed", self.rng.choice(("won", "lost"))
        self.dispute_ids[txn_id] = dispute_id
        dispute = {
            "id": dispute_id,
            "object": "dispute",
            "payment_intent": shown["provider_reference"],
            "amount": shown["amount_captured"],
            "reason": "fraudulent",
            "status": status,
            "created": int(time.time()),
        }
        self.deliver(event_type, dispute)
        self.touch(txn_id)

    def redeliver(self) -> None:
        if not self.delivered:
            return
        body = self.rng.choice(self.delivered)
        headers = stripe_signature_headers(body, STRIPE_WEBHOOK_SECRET)
        response = self.http.post(STRIPE, content=body, headers=headers)
        assert (response.status_code, response.json()) == (200, {"received": True, "duplicate": True}), self.where()

    def charge_of(self, intent_id: str) -> dict[str, Any]:
        latest = self.stripe.get(f"/v1/payment_intents/{intent_id}").json()["latest_charge"]
        charge_id = latest if isinstance(latest, str) else latest["id"]
        charge = dict(self.stripe.get(f"/v1/charges/{charge_id}").json())
        listed = self.refunds_at_stripe(intent_id)
        return {**charge, "refunds": {"object": "list", "data": listed}}

    def refunds_at_stripe(self, intent_id: str) -> list[dict[str, Any]]:
        return list(self.stripe.get("/v1/refunds", params={"payment_intent": intent_id}).json()["data"])

    # ---- checking -------------------------------------------------------------------------------------------------

    def touch(self, txn_id: str) -> None:
        self.settle(txn_id)
        self.check(txn_id)

    def check(self, txn_id: str) -> None:
        for _ in range(20):  # a webhook may land between the two reads: read again until they agree
            before = self.served_events(txn_id)
            shown = self.state(txn_id)
            if self.served_events(txn_id) == before:
                break
        folded = Transaction.from_events([served_event(txn_id, event) for event in before])
        assert folded is not None and shown == transaction_json(folded), f"{self.where()}: {txn_id} is not its fold"
        counted = sum(r["amount"] for r in shown["refunds"] if r["status"] in REFUND_COUNTED)
        assert shown["amount_captured"] <= shown["amount_authorized"] <= shown["amount"], f"{self.where()}: {shown}"
        assert shown["amount_refunded"] == counted <= shown["amount_captured"], f"{self.where()}: {shown}"
        statuses = [folded_status(txn_id, before[: end + 1]) for end in range(len(before))]
        for earlier, later in itertools.pairwise(statuses):  # every event's move, also those between two steps
            assert later == earlier or later in MOVES[earlier], f"{self.where()}: {txn_id} {earlier} → {later}"

    # ---- customers and subscriptions at Stripe ---------------------------------------------------------------------

    def create_customer(self) -> None:
        body = {"email": f"s{self.step}@example.com", "provider": "stripe", "payment_method": "pm_card_visa"}
        response = self.send("POST", "customers", body)
        assert response.status_code == 201, f"{self.where()}: {response.text}"
        self.customers[response.json()["id"]] = response.json()["provider_reference"]
        self.touch_billing(response.json()["id"])

    def subscribe(self) -> None:
        live = [cus_id for cus_id in self.customers if self.send("GET", f"customers/{cus_id}").status_code == 200]
        if not live:
            return
        body = {"customer_id": self.rng.choice(live), "amount": self.rng.randint(100, 5000), "currency": "usd"}
        body["interval"] = self.rng.choice(("month", "year"))
        response = self.send("POST", "subscriptions", body)
        assert response.status_code == 201, f"{self.where()}: {response.text}"
        self.subscriptions[response.json()["id"]] = response.json()["provider_reference"]
        self.touch_billing(response.json()["id"])

    def change_subscription(self) -> None:
        if not self.subscriptions:
            return
        sub_id = self.rng.choice(list(self.subscriptions))
        roll = self.rng.random()
        if roll < 0.3:
            response = self.send("PUT", f"subscriptions/{sub_id}", {"quantity": self.rng.randint(1, 4)})
        elif roll < 0.5:
            response = self.send("PUT", f"subscriptions/{sub_id}", {"metadata": {"plan": self.rng.choice("ab")}})
        elif roll < 0.7:
            cancel_later = {"cancel_at_period_end": self.rng.random() < 0.5}
            response = self.send("PUT", f"subscriptions/{sub_id}", cancel_later)
        else:
            at_period_end = {"at_period_end": self.rng.random() < 0.5}
            response = self.send("POST", f"subscriptions/{sub_id}/cancel", at_period_end)
        assert response.status_code in (200, 409), f"{self.where()}: {response.text}"
        self.touch_billing(sub_id)

    def subscription_at_stripe(self) -> None:
        if not self.subscriptions:
            return
        sub_id = self.rng.choice(list(self.subscriptions))
        reference = self.subscriptions[sub_id]
        invoice = {"id": f"in_{uuid.UUID(int=self.rng.getrandbits(128)).hex[:24]}", "object": "invoice"}
        roll = self.rng.random()
        if roll < 0.3:
            self.deliver("invoice.payment_failed", {**invoice, "subscription": reference})
        elif roll < 0.6:
            self.deliver("invoice.paid", {**invoice, "subscription": reference})
        elif roll < 0.85:
            flag = self.rng.choice(("true", "false"))
            if self.stripe.post(f"/v1/subscriptions/{reference}", data={"cancel_at_period_end": flag}).is_success:
                self.deliver("customer.subscription.updated", {"id": reference, "object": "subscription"})
        else:
            self.stripe.delete(f"/v1/subscriptions/{reference}")  # localstripe tells with its own webhook
        self.touch_billing(sub_id)

    def customer_at_stripe(self) -> None:
        if not self.customers:
            return
        cus_id = self.rng.choice(list(self.customers))
        change = {"email": f"changed{self.step}@example.com", "metadata[tier]": self.rng.choice(("gold", "silver"))}
        self.stripe.post(f"/v1/customers/{self.customers[cus_id]}", data=change)  # localstripe tells
        self.touch_billing(cus_id)

    def touch_billing(self, object_id: str) -> None:
        stream = ("customer-" if object_id.startswith("cus_") else "subscription-") + object_id
        deadline = time.monotonic() + WAIT_S
        count, quiet_since = len(stream_events(self.data_dir, stream)), time.monotonic()
        while time.monotonic() - quiet_since < QUIET_S * 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            now = len(stream_events(self.data_dir, stream))
            if now != count:
                count, quiet_since = now, time.monotonic()
        self.check_billing(object_id)

    def check_billing(self, object_id: str) -> None:
        is_customer = object_id.startswith("cus_")
        stream = ("customer-" if is_customer else "subscription-") + object_id
        route = ("customers/" if is_customer else "subscriptions/") + object_id
        for _ in range(20):  # a webhook may land between the two reads: read again until they agree
            stored = stream_events(self.data_dir, stream)
            response = self.send("GET", route)
            if len(stream_events(self.data_dir, stream)) == len(stored):
                break
        if is_customer:
            folded_customer = customer_domain.fold(stored)
            assert folded_customer is not None, self.where()
            if folded_customer.deleted:
                assert response.status_code == 404, f"{self.where()}: {object_id} {response.text}"
            else:
                assert response.json() == folded_customer.to_api(), f"{self.where()}: {object_id} is not its fold"
            return
        states = [subscription_domain.fold(stored[: end + 1]) for end in range(len(stored))]
        folded = states[-1]
        assert folded is not None and response.json() == folded.to_api(), f"{self.where()}: {object_id} not its fold"
        statuses = [state.status for state in states if state is not None]
        for earlier, later in itertools.pairwise(statuses):
            allowed = subscription_domain.MOVES[earlier]
            assert later == earlier or later in allowed, f"{self.where()}: {object_id} {earlier} → {later}"

    def run(self, steps: int) -> None:
        moves: dict[Callable[[], None], int] = {
            self.pay: 5,
            self.capture: 3,
            self.void: 1,
            self.refund: 4,
            self.authenticate: 2,
            self.dashboard_refund: 2,
            self.refund_fails: 2,
            self.dispute: 1,
            self.redeliver: 1,
            self.create_customer: 1,
            self.subscribe: 2,
            self.change_subscription: 2,
            self.subscription_at_stripe: 2,
            self.customer_at_stripe: 1,
        }
        for self.step in range(steps):
            self.rng.choices(list(moves), weights=list(moves.values()))[0]()


@pytest.fixture
def stripe_walked(data_dir: Path) -> Iterator[StripeWalk]:
    data_dir.mkdir()
    with running_localstripe(data_dir / "localstripe.log") as stripe_url:
        env = {
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": stripe_url,
            "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "RATE_LIMIT_READ": "100000/minute",
            "RATE_LIMIT_WRITE": "100000/minute",
        }
        with (
            embedded_server(data_dir, **env) as server,
            httpx.Client(base_url=server.base_url, timeout=30) as http,
            httpx.Client(base_url=stripe_url, headers={"Authorization": f"Bearer {STRIPE_KEY}"}, timeout=10) as stripe,
        ):
            hook = {"url": f"{server.base_url}{STRIPE}", "secret": STRIPE_WEBHOOK_SECRET}
            httpx.post(f"{stripe_url}/_config/webhooks/payments", data=hook, timeout=10).raise_for_status()
            walk = StripeWalk(http, stripe, random.Random(SEED), data_dir)
            walk.run(STRIPE_STEPS)
            for txn_id in walk.txns:
                walk.check(txn_id)
            for object_id in [*walk.customers, *walk.subscriptions]:
                walk.check_billing(object_id)
        yield walk


def test_stripe_payments_moved_by_webhooks_stay_the_fold_of_their_streams(
    stripe_walked: StripeWalk,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(stripe_walked.txns) > 5, "the walk did too little"
    verified = run_ops(data_dir, "verify")
    assert verified.status == 0, verified.stdout + verified.stderr
    monkeypatch.delenv("EVENTSTORE_URI", raising=False)
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    for txn_id in stripe_walked.txns:
        trail = json.loads(audit(txn_id, capsys, "--json"))["events"]
        stored = stream_events(data_dir, f"transaction-{txn_id}")
        assert [(e["stream_version"], e["type"], e["data"]) for e in trail] == [
            (e.version, e.type, dict(e.data)) for e in stored
        ], txn_id
