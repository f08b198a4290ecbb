"""The id helpers give exactly what the uuid module gives (stored command ids and object ids depend on it)."""

from __future__ import annotations

import random
import time
import uuid

import pytest
from payments_shared import ids

IDEMPOTENCY_NAMESPACE = uuid.UUID("5f0c1bd6-9a0e-4f4e-9d59-2e7d1d7a3a21")
ALPHABET = "abcXYZ019-_:./ \x00\n\tüß€ключ✓😀"


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 40)))


def test_command_id_is_the_uuid5_of_workspace_and_key():
    rng = random.Random(20261126)
    for _ in range(3000):
        workspace, key = random_text(rng), random_text(rng)
        assert ids.command_id(workspace, key) == str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{workspace}\x00{key}"))


def test_command_ids_already_stored_stay_the_same():
    assert ids.command_id("ws_1", "key-1") == "5b1eac86-3562-59dd-a8ff-9f21099c1b3d"
    assert ids.command_id("ws_ü", "ключ-✓") == "1a906979-0833-57b2-9872-7b2e67151337"
    assert ids.derived_id("txn", "5b1eac86-3562-59dd-a8ff-9f21099c1b3d") == "txn_flbokmigdfgcfjnnkippjpcb"


def test_uuid5_str_matches_uuid5_in_any_namespace():
    rng = random.Random(7)
    for _ in range(2000):
        namespace = uuid.UUID(int=rng.getrandbits(128))
        name = random_text(rng)
        assert ids.uuid5_str(namespace, name) == str(uuid.uuid5(namespace, name))


def test_random_uuid_str_is_a_canonical_version_4_uuid():
    made = [ids.random_uuid_str() for _ in range(2000)]
    for text in made:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
    assert len(set(made)) == len(made)
    assert {text[19] for text in made} == set("89ab")


def test_time_ordered_uuids_are_version_7_unique_and_ordered_by_millisecond():
    before_ms = time.time_ns() // 1_000_000
    made = [ids.time_ordered_uuid() for _ in range(5000)]
    after_ms = time.time_ns() // 1_000_000
    assert {(made_id.version, made_id.variant) for made_id in made} == {(7, uuid.RFC_4122)}
    assert len(set(made)) == len(made)
    stamps = [made_id.int >> 80 for made_id in made]
    assert stamps == sorted(stamps)  # by the millisecond; random within one
    assert before_ms <= stamps[0] and stamps[-1] <= after_ms


def test_command_id_without_a_key_is_random():
    first, second = ids.command_id("ws_1", None), ids.command_id("ws_1", None)
    assert first != second
    assert uuid.UUID(first).version == 4


@pytest.mark.parametrize(
    "text",
    [
        "5b1eac86-3562-59dd-a8ff-9f21099c1b3d",
        "5B1EAC86-3562-59DD-A8FF-9F21099C1B3D",
        "5b1eac86356259dda8ff9f21099c1b3d",
        "{5b1eac86-3562-59dd-a8ff-9f21099c1b3d}",
        "urn:uuid:5b1eac86-3562-59dd-a8ff-9f21099c1b3d",
        " 5b1eac86356259dda8ff9f21099c1b3",  # 32 characters that int(text, 16) takes: uuid's own parse decides
        "5b1eac86_356259dda8ff9f21099c1b3",
    ],
)
def test_uuid_bytes_reads_what_uuid_reads(text: str):
    assert ids.uuid_bytes(text) == uuid.UUID(text).bytes


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not-a-uuid",
        "5b1eac86-3562-59dd-a8ff-9f21099c1b3",
        "5b1eac86 356259dda8ff9f21099c1b3",
        "5b 1e ac 86 35 62 59 dd a8 ff 9f 21 09 9c 1b 3d",
    ],
)
def test_uuid_bytes_refuses_what_uuid_refuses(text: str):
    with pytest.raises(ValueError):
        uuid.UUID(text)
    with pytest.raises(ValueError):
        ids.uuid_bytes(text)


def test_letters_are_two_a_to_p_letters_a_byte():
    rng = random.Random(3)
    for _ in range(500):
        raw = rng.randbytes(rng.randrange(0, 20))
        assert ids.letters(raw) == "".join("abcdefghijklmnop"[b >> 4] + "abcdefghijklmnop"[b & 15] for b in raw)
    assert ids.letters(bytes([0, 1, 15, 16, 255])) == "aaabapbapp"
