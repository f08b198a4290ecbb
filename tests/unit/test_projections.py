"""The projection machinery against a real SQLite event store and read model: the live runner, the checkpoint
moving with the entries, rebuilds (aside + swap, or from a position) while a runner is live, list pages
(order, tiebreak, cursor, filters, workspace isolation), parameter checks, and the transactions projection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from payments_shared.broker.port import Message
from payments_shared.errors import ApiError
from payments_shared.eventstore.port import ANY, NO_STREAM, NewEvent, RecordedEvent
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.messages import Command
from payments_shared.projections.host import ListHost
from payments_shared.projections.listing import ListSpec, parse_query
from payments_shared.projections.model import ListEntry, Projection
from payments_shared.projections.readmodel import ListQuery, ReadModel, UnknownCursor, Versioned
from payments_shared.projections.rebuild import rebuild
from payments_shared.projections.runner import ProjectionRunner
from payments_transactions.projection import TRANSACTIONS

WAIT_S = 20.0


def note_entry(events: Sequence[RecordedEvent]) -> ListEntry | None:
    first, last = events[0], events[-1]
    return ListEntry(
        id=str(first.data["id"]),
        workspace=str(first.metadata["workspace"]),
        created_at=str(first.data["created_at"]),
        body={"id": first.data["id"], "status": last.data["status"], "version": last.version},
        status=str(last.data["status"]),
        customer_id=first.data.get("customer_id"),
    )


NOTES = Projection("notes", "note-", note_entry)


async def add_note(
    store: SqliteEventStore, note_id: str, workspace: str = "ws_a", created_at: str = "2026-01-01T00:00Z", **data: str
) -> int:
    first = {"id": note_id, "created_at": created_at, "status": "open", **data}
    return await store.append(f"note-{note_id}", [NewEvent("NoteOpened", first, {"workspace": workspace})], NO_STREAM)


async def set_status(store: SqliteEventStore, note_id: str, status: str) -> int:
    return await store.append(f"note-{note_id}", [NewEvent("NoteChanged", {"status": status})], ANY)


async def caught_up(model: ReadModel, name: str, position: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while await model.checkpoint(name) < position:  # noqa: ASYNC110 - another task moves it, in SQLite
            await asyncio.sleep(0.02)


async def test_the_runner_follows_the_store_and_moves_its_checkpoint_with_the_entries(
    store: SqliteEventStore, model: ReadModel
) -> None:
    await add_note(store, "n1")
    await store.append("other-stream", [NewEvent("Unrelated", {})], NO_STREAM)
    runner = ProjectionRunner(store, model, NOTES)
    await runner.start()
    try:
        position = await set_status(store, "n1", "closed")
        await caught_up(model, "notes", position)
        page = await model.page("notes", ListQuery(workspace="ws_a"))
        assert page.data == [{"id": "n1", "status": "closed", "version": 1}]
        assert page.position == position
        later = await add_note(store, "n2", created_at="2026-01-02T00:00:00Z")
        await caught_up(model, "notes", later)
        assert [n["id"] for n in (await model.page("notes", ListQuery(workspace="ws_a"))).data] == ["n2", "n1"]
    finally:
        await runner.stop()


async def test_a_restarted_runner_resumes_from_its_checkpoint(store: SqliteEventStore, model: ReadModel) -> None:
    position = await add_note(store, "n1")
    runner = ProjectionRunner(store, model, NOTES)
    await runner.start()
    await caught_up(model, "notes", position)
    await runner.stop()
    position = await set_status(store, "n1", "closed")
    assert (await model.page("notes", ListQuery(workspace="ws_a"))).data[0]["status"] == "open"
    runner = ProjectionRunner(store, model, NOTES)
    await runner.start()
    try:
        await caught_up(model, "notes", position)
        assert (await model.page("notes", ListQuery(workspace="ws_a"))).data[0]["status"] == "closed"
    finally:
        await runner.stop()


async def test_pages_are_newest_first_with_an_id_tiebreak_and_a_stable_cursor(
    store: SqliteEventStore, model: ReadModel
) -> None:
    for number in range(7):  # three share one creation time: the id breaks the tie
        created = "2026-01-05T00:00:00Z" if number < 3 else f"2026-01-0{number - 2}T00:00:00Z"
        await add_note(store, f"n{number}", created_at=created)
    await add_note(store, "theirs", workspace="ws_b", created_at="2026-02-01T00:00:00Z")
    await rebuild(store, model, NOTES)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await model.page("notes", ListQuery(workspace="ws_a", limit=3, starting_after=cursor))
        seen.extend(note["id"] for note in page.data)
        if not page.has_more:
            break
        cursor = page.data[-1]["id"]
    assert seen == ["n2", "n1", "n0", "n6", "n5", "n4", "n3"]
    with pytest.raises(UnknownCursor):  # another workspace's object is no cursor here
        await model.page("notes", ListQuery(workspace="ws_a", starting_after="theirs"))
    assert [n["id"] for n in (await model.page("notes", ListQuery(workspace="ws_b"))).data] == ["theirs"]


@pytest.mark.parametrize(
    ("cursor", "created_at", "nearest"),  # nearest: the projected note next to the cursor, the page's with limit 1
    [("starting_after", "2026-01-03T00:00:00Z", "n2"), ("ending_before", "2025-12-31T00:00:00Z", "n1")],
)
async def test_a_cursor_not_projected_yet_is_read_from_its_stream_in_its_workspace_only(
    store: SqliteEventStore, tmp_path: Path, cursor: str, created_at: str, nearest: str
) -> None:
    await add_note(store, "n1", created_at="2026-01-01T00:00:00Z")
    await add_note(store, "n2", created_at="2026-01-02T00:00:00Z")
    host = ListHost(store, tmp_path / "lists", [NOTES], {"list_notes": SPEC})
    try:
        await rebuild(store, host.read_model, NOTES)
        await add_note(store, "n3", created_at=created_at)  # appended, not projected yet
        await add_note(store, "theirs", workspace="ws_b", created_at=created_at)
        handle = host.serving(unreachable)

        async def page(workspace: str, object_id: str, **params: str) -> Mapping[str, Any]:
            command = Command(type="list_notes", workspace=workspace, actor="t", command_id="c", payload={})
            command.payload["params"] = {cursor: object_id, **params}
            reply = await handle(Message(command.model_dump()))
            assert reply is not None
            return reply

        listed = await page("ws_a", "n3")
        assert listed["status"] == 200, listed
        assert ([note["id"] for note in listed["body"]["data"]], listed["body"]["has_more"]) == (["n2", "n1"], False)
        one = (await page("ws_a", "n3", limit="1"))["body"]
        assert ([note["id"] for note in one["data"]], one["has_more"]) == ([nearest], True)
        for workspace, object_id in (("ws_a", "theirs"), ("ws_b", "n3"), ("ws_a", "n9")):
            refused = await page(workspace, object_id)
            assert (refused["status"], refused["body"]["error"]["param"]) == (400, cursor)
    finally:
        await host.stop()


async def unreachable(message: Message) -> Mapping[str, Any] | None:
    raise AssertionError(f"not a list query: {message.body}")


async def test_filters(store: SqliteEventStore, model: ReadModel) -> None:
    await add_note(store, "a", created_at="2026-01-01T00:00:00Z", customer_id="cus_1")
    await add_note(store, "b", created_at="2026-01-02T00:00:00Z", customer_id="cus_2")
    await add_note(store, "c", created_at="2026-01-03T00:00:00Z", customer_id="cus_1")
    await set_status(store, "c", "closed")
    await rebuild(store, model, NOTES)

    async def ids(**filters: object) -> list[str]:
        page = await model.page("notes", ListQuery(workspace="ws_a", **filters))  # type: ignore[arg-type]
        return [note["id"] for note in page.data]

    assert await ids(customer_id="cus_1") == ["c", "a"]
    assert await ids(statuses=("open",)) == ["b", "a"]
    assert await ids(statuses=("open", "closed")) == ["c", "b", "a"]
    assert await ids(statuses=()) == []
    day = 86_400 * 1_000_000
    jan_2 = 1_767_312_000 * 1_000_000
    assert await ids(created_gte_us=jan_2) == ["c", "b"]
    assert await ids(created_lt_us=jan_2) == ["a"]
    assert await ids(created_gte_us=jan_2, created_lt_us=jan_2 + day) == ["b"]


async def test_a_rebuild_swapped_in_under_a_live_runner_ends_equal_to_a_fresh_one(
    store: SqliteEventStore, model: ReadModel, tmp_path: Path
) -> None:
    for number in range(30):
        await add_note(store, f"n{number:02d}")
    runner = ProjectionRunner(store, model, NOTES)
    await runner.start()
    try:
        writer = asyncio.create_task(_keep_changing(store))
        first = await rebuild(store, model, NOTES)
        again = await rebuild(store, model, NOTES)  # idempotent, and swapped in while the runner is live
        assert first.entries >= 30 and again.entries >= 30  # more when it caught up with the writer
        from_middle = await rebuild(store, model, NOTES, from_position=10)
        assert from_middle.position >= again.position
        last = await writer
        await caught_up(model, "notes", last)
    finally:
        await runner.stop()
    fresh = ReadModel(tmp_path / "fresh.db")
    try:
        await rebuild(store, fresh, NOTES)
        assert await fresh.entries("notes") == await model.entries("notes")
        assert await fresh.checkpoint("notes") == await model.checkpoint("notes")
    finally:
        await fresh.close()
    assert await model.entries("notes~rebuild") == []


async def _keep_changing(store: SqliteEventStore) -> int:
    position = 0
    for round_ in range(3):
        for number in range(0, 30, 3):
            position = await set_status(store, f"n{number:02d}", f"s{round_}")
        await asyncio.sleep(0)
    return position


class RebuiltUnderTheNextCommit(ReadModel):
    """Once given `then`, the next commit finds its checkpoint moved (as a rebuild swapped in just before would),
    and `then` runs as the last thing before the runner learns of it, that is, as the runner stops its
    subscription to resume from the moved checkpoint."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.then: Callable[[], Awaitable[None]] | None = None

    async def commit(self, projection: str, entries: Sequence[Versioned], expected: int, position: int) -> bool:
        then, self.then = self.then, None
        if then is None:
            return await super().commit(projection, entries, expected, position)
        assert await super().commit(projection, entries, expected, position)  # the swap, of the same model
        committed = await super().commit(projection, entries, expected, position)
        await then()
        return committed


