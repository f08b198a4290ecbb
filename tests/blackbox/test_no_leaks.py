"""No response, log line or event ever holds a card number, a token or a secret.

Requests to the real embedded server carry generated Luhn-valid card numbers (plain, grouped by spaces or dashes)
in every string field, the URL and the Idempotency-Key; Accept.js opaque `data_value`s; valid, expired, forged
and malformed bearer tokens. Then every response (status line, headers, body), the server's whole log (its
stdout and stderr), every event read through `GET …/events` and every row of the SQLite event store and the
sandbox ledger read directly are searched for each generated value, and for the server's JWT secret."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.blackbox.server import API, JWT_SECRET, Api, Server, mint_token, new_key

CARD_COUNT = 12
rng = random.Random(20261126)


def luhn_valid(prefix: str, length: int) -> str:
    digits = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return digits + str((10 - total % 10) % 10)


def grouped(number: str, separator: str) -> str:
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


def generated_cards() -> list[str]:
    prefixes = ["4", "51", "37", "6011", "35"]
    return [luhn_valid(rng.choice(prefixes), rng.choice([13, 15, 16, 19])) for _ in range(CARD_COUNT)]


def secret_token(prefix: str) -> str:
    return f"{prefix}{rng.getrandbits(128):032x}"


class Recorder:
    """Keeps every response's full text (status line, headers and body)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.texts.append(f"{response.status_code} {response.reason_phrase}\n{headers}\n{response.text}")


@pytest.fixture
def recorded(server: Server) -> Iterator[tuple[Api, Recorder]]:
    recorder = Recorder()
    with httpx.Client(base_url=server.base_url, timeout=30, event_hooks={"response": [recorder]}) as http:
        yield Api(http), recorder


def forms_of(card: str) -> list[str]:
    """What a leak of `card` could look like: as sent, or with its separators dropped."""
    return [card, card.replace(" ", "").replace("-", "")]


def store_rows(path: Path, query: str) -> str:
    if not path.exists():
        return ""
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(" ".join(str(value) for value in row) for row in database.execute(query))
    finally:
        database.close()


