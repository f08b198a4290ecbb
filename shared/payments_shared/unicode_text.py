"""Text that UTF-8 can carry. A Python str may hold a lone surrogate (JSON's `"\\ud800"`, or bytes decoded with
`surrogateescape`), which every UTF-8 encoder refuses: the event store, the read models and the response
renderers all fail on one. Client text holding one is refused where it enters; text echoed back in an error has
them replaced, so that rendering the error cannot fail."""

from __future__ import annotations

import re
from typing import Any, Final

from payments_shared.json_paths import first_match

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")  # in a str, any surrogate is a lone one
REPLACEMENT_CHARACTER: Final = "\ufffd"


def is_encodable(text: str) -> bool:
    """Whether `text` can be encoded as UTF-8 (holds no lone surrogate)."""
    return _LONE_SURROGATE.search(text) is None


_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


def is_name_text(text: str) -> bool:
    """Whether `text` can name an actor or a tenant: not blank, no control character (a `"ws1\n"` would be a
    tenant of its own, printed like `ws1`), encodable."""
    return bool(text.strip()) and _CONTROL.search(text) is None and is_encodable(text)


def encodable(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD."""
    return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, text)


def _is_unencodable(value: object) -> bool:
    return isinstance(value, str) and not is_encodable(value)


def find_unencodable_text(value: Any) -> tuple[str, ...] | None:
    """The path of the first string or key holding a lone surrogate in parsed JSON; None when there is none."""
    found = first_match(value, _is_unencodable)
    return None if found is None else found[0]
