import hashlib
import uuid
from random import Random

import pytest
from payments_shared.carddata import contains_card_number, luhn_valid, mask_card_numbers


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "card: 4242-4242-4242-4242 exp 12/28",
        "378282246310005",  # 15-digit Amex
        "6011111111111117",
        "4000056655665556",
        "x4242424242424242y",
        "4242424242424242 12",  # grouped with a trailing short group
        # As written by hand: other whitespace and dashes, up to three of them (the probe found each stored)
        "4242  4242  4242  4242",
        "4242 - 4242 - 4242 - 4242",
        "4242\t4242\t4242\t4242",
        "4242\n4242\n4242\n4242",
        "4242\u00a04242\u00a04242\u00a04242",
        "4242\u20134242\u20134242\u20134242",
        # Dots, slashes and underscores in a card's own shape (4-4-4-4, 4-6-5)
        "4242.4242.4242.4242",
        "4242/4242/4242/4242",
        "card_4242_4242_4242_4242",
        "3782.822463.10005",
    ],
)
def test_card_numbers_are_found(text: str) -> None:
    assert contains_card_number(text)
    masked = mask_card_numbers(text)
    assert "[card number removed]" in masked
    assert sum(character.isdigit() for character in masked) <= 4, masked  # at most "12", "12/28"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "4242424242424241",  # fails Luhn
        "424242424242",  # 12 digits
        "12345678901234567890",  # one 20-digit run: an order number, not a card
        "4242.4242.4242.4242.4242",  # dots split only a card's own shape: 20 digits are none
        "51.5073509512345",  # a coordinate: 15 digits, Luhn-valid, no card's shape
        "batch_20261128_174205",  # a timestamp in a name
        "1001,1002,1003,1004",  # commas list numbers
        "4242_4242.4242_4242",  # one separator throughout, or none of a card's shape
        "order 2024-11-26",
        "pm_card_visa",
    ],
)
def test_non_card_text_is_left_alone(text: str) -> None:
    assert not contains_card_number(text)
    assert mask_card_numbers(text) == text


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_masking_keeps_the_rest_of_the_text() -> None:
    assert mask_card_numbers("pay 4242 4242 4242 4242 now") == "pay [card number removed] now"


def test_our_ids_never_look_like_card_numbers() -> None:
    # Clients send our ids back (transaction_id, customer_id): the card-data guard must never refuse one.
    from payments_shared import ids

    for number in range(2000):
        derived = ids.derived_id("txn", ids.command_id("ws", f"key-{number}"))
        assert not any(character.isdigit() for character in derived + ids.new_id("cus"))


def test_uuids_clients_send_are_never_taken_for_card_numbers() -> None:
    # About 1 random UUID in 350 holds a Luhn-valid run of 13-19 digits (these three do): clients put UUIDs in
    # metadata and descriptions, and the guard refused them.
    for text in ("ab43297d-7003-4703-9070-6ec5c492b911", "892c8b51-4f3b-46d6-9ba4-740213207134"):
        assert not contains_card_number(text)
        assert not contains_card_number(f"order {text.upper()}, shipped")
        # After a word and a dash: a client's "order-…", this system's "idempotency-…" streams in its logs
        assert not contains_card_number(f"order-{text}")
        assert not contains_card_number(f"stream 'idempotency-{text}' busy")
    assert [str(u) for u in (uuid.uuid4() for _ in range(20_000)) if contains_card_number(str(u))] == []
    assert [str(u) for u in (uuid.uuid4() for _ in range(20_000)) if contains_card_number(f"user-{u}")] == []


@pytest.mark.parametrize(
    "text",
    [
        "order ab43297d-7003-4703-9070-6ec5c492b911 card 4242 4242 4242 4242",
        "4242424242424242-7003-4703-9070-6ec5c492b911",  # not a UUID: its first group is 16 digits
        "ab43297d-7003-4703-9070-6ec5c492b911-4242424242424242",  # a UUID does not end with a dash
        "4111-1111-1111-1111-ab43297d-7003-4703-9070-6ec5c492b911",  # a card's dashes run into the UUID
    ],
)
def test_a_card_number_beside_a_uuid_is_still_found(text: str) -> None:
    assert contains_card_number(text)
    assert "4242424242424242" not in mask_card_numbers(text).replace(" ", "").replace("-", "")


def test_hex_ids_clients_send_are_never_taken_for_card_numbers() -> None:
    # An ObjectId and a SHA-256 digest that hold a Luhn-valid 13-digit run (1 random ObjectId in 900, 1 digest in
    # 200): clients put such ids in metadata and send ours back, and the guard refused them.
    for text in ("d1799221541341b18d6373bb", "6a1799221541341b18d6373b00f1c2aa59e34b7d", "3f" + "1799221541341" + "e0"):
        assert not contains_card_number(text)
        assert not contains_card_number(f"order {text.upper()}, shipped")
    # Seeded: 1 random ObjectId in 500,000 holds such a run with only letters beside it and is refused.
    random = Random(20261128)
    samples = [random.randbytes(12).hex() for _ in range(10_000)]
    samples += [hashlib.sha256(random.randbytes(8)).hexdigest() for _ in range(10_000)]
    assert [text for text in samples if contains_card_number(text)] == []


@pytest.mark.parametrize(
    "text",
    [
        "order d1799221541341b18d6373bb card 4242424242424242",
        "4242424242424242",  # sixteen hex digits, but no letter: a card
        "4242424242424242-d18d6373bb",  # a dash ends the token
        "ref:4242424242424242 abcdef",
        "x4242424242424242y",  # letters that are not hex digits
        "cc4242424242424242",  # hex letters glued to a card number: no other digit, no id
        "CC4242424242424242",
        "4242424242424242abc",
        "dec378282246310005a",
        "4242424242424242abcde",  # letters glued to a card, however many: no other digit, no id
        "dead4242424242424242beef",
        "ABCDEF4111111111111111",
        "pan%3D4242424242424242",  # percent-encoded "=": the hex digits "3D" start no token
        "https%3A%2F%2Fshop%2Fpay%3Fpan%3D4242424242424242",
        "card%3A4242424242424242",
    ],
)
def test_a_card_number_beside_a_hex_id_is_still_found(text: str) -> None:
    assert contains_card_number(text)
    assert "4242424242424242" not in mask_card_numbers(text)