@pytest.fixture
async def hooked(tmp_path: Path) -> AsyncIterator[RebuiltUnderTheNextCommit]:
    opened = RebuiltUnderTheNextCommit(tmp_path / "hooked.db")
    yield opened
    await opened.close()


async def test_a_runner_resuming_from_a_moved_checkpoint_as_an_append_wakes_it_follows_on(
    store: SqliteEventStore, hooked: RebuiltUnderTheNextCommit
) -> None:
    runner = ProjectionRunner(store, hooked, NOTES)
    await runner.start()
    try:
        await caught_up(hooked, "notes", await add_note(store, "n1"))
        woken_by: list[int] = []

        async def append() -> None:  # its wake-up reaches the subscription as the runner stops it
            woken_by.append(await add_note(store, "wakes"))

        hooked.then = append
        await set_status(store, "n1", "closed")
        while not woken_by:  # noqa: ASYNC110 - the runner's commit appends it
            await asyncio.sleep(0.01)
        await caught_up(hooked, "notes", woken_by[0])
        listed = (await hooked.page("notes", ListQuery(workspace="ws_a"))).data
        assert sorted((note["id"], note["status"]) for note in listed) == [("n1", "closed"), ("wakes", "open")]
    finally:
        await runner.stop()


async def test_a_runner_stopped_as_it_resumes_from_a_moved_checkpoint_stops(
    store: SqliteEventStore, hooked: RebuiltUnderTheNextCommit
) -> None:
    runner = ProjectionRunner(store, hooked, NOTES)
    await runner.start()
    stopping: list[asyncio.Task[None]] = []

    async def stop() -> None:  # reaches the runner while it waits for its subscription to end
        stopping.append(asyncio.create_task(runner.stop()))

    hooked.then = stop
    try:
        await add_note(store, "n1")
        while not stopping:  # noqa: ASYNC110 - the runner's commit starts it
            await asyncio.sleep(0.01)
        stopped, _ = await asyncio.wait(stopping, timeout=WAIT_S)
        assert stopped, "runner.stop() did not return"
    finally:
        await runner.stop()


