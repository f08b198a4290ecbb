"""Paging backwards with `ending_before`: the pure windowing, then against a real SQLite read model (a walk back
from the last page gives the forward pages again, ties on equal times included, filters and workspaces kept),
and the fallback that folds a cursor's own stream when the read model has not caught up with it."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from payments_shared.broker.port import Message
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.messages import Command
from payments_shared.projections import readmodel
from payments_shared.projections.host import ListHost
from payments_shared.projections.listing import ListSpec, parse_query
from payments_shared.projections.model import ListEntry
from payments_shared.projections.readmodel import ListPage, ListQuery, ReadModel, UnknownCursor, Versioned
from payments_shared.projections.rebuild import rebuild

from tests.unit.test_projections import NOTES, add_note, unreachable

SPEC = ListSpec("notes", "/notes", filters=("status", "created"), statuses=("open", "closed"))


def test_a_forward_window_keeps_the_read_order() -> None:
    assert readmodel.page_window(["n5", "n4", "n3"], 2, backwards=False) == (["n5", "n4"], True)
    assert readmodel.page_window(["n5", "n4"], 2, backwards=False) == (["n5", "n4"], False)


def test_a_backward_window_is_turned_newest_first_and_has_more_looks_further_back() -> None:
    # read oldest first from the cursor: n3 is the nearest, n5 one beyond the page
    assert readmodel.page_window(["n3", "n4", "n5"], 2, backwards=True) == (["n4", "n3"], True)
    assert readmodel.page_window(["n3", "n4"], 2, backwards=True) == (["n4", "n3"], False)
    assert readmodel.page_window([], 2, backwards=True) == ([], False)


def entry(note_id: str, second: int, workspace: str = "ws_a", status: str = "open") -> Versioned:
    created_at = f"2026-01-01T00:00:{second:02d}Z"
    body = {"id": note_id, "status": status}
    return Versioned(ListEntry(note_id, workspace, created_at, body, status=status), 0)


async def walk(model: ReadModel, query: ListQuery) -> tuple[list[ListPage], list[ListPage]]:
    """Every page forwards with starting_after, then backwards with ending_before from the last page's first
    object until has_more is false; the backward pages as read, nearest first."""
    forward = [await model.page("notes", query)]
    while forward[-1].has_more:
        forward.append(await model.page("notes", replace(query, starting_after=forward[-1].data[-1]["id"])))
    backward: list[ListPage] = []
    cursor = forward[-1].data[0]["id"] if forward[-1].data else None
    while cursor is not None:
        page = await model.page("notes", replace(query, ending_before=cursor))
        backward.append(page)
        cursor = page.data[0]["id"] if page.has_more else None
    return forward, backward


def assert_walks_back_through_the_forward_pages(forward: list[ListPage], backward: list[ListPage]) -> None:
    if len(forward) == 1:  # nothing lies before the first page
        assert [(page.data, page.has_more) for page in backward] in ([], [([], False)])
        return
    assert [page.data for page in reversed(backward)] == [page.data for page in forward[:-1]]
    assert [page.has_more for page in backward] == [True] * (len(backward) - 1) + [False]


async def test_ending_before_walks_back_through_pages_split_inside_runs_of_ties(model: ReadModel) -> None:
    # seven share second 5, three second 2: every page boundary of limit 3 falls inside a run of ties
    entries = [entry(f"a{n}", 5) for n in range(7)] + [entry(f"b{n}", 2) for n in range(3)] + [entry("c", 9)]
    entries.append(entry("theirs", 5, workspace="ws_b"))
    assert await model.commit("notes", entries, 0, 1)
    forward, backward = await walk(model, ListQuery(workspace="ws_a", limit=3))
    listed = [note["id"] for page in forward for note in page.data]
    assert listed == ["c", "a6", "a5", "a4", "a3", "a2", "a1", "a0", "b2", "b1", "b0"]
    assert [page.has_more for page in forward] == [True, True, True, False]
    assert_walks_back_through_the_forward_pages(forward, backward)
    assert len(backward) == 3
    top = await model.page("notes", ListQuery(workspace="ws_a", ending_before="c"))
    assert (top.data, top.has_more) == ([], False)


async def test_ending_before_keeps_the_filters(model: ReadModel) -> None:
    statuses = ["open", "closed", "open", "open", "closed", "open"]
    entries = [entry(f"n{n}", 1 + n // 2, status=status) for n, status in enumerate(statuses)]
    assert await model.commit("notes", entries, 0, 1)
    page = await model.page("notes", ListQuery(workspace="ws_a", statuses=("open",), ending_before="n0", limit=2))
    assert ([note["id"] for note in page.data], page.has_more) == (["n3", "n2"], True)
    newer = await model.page("notes", ListQuery(workspace="ws_a", statuses=("open",), ending_before="n3", limit=2))
    assert ([note["id"] for note in newer.data], newer.has_more) == (["n5"], False)
    # a cursor the filter leaves out still marks its place in the list
    around = await model.page("notes", ListQuery(workspace="ws_a", statuses=("open",), ending_before="n4"))
    assert [note["id"] for note in around.data] == ["n5"]


async def test_ending_before_another_workspaces_object_is_an_unknown_cursor(model: ReadModel) -> None:
    assert await model.commit("notes", [entry("mine", 1), entry("theirs", 2, workspace="ws_b")], 0, 1)
    with pytest.raises(UnknownCursor) as raised:
        await model.page("notes", ListQuery(workspace="ws_a", ending_before="theirs"))
    assert raised.value.param == "ending_before"
    mine = await model.page("notes", ListQuery(workspace="ws_a", ending_before="mine"))
    assert (mine.data, mine.has_more) == ([], False)


@settings(max_examples=60, deadline=None, derandomize=True)  # stable in CI; 3,000 random ones passed
@given(
    notes=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["ws_a", "ws_b"]), st.sampled_from(["open", "closed"])),
        max_size=14,
    ),
    limit=st.integers(1, 4),
    status=st.none() | st.just("open"),
    created_gte=st.none() | st.integers(0, 3),
)
def test_any_list_walked_back_from_its_last_page_gives_its_forward_pages(
    notes: list[tuple[int, str, str]], limit: int, status: str | None, created_gte: int | None
) -> None:
    entries = [entry(f"n{number}", *note) for number, note in enumerate(notes)]
    params = {"limit": str(limit)} | ({"status": status} if status else {})
    if created_gte is not None:
        params["created[gte]"] = str(1_767_225_600 + created_gte)
    query = parse_query(SPEC, "ws_a", params)

    async def run() -> tuple[list[ListPage], list[ListPage]]:
        with tempfile.TemporaryDirectory() as directory:
            model = ReadModel(Path(directory) / "readmodels.db")
            try:
                assert await model.commit("notes", entries, 0, 1)
                return await walk(model, query)
            finally:
                await model.close()

    forward, backward = asyncio.run(run())
    expected = sorted(
        (
            (item.entry.created_at, item.entry.id)
            for item in entries
            if item.entry.workspace == "ws_a"
            and (status is None or item.entry.status == status)
            and (created_gte is None or item.entry.created_at >= f"2026-01-01T00:00:{created_gte:02d}Z")
        ),
        reverse=True,
    )
    assert [note["id"] for page in forward for note in page.data] == [note_id for _, note_id in expected]
    assert_walks_back_through_the_forward_pages(forward, backward)


async def test_the_stream_fallback_keeps_a_tie_in_its_place(store: SqliteEventStore, tmp_path: Path) -> None:
    for note_id in ("t1", "t3"):
        await add_note(store, note_id, created_at="2026-01-01T00:00:00Z")
    host = ListHost(store, tmp_path / "lists", [NOTES], {"list_notes": SPEC})
    try:
        await rebuild(store, host.read_model, NOTES)
        await add_note(store, "t2", created_at="2026-01-01T00:00:00Z")  # the same time, not projected yet
        command = Command(type="list_notes", workspace="ws_a", actor="t", command_id="c", payload={})
        for cursor, expected in (("ending_before", ["t3"]), ("starting_after", ["t1"])):
            command.payload["params"] = {cursor: "t2"}
            reply = await host.serving(unreachable)(Message(command.model_dump()))
            assert reply is not None and reply["status"] == 200, reply
            assert [note["id"] for note in reply["body"]["data"]] == expected
    finally:
        await host.stop()


def test_a_query_holds_one_cursor_at_most() -> None:
    with pytest.raises(ValueError, match="exclude"):
        ListQuery(workspace="ws_a", starting_after="n1", ending_before="n2")


@pytest.mark.parametrize(
    ("operator", "listed"),
    [
        ("created", ["n_half", "n"]),
        ("created[gt]", ["n_next"]),
        ("created[gte]", ["n_next", "n_half", "n"]),
        ("created[lt]", ["n_before"]),
        ("created[lte]", ["n_half", "n", "n_before"]),
    ],
)
async def test_created_operators_count_whole_seconds_on_the_read_model(
    model: ReadModel, operator: str, listed: list[str]
) -> None:
    at = {"n_before": "00:00:09.999999", "n": "00:00:10", "n_half": "00:00:10.5", "n_next": "00:00:11"}
    entries = [Versioned(ListEntry(i, "ws_a", f"2026-01-01T{t}Z", {"id": i}), 0) for i, t in at.items()]
    assert await model.commit("notes", entries, 0, 1)
    page = await model.page("notes", parse_query(SPEC, "ws_a", {operator: str(1_767_225_610)}))
    assert [note["id"] for note in page.data] == listed
