"""Text that UTF-8 can carry. A Python str may hold a lone surrogate (JSON's `"\\ud800"`, or bytes decoded with
`surrogateescape`), which every UTF-8 encoder refuses: the event store, the read models and the response
renderers all fail on one. Client text holding one is refused where it enters; text echoed back in an error has
them replaced, so that rendering the error cannot fail."""

from __future__ import annotations

import re
from typing import Any, Final

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")  # in a str, any surrogate is a lone one
REPLACEMENT_CHARACTER: Final = "\ufffd"


def is_encodable(text: str) -> bool:
    """Whether `text` can be encoded as UTF-8 (holds no lone surrogate)."""
    return _LONE_SURROGATE.search(text) is None


def encodable(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD."""
    return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, text)


def holds_unencodable(value: Any) -> bool:
    """Whether any string or object key inside parsed JSON `value` holds a lone surrogate."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not is_encodable(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