async def test_the_transactions_projection_lists_the_folded_transaction(
    store: SqliteEventStore, model: ReadModel
) -> None:
    metadata = {"workspace": "ws_a", "actor": "tester", "occurred_at": "2026-03-01T10:00:00.000000Z"}
    requested = {
        "transaction_id": "txn_1",
        "kind": "charge",
        "amount": 1099,
        "currency": "usd",
        "provider": "sandbox",
        "payment_method": {"type": "token"},
        "customer_id": "cus_9",
        "description": None,
        "metadata": {},
        "command_id": "c1",
        "message_id": "m1",
        "fingerprint": None,
    }
    captured = {"command_id": "c1", "amount": 1099, "provider_reference": "sb_1"}
    events = [NewEvent("TransactionRequested", requested, metadata), NewEvent("PaymentCaptured", captured, metadata)]
    await store.append("transaction-txn_1", events, NO_STREAM)
    await rebuild(store, model, TRANSACTIONS)
    page = await model.page("transactions", ListQuery(workspace="ws_a", customer_id="cus_9", statuses=("captured",)))
    [listed] = page.data
    assert (listed["id"], listed["status"], listed["amount_captured"]) == ("txn_1", "captured", 1099)
    assert listed["created_at"] == "2026-03-01T10:00:00.000000Z"


