"""The pure part of Stripe re-drives past its idempotency-key retention: when to look, the tag, the Search query,
the listing window and which listed PaymentIntents an earlier attempt may have made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from payments_shared.providers.port import Outcome
from payments_shared.providers.stripe_redrive import (
    CLOCK_SKEW,
    KEY_TRUSTED_FOR,
    MAX_METADATA_KEYS,
    OPERATION_TAG,
    UNRESOLVED_RETRY_AFTER_S,
    SentIntent,
    key_may_be_forgotten,
    listing_window,
    matching_intents,
    search_query,
    tagged,
    tagged_objects,
    unresolved,
)

NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)
SENT = SentIntent(1000, "usd", "pm_1Real", capture=True, customer="cus_1", metadata={"order": "7"})


def intent(**changes: Any) -> dict[str, Any]:
    base = {
        "id": "pi_1", "amount": 1000, "currency": "usd", "capture_method": "automatic_async", "customer": "cus_1",
        "payment_method": {"id": "pm_1Real", "card": {"last4": "4242"}}, "metadata": {"order": "7"},
    }  # fmt: skip
    return {**base, **changes}


def test_the_key_is_trusted_below_23_hours_and_not_from_then_on() -> None:
    assert timedelta(hours=23) == KEY_TRUSTED_FOR  # an hour below the 24 h Stripe keeps keys
    assert not key_may_be_forgotten(None, NOW)  # a first attempt never looks
    assert not key_may_be_forgotten(NOW - KEY_TRUSTED_FOR + timedelta(seconds=1), NOW)
    assert key_may_be_forgotten(NOW - KEY_TRUSTED_FOR, NOW)
    assert key_may_be_forgotten(NOW - timedelta(days=9), NOW)


def test_the_tag_is_added_when_the_clients_metadata_leaves_room() -> None:
    assert tagged({}, "cmd-1") == {OPERATION_TAG: "cmd-1"}
    assert tagged({"order": "7"}, "cmd-1") == {"order": "7", OPERATION_TAG: "cmd-1"}
    assert len(OPERATION_TAG) <= 40  # Stripe's limit on a metadata key


def test_no_tag_when_the_client_uses_every_key_or_the_tags_name() -> None:
    full = {f"k{number}": "v" for number in range(MAX_METADATA_KEYS)}
    assert tagged(full, "cmd-1") == full
    assert tagged({OPERATION_TAG: "the client's"}, "cmd-1") == {OPERATION_TAG: "the client's"}


def test_the_search_query_names_the_tag_and_escapes_quotes() -> None:
    assert search_query("6f1c-9a") == f"metadata['{OPERATION_TAG}']:'6f1c-9a'"
    assert search_query("it's\\") == f"metadata['{OPERATION_TAG}']:'it\\'s\\\\'"


def test_the_listing_window_runs_from_just_before_the_first_attempt_until_now() -> None:
    first = NOW - timedelta(days=2)
    assert listing_window(first, NOW) == (int((first - CLOCK_SKEW).timestamp()), int(NOW.timestamp()) + 1)


def test_the_intent_that_shows_what_we_sent_matches() -> None:
    assert matching_intents([intent()], SENT) == [intent()]
    assert matching_intents([intent(payment_method="pm_1Real", customer={"id": "cus_1"})], SENT)  # ids or objects


@pytest.mark.parametrize(
    "other",
    [
        {"amount": 999},
        {"currency": "eur"},
        {"capture_method": "manual"},
        {"customer": "cus_2"},
        {"customer": None},
        {"payment_method": "pm_1Other"},
        {"metadata": {"order": "8"}},
        {"metadata": {"order": "7", "extra": "x"}},
        {"metadata": {}},
    ],
)
def test_an_intent_that_differs_in_anything_we_sent_does_not_match(other: dict[str, Any]) -> None:
    assert matching_intents([intent(**other)], SENT) == []


def test_an_authorization_matches_only_a_manual_capture_intent() -> None:
    authorization = SentIntent(1000, "usd", "pm_1Real", capture=False, customer="cus_1", metadata={"order": "7"})
    assert matching_intents([intent(), intent(id="pi_2", capture_method="manual")], authorization) == [
        intent(id="pi_2", capture_method="manual")
    ]


def test_a_stripe_test_token_matches_the_payment_method_stripe_made_from_it() -> None:
    test_token = SentIntent(1000, "usd", "pm_card_visa", capture=True, customer="cus_1", metadata={"order": "7"})
    assert matching_intents([intent(payment_method="pm_1MadeFromTheToken")], test_token)


def test_only_objects_tagged_with_the_key_are_found() -> None:
    objects: list[dict[str, Any]] = [
        {"id": "re_1", "metadata": {OPERATION_TAG: "cmd-1"}},
        {"id": "re_2", "metadata": {OPERATION_TAG: "cmd-2"}},
        {"id": "re_3", "metadata": {}},
        {"id": "re_4"},
    ]
    assert [found["id"] for found in tagged_objects(objects, "cmd-1")] == ["re_1"]


def test_several_candidates_are_unresolved_and_name_them() -> None:
    result = unresolved("PaymentIntent", [intent(), intent(id="pi_2")])
    assert (result.outcome, result.unresolved, result.details["unresolved"]) == (
        Outcome.RETRYABLE, True, ["pi_1", "pi_2"],
    )  # fmt: skip
    assert result.retry_after == UNRESOLVED_RETRY_AFTER_S  # the client and the sweep come back after an operator
