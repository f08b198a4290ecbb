"""Finding card numbers in free text: a Luhn-valid run of 13–19 digits, alone or grouped. Used by the gateway's
guard (refuse) and by the log formatter (mask).

API.md names groups split by single spaces or dashes. Written by hand a card number is also split by other
whitespace (a tab, a no-break space), other dashes (an en dash), or two or three of them ("4242 - 4242"): each
is a separator here too. A dot, a slash or an underscore splits it only in a card's own shape (4-4-4-4, with up to
3 more digits, or 4-6-4/5, one separator throughout): "4242.4242.4242.4242" and "card_4111_1111_1111_1111" are
card numbers, a decimal or a coordinate ("51.5073509512345") and a timestamp in a name ("batch_20261128_174205")
are not. Commas are no separator: "1001,1002,1003,1004" is a list of four numbers.

A run of digit groups is split at its separators; any consecutive groups holding 13–19 digits in all that
pass the Luhn check count as a card number ("4242 4242 4242 4242 12/28" is caught, a bare 20-digit order
number is not). Digits inside a UUID (8-4-4-4-12 hex digits, as clients put order ids in metadata) are not a card
number: about 1 random UUID in 350 holds a Luhn-valid run of 13–19 digits, and no card is written that way. Nor
are digits inside a hex token of 16 or more characters with a letter in it (a MongoDB ObjectId, a SHA digest, a
UUID written without dashes): 1 random ObjectId in 900 holds such a run, 1 SHA-256 digest in 200, and refusing a
client's order id as card data once in a few hundred requests is a fault a client cannot work around. A card
number with hex letters glued to it ("cc4242424242424242", "dead4242424242424242beef") is no such id: besides the
digit run, a random id holds a digit (1 random ObjectId in 500,000 does not and is refused, a SHA digest
practically never; 1 random 16-character hex id in 4,000 is). Letters and a digit glued to a card number
("4242424242424242abc0") pass for an id. A `%` starts no token: "pan%3D4242424242424242" is a card number after a
percent-encoded separator.
"""

from __future__ import annotations

import re

_SEPARATOR = r"[\s\-\u2010-\u2015\u2212]{1,3}"  # whitespace and dashes (hyphen to horizontal bar, minus sign)
_GROUPED_RUN = re.compile(rf"(?<![\d])\d+(?:{_SEPARATOR}\d+)*(?![\d])")
_CARD_SHAPED = re.compile(
    r"(?<!\d)(?<!\d[./_])\d{4}([./_])(?:\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{6}\1\d{4,5})(?!\d|[./_]\d)"
)
_GROUP = re.compile(r"\d+")
_HEX = "[0-9A-Fa-f]"
# A UUID may follow a word and a dash ("order-…", our "idempotency-…" streams), not a hex group and a dash.
_UUID = re.compile(
    rf"(?<![0-9A-Za-z])(?<!{_HEX}-){_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}(?![0-9A-Za-z-])"
)
_HEX_TOKEN = re.compile(rf"(?<![0-9A-Za-z%]){_HEX}{{16,}}(?![0-9A-Za-z])")
_HEX_LETTER = re.compile("[A-Fa-f]")


def luhn_valid(digits: str) -> bool:
    if not digits.isascii():  # other scripts' decimal digits (Arabic-Indic, fullwidth…), which `\d` matches
        digits = "".join(str(int(char)) for char in digits)
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
    identifiers: list[tuple[int, int]] | None = None  # found only once a run is long enough to matter
    for run in _GROUPED_RUN.finditer(text):
        if sum(c.isdigit() for c in run.group()) < 13:
            continue
        if identifiers is None:
            identifiers = _identifier_spans(text)
        if any(_part_of(text, run.span(), identifier) for identifier in identifiers):
            continue
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run.group())]
        spans.extend(_card_groups(text, groups))
    if "." in text or "/" in text or "_" in text:
        spans.extend(_card_shaped_spans(text, spans))
    return sorted(spans)


def _card_shaped_spans(text: str, found: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Card numbers split by dots, slashes or underscores (`_CARD_SHAPED`) that overlap none already `found`."""
    spans = []
    for match in _CARD_SHAPED.finditer(text):
        start, end = match.span()
        overlaps = any(start < other_end and other_start < end for other_start, other_end in found)
        if not overlaps and luhn_valid("".join(_GROUP.findall(match.group()))):
            spans.append((start, end))
    return spans


def _identifier_spans(text: str) -> list[tuple[int, int]]:
    uuids = [match.span() for match in _UUID.finditer(text)] if "-" in text else []
    hex_tokens = [match.span() for match in _HEX_TOKEN.finditer(text) if _HEX_LETTER.search(match.group())]
    return uuids + hex_tokens


def _part_of(text: str, run: tuple[int, int], identifier: tuple[int, int]) -> bool:
    """Whether the digit run is part of the identifier: inside it, and the identifier's other characters hold a
    digit (a random id's do; letters glued to a card number do not)."""
    start, end = identifier
    if not (start <= run[0] and run[1] <= end):
        return False
    rest = text[start : run[0]] + text[run[1] : end]
    return any(character.isdigit() for character in rest)


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