SPEC = ListSpec("notes", "/notes", filters=("status", "customer_id", "created"), statuses=("open", "closed"))


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "\u00b2"}, "limit"),  # a digit to str.isdigit, but not to int()
        ({"limit": "\uff15"}, "limit"),  # a full-width 5
        ({"status": "lost"}, "status"),
        ({"created_gte": "yesterday"}, "created_gte"),
        ({"created_lt": "2026-13-01"}, "created_lt"),
        ({"created_gte": "99999999999999999999"}, "created_gte"),  # SQLite cannot bind it
        ({"created_lt": "253402300800"}, "created_lt"),  # a second past 9999-12-31T23:59:59Z
        ({"email": "a@b.c"}, "email"),
        ({"starting_after": ""}, "starting_after"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(params: dict[str, str], param: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_query(SPEC, "ws_a", params)
    assert raised.value.status == 400
    assert raised.value.param == param


def test_parameters_parse() -> None:
    query = parse_query(SPEC, "ws_a", {"limit": "100", "created_gte": "1767225600", "created_lt": "2026-01-02"})
    assert (query.limit, query.created_gte_us) == (100, 1_767_225_600_000_000)
    assert query.created_lt_us == 1_767_312_000_000_000
    assert parse_query(SPEC, "ws_a", {}).limit == 10


async def test_a_rebuild_never_moves_an_idle_live_model_back(store: SqliteEventStore, model: ReadModel) -> None:
    for number in range(5):
        await add_note(store, f"n{number}")
    position = await set_status(store, "n0", "closed")
    runner = ProjectionRunner(store, model, NOTES)
    await runner.start()
    try:
        await caught_up(model, "notes", position)
        before = await model.entries("notes")
        result = await rebuild(store, model, NOTES)
        assert result.position == position == await model.checkpoint("notes")
        assert await model.entries("notes") == before
        later = await set_status(store, "n1", "closed")  # the runner carries on after the swap
        await caught_up(model, "notes", later)
        assert (await model.page("notes", ListQuery(workspace="ws_a", statuses=("closed",)))).data[0]["id"] == "n1"
    finally:
        await runner.stop()


async def test_a_rebuild_from_past_the_checkpoint_applies_what_the_model_has_not_seen(
    store: SqliteEventStore, model: ReadModel
) -> None:
    for number in range(4):
        await add_note(store, f"n{number}")
    later = await set_status(store, "n3", "closed")
    result = await rebuild(store, model, NOTES, from_position=later)  # an empty model: checkpoint 0
    assert result.position == later
    assert [n["id"] for n in (await model.page("notes", ListQuery(workspace="ws_a"))).data] == ["n3", "n2", "n1", "n0"]


async def test_a_rebuilt_model_behind_the_live_one_is_not_swapped_in(model: ReadModel) -> None:
    assert await model.commit("notes", [], 0, 50)
    assert await model.commit("notes~rebuild", [], 0, 40)
    assert await model.swap("notes~rebuild", "notes") is None
    assert await model.checkpoint("notes") == 50


async def test_of_two_processes_sharing_a_read_model_one_projects_and_the_other_takes_over_when_it_stops(
    store: SqliteEventStore, model: ReadModel, caplog: pytest.LogCaptureFixture
) -> None:
    # A second ReadModel on the same file is what a second worker with the same DATA_DIR opens.
    other_model = ReadModel(model.path)
    first, second = ProjectionRunner(store, model, NOTES), ProjectionRunner(store, other_model, NOTES)
    await first.start()
    await caught_up(model, "notes", await add_note(store, "n0"))
    await second.start()
    try:
        with caplog.at_level("INFO", logger="payments_shared.projections.runner"):
            for number in range(1, 60):
                position = await add_note(store, f"n{number}")
                await asyncio.sleep(0.005)
            await caught_up(model, "notes", position)
        assert [record.getMessage() for record in caplog.records if "checkpoint moved" in record.getMessage()] == []
        assert (first.projecting, second.projecting) == (True, False)

        await first.stop()
        later = await add_note(store, "after-the-first-stopped")
        await caught_up(other_model, "notes", later)
        assert second.projecting
        listed = (await other_model.page("notes", ListQuery(workspace="ws_a", limit=100))).data
        assert len(listed) == 61
    finally:
        await first.stop()
        await second.stop()
        await other_model.close()