def test_no_card_number_token_or_secret_in_responses_logs_or_events(
    server: Server, recorded: tuple[Api, Recorder]
) -> None:
    api, recorder = recorded
    cards = generated_cards()
    sent_cards = [grouped(card, rng.choice([" ", "-"])) if index % 3 else card for index, card in enumerate(cards)]
    opaque_values = [secret_token("eyJvcGFxdWUi") for _ in range(3)]
    forged_tokens = [
        mint_token(api.workspace, secret="not-the-server-secret-0123456789abcdef"),
        mint_token(api.workspace, expires_in_s=-60),
        secret_token("Bearer-garbage-"),
    ]
    valid_token = mint_token(api.workspace)
    transaction_ids: list[str] = []

    base = {"amount": 1099, "currency": "usd", "payment_method": "pm_card_visa"}
    for index, card in enumerate(sent_cards):
        where = index % 6
        if where == 0:
            api.charge(description=f"card {card} please")
        elif where == 1:
            api.charge(metadata={"note": card})
        elif where == 2:
            api.post("charge", {**base, "payment_method": card})
        elif where == 3:
            api.post("customers", {"email": "a@example.com", "name": card})
        elif where == 4:
            api.get(card.replace(" ", "").replace("-", ""))
        else:
            response = api.charge(key=f"key-{card}")
            if response.status_code == 201:
                transaction_ids.append(response.json()["id"])
    for value in opaque_values:
        opaque = {"data_descriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "data_value": value}
        response = api.post("authorize", {**base, "payment_method": opaque}, key=new_key())
        transaction_id = (response.json().get("error") or {}).get("transaction_id") or response.json().get("id")
        if transaction_id:
            transaction_ids.append(transaction_id)
    for token in forged_tokens:
        assert api.post("charge", base, token=token).status_code == 401
        assert api.http.get(f"{API}/transactions/txn_x", headers={"Authorization": token}).status_code == 401
    charged = api.post("charge", base, key=new_key(), token=valid_token)
    assert charged.status_code == 201
    transaction_ids.append(charged.json()["id"])
    for transaction_id in transaction_ids:
        assert api.events(transaction_id).status_code == 200

    secrets = [JWT_SECRET, valid_token, *forged_tokens, *opaque_values]
    for card in sent_cards:
        secrets.extend(forms_of(card))
    sources = {
        "responses": "\n".join(recorder.texts),
        "server log": server.processes[0].log_path.read_text(errors="replace"),
        "event store": store_rows(server.data_dir / "events.db", "SELECT stream, type, data, metadata FROM events"),
        "sandbox ledger": store_rows(server.data_dir / "sandbox.db", "SELECT * FROM ledger"),
    }
    assert len(recorder.texts) > CARD_COUNT
    # The sources are the right ones: what must be in them is (so what is absent is truly absent).
    assert charged.json()["id"] in sources["responses"] and charged.json()["id"] in sources["event store"]
    assert sources["server log"].strip()
    leaks = [f"{name} holds {secret[:6]}…" for name, text in sources.items() for secret in secrets if secret in text]
    assert leaks == []


BILLING_PERMISSIONS = [
    *(f"customer:{verb}" for verb in ("create", "read", "update", "delete")),
    *(f"subscription:{verb}" for verb in ("create", "read", "update", "cancel")),
]


def test_a_card_number_in_a_billing_url_is_refused_and_never_recorded(server: Server, api: Api) -> None:
    """A PUT, DELETE or cancel of an id that does not exist was recorded (its command and key claim) before its 404,
    so a card number in the URL reached the event store."""
    token = mint_token(api.workspace, BILLING_PERMISSIONS)
    card = luhn_valid("4", 16)
    routes = [
        ("GET", f"customers/{card}", None),
        ("PUT", f"customers/{card}", {"name": "x"}),
        ("DELETE", f"customers/{card}", None),
        ("GET", f"subscriptions/{card}", None),
        ("PUT", f"subscriptions/{card}", {"quantity": 2}),
        ("POST", f"subscriptions/{card}/cancel", {}),
    ]
    for method, route, body in routes:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": new_key()}
        response = api.http.request(method, f"{API}/{route}", json=body, headers=headers)
        assert response.status_code == 400, (route, response.text)
        assert response.json()["error"]["code"] == "raw_card_data"
        assert card not in response.text
    assert card not in store_rows(server.data_dir / "events.db", "SELECT stream, type, data, metadata FROM events")


def test_a_card_number_in_a_billing_idempotency_key_is_never_recorded(server: Server, api: Api) -> None:
    token = mint_token(api.workspace, BILLING_PERMISSIONS)
    card = luhn_valid("51", 16)

    def send(method: str, route: str, body: dict[str, object]) -> dict[str, object]:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"key-{method}-{route}-{card}"}
        response = api.http.request(method, f"{API}/{route}", json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, object] = response.json()
        return answer

    customer = send("POST", "customers", {"email": "a@example.com", "payment_method": "pm_card_visa"})
    send("PUT", f"customers/{customer['id']}", {"name": "Jenny"})
    terms = {"customer_id": customer["id"], "amount": 1500, "currency": "usd", "interval": "month"}
    subscription = send("POST", "subscriptions", terms)
    send("PUT", f"subscriptions/{subscription['id']}", {"quantity": 2})
    send("POST", f"subscriptions/{subscription['id']}/cancel", {})
    send("DELETE", f"customers/{customer['id']}", {})
    assert card not in store_rows(server.data_dir / "events.db", "SELECT stream, type, data, metadata FROM events")


@pytest.mark.parametrize("separator", ["", "-"])
def test_a_card_number_as_the_request_id_is_neither_echoed_nor_recorded(
    server: Server, api: Api, separator: str
) -> None:
    """X-Request-Id matched the sane-id pattern ([A-Za-z0-9._:-]{1,128}) when it was a card number: it came back in
    the response header and was recorded as every event's correlation_id. It is replaced by a new id, as any
    X-Request-Id that is not sane."""
    card = grouped(luhn_valid("4", 16), separator)
    body = {"amount": 500, "currency": "usd", "payment_method": "pm_card_visa"}
    response = api.http.post(f"{API}/charge", json=body, headers={**api.headers(), "X-Request-Id": card})
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] not in forms_of(card)
    events = api.events(response.json()["id"]).json()["data"]
    assert {event["metadata"]["correlation_id"] for event in events} == {response.headers["x-request-id"]}
    stored = store_rows(server.data_dir / "events.db", "SELECT stream, type, data, metadata FROM events")
    assert not any(form in stored for form in forms_of(card))
