"""Parsing the list parameters Stripe has and this API lacked: `ending_before` (exclusive with `starting_after`)
and the `created` range in Stripe's spelling (`created`, `created[gt|gte|lt|lte]`, whole Unix seconds) beside
`created_gte` / `created_lt`. Pure: no read model."""

from __future__ import annotations

import pytest
from payments_shared.errors import ApiError
from payments_shared.projections.listing import ListSpec, parse_query

SPEC = ListSpec("notes", "/notes", filters=("status", "created"), statuses=("open", "closed"))
N = 1_767_225_600  # 2026-01-01T00:00:00Z
N_US = N * 1_000_000
SECOND = 1_000_000


def refused_param(params: dict[str, str], spec: ListSpec = SPEC) -> str | None:
    with pytest.raises(ApiError) as raised:
        parse_query(spec, "ws_a", params)
    assert raised.value.status == 400
    return raised.value.param


def test_ending_before_is_a_cursor_read_towards_newer_objects() -> None:
    query = parse_query(SPEC, "ws_a", {"ending_before": "n3", "limit": "2"})
    assert (query.ending_before, query.starting_after, query.limit) == ("n3", None, 2)
    assert (query.cursor, query.backwards, query.cursor_param) == ("n3", True, "ending_before")
    forward = parse_query(SPEC, "ws_a", {"starting_after": "n3"})
    assert (forward.cursor, forward.backwards, forward.cursor_param) == ("n3", False, "starting_after")


def test_ending_before_with_starting_after_is_400_and_an_empty_one_too() -> None:
    parse_query(SPEC, "ws_a", {"ending_before": "n1"})  # alone it is a cursor
    assert refused_param({"starting_after": "n1", "ending_before": "n2"}) == "ending_before"
    assert refused_param({"ending_before": " "}) == "ending_before"


@pytest.mark.parametrize(
    ("params", "gte_us", "lt_us"),
    [
        ({"created": str(N)}, N_US, N_US + SECOND),
        ({"created[gt]": str(N)}, N_US + SECOND, None),  # after second N: N.5 is still within it
        ({"created[gte]": str(N)}, N_US, None),
        ({"created[lt]": str(N)}, None, N_US),
        ({"created[lte]": str(N)}, None, N_US + SECOND),  # N.999999 included
        ({"created[gte]": "-1"}, -SECOND, None),
        ({"created[lte]": "253402300799"}, None, 253_402_300_800 * SECOND),  # the last second a datetime holds
    ],
)
def test_stripes_created_operators_are_whole_unix_seconds(params: dict[str, str], gte_us: int, lt_us: int) -> None:
    query = parse_query(SPEC, "ws_a", params)
    assert (query.created_gte_us, query.created_lt_us) == (gte_us, lt_us)


def test_created_bounds_combine_to_the_tightest() -> None:
    both = {"created[gt]": str(N), "created_gte": str(N + 5), "created[lte]": str(N + 9), "created_lt": str(N + 7)}
    query = parse_query(SPEC, "ws_a", both)
    assert (query.created_gte_us, query.created_lt_us) == (N_US + 5 * SECOND, N_US + 7 * SECOND)
    crossed = parse_query(SPEC, "ws_a", {"created[gte]": str(N + 1), "created[lt]": str(N)})
    assert (crossed.created_gte_us, crossed.created_lt_us) == (N_US + SECOND, N_US)  # empty, not an error
    old_spelling = parse_query(SPEC, "ws_a", {"created_gte": "2026-01-01T00:00:00.5Z"})
    assert old_spelling.created_gte_us == N_US + SECOND // 2


@pytest.mark.parametrize("name", ["created", "created[gt]", "created[gte]", "created[lt]", "created[lte]"])
@pytest.mark.parametrize(
    "bad",
    [
        "",
        "soon",
        "1.5",
        "1e9",
        "+1767225600",
        " 1767225600",
        "2026-01-01",  # ISO is created_gte's extension; Stripe's spelling takes integers only
        "\uff11",  # a full-width 1
        "--1",
        "99999999999999999999",  # no datetime holds it
        "253402300800",  # a second past 9999-12-31T23:59:59Z
        "9" * 5000,  # past int()'s digit limit
    ],
)
def test_a_bad_created_operator_value_is_400_naming_exactly_it(name: str, bad: str) -> None:
    parse_query(SPEC, "ws_a", {name: str(N)})  # a good value is taken
    assert refused_param({name: bad, "created_gte": str(N)}) == name  # beside a good bound, still this one


@pytest.mark.parametrize("name", ["created", "created[gt]", "created[lte]"])
def test_created_is_a_filter_only_where_the_list_takes_it(name: str) -> None:
    without = ListSpec("plain", "/plain", filters=("status",), statuses=("open",))
    assert refused_param({name: str(N)}, without) == name
    parse_query(SPEC, "ws_a", {name: str(N)})


def test_status_is_one_status_a_group_of_them_or_without_it_the_list_s_default() -> None:
    spec = ListSpec(
        "subs",
        "/subs",
        filters=("status",),
        statuses=("active", "canceled"),
        status_groups={"ended": ("canceled",), "all": None},
        unfiltered=("active",),
    )
    assert parse_query(spec, "ws_a", {}).statuses == ("active",)
    assert parse_query(spec, "ws_a", {"status": "canceled"}).statuses == ("canceled",)
    assert parse_query(spec, "ws_a", {"status": "ended"}).statuses == ("canceled",)
    assert parse_query(spec, "ws_a", {"status": "all"}).statuses is None
    assert refused_param({"status": "ALL"}, spec) == "status"
    assert parse_query(SPEC, "ws_a", {}).statuses is None  # a list without a default shows every status
    assert refused_param({"status": "all"}) == "status"  # and takes no group it does not name
