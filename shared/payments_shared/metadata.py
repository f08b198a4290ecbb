"""Metadata: at most 50 keys of up to 40 characters, values up to 500 (API.md; Stripe's limits). An update merges
into what is there (a value of "" removes its key), and the merged result is held to the same count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from payments_shared.errors import invalid

MAX_METADATA_KEYS: Final = 50
MAX_METADATA_KEY_LENGTH: Final = 40
MAX_METADATA_VALUE_LENGTH: Final = 500


def merged_metadata(current: Mapping[str, str], update: Mapping[str, str]) -> dict[str, str]:
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merged_metadata_within_limit(current: Mapping[str, str], update: Mapping[str, str]) -> dict[str, str]:
    """The merge a client asks for, or 400 on `metadata` when it would hold more keys than allowed."""
    merged = merged_metadata(current, update)
    if len(merged) > MAX_METADATA_KEYS:
        raise invalid(
            f"metadata would hold {len(merged)} keys after this update; at most {MAX_METADATA_KEYS} are allowed "
            '(a value of "" removes a key).',
            param="metadata",
        )
    return merged
