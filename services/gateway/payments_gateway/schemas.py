"""Building blocks of strict request models: JSON types exactly (no coercion), unknown fields refused, money
and metadata within API.md's (and Stripe's) limits."""

from __future__ import annotations

from typing import Annotated

from payments_shared.metadata import MAX_METADATA_KEY_LENGTH, MAX_METADATA_KEYS, MAX_METADATA_VALUE_LENGTH
from payments_shared.money import MAX_AMOUNT, MIN_AMOUNT
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from payments_gateway.currencies import normalise_currency

MAX_DESCRIPTION_LENGTH = 1000
MAX_ID_LENGTH = 255


def _no_square_brackets(key: str) -> str:
    """Stripe refuses metadata keys holding `[` or `]` (its form encoding nests on them)."""
    if "[" in key or "]" in key:
        raise ValueError("metadata keys cannot contain square brackets ([ and ])")
    return key


class StrictModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


Amount = Annotated[int, Field(ge=MIN_AMOUNT, le=MAX_AMOUNT)]
Currency = Annotated[str, StringConstraints(min_length=3, max_length=3), AfterValidator(normalise_currency)]
ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_LENGTH), AfterValidator(_no_square_brackets)
]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_LENGTH)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_KEYS)]
Description = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_LENGTH)]
