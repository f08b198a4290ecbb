"""Finding card numbers in free text: a Luhn-valid run of 13–19 digits, alone or grouped by single spaces or
dashes. Used by the gateway's guard (refuse) and by the log formatter (mask).

A run of digit groups is split at its separators; any consecutive groups holding 13–19 digits in all that
pass the Luhn check count as a card number ("4242 4242 4242 4242 12/28" is caught, a bare 20-digit order
number is not).
"""

from __future__ import annotations

import re

_GROUPED_RUN = re.compile(r"(?<![\d])\d+(?:[ -]\d+)*(?![\d])")
_GROUP = re.compile(r"\d+")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_spans(text: str) -> list[tuple[int, int]]:
    """Character spans (start, end) of the card numbers in `text`, in order, not overlapping."""
    spans: list[tuple[int, int]] = []
    for run in _GROUPED_RUN.finditer(text):
        if sum(c.isdigit() for c in run.group()) < 13:
            continue
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run.group())]
        spans.extend(_card_groups(text, groups))
    return spans


def _card_groups(text: str, groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    first = 0
    while first < len(groups):
        span = _card_starting_at(text, groups, first)
        if span is None:
            first += 1
            continue
        found.append((groups[first][0], groups[span][1]))
        first = span + 1
    return found


def _card_starting_at(text: str, groups: list[tuple[int, int]], first: int) -> int | None:
    digits = ""
    for last in range(first, len(groups)):
        digits += text[groups[last][0] : groups[last][1]]
        if len(digits) > 19:
            return None
        if len(digits) >= 13 and luhn_valid(digits):
            return last
    return None


def contains_card_number(text: str) -> bool:
    return len(text) >= 13 and bool(card_spans(text))


def mask_card_numbers(text: str) -> str:
    if len(text) < 13:
        return text
    for begin, end in reversed(card_spans(text)):
        text = f"{text[:begin]}[card number removed]{text[end:]}"
    return text
