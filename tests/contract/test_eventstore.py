"""The event-store contract: one suite, run against every adapter (in-memory, SQLite on a real file, KurrentDB).

KurrentDB runs when EVENTSTORE_URI names a server or Docker is usable (testcontainers); otherwise it is skipped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from payments_shared.eventstore.factory import adapter_for, open_event_store
from payments_shared.eventstore.memory import InMemoryEventStore
from payments_shared.eventstore.port import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    EventStore,
    EventStoreError,
    EventStoreUnavailable,
    NewEvent,
    WrongExpectedVersion,
)
from payments_shared.eventstore.sqlite import SqliteEventStore
from payments_shared.eventstore.sqlite_batch import BatchWriter

from tests.contract.eventstore_support import (
    NO_SERVER,
    WAIT_S,
    collect_until,
    configured_kurrent_uri,
    docker_usable,
    events,
    kurrentdb_container,
    new_stream,
    read_only,
)
from tests.support.loop_ticks import counting_ticks


@pytest.fixture(scope="session")
def kurrent_uri() -> Iterator[str]:
    configured = configured_kurrent_uri()
    if configured is not None:
        yield configured
    elif docker_usable():
        with kurrentdb_container() as uri:
            yield uri
    else:
        pytest.skip(NO_SERVER)


@pytest.fixture(params=["memory", "sqlite", "kurrent"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    # The adapters themselves: open_event_store's tracing wrapper stamps a traceparent into new events' metadata
    # once a test has installed an SDK tracer provider (for the rest of the session).
    if request.param == "memory":
        opened = adapter_for("memory://")
    elif request.param == "sqlite":
        opened = adapter_for(f"sqlite:///{tmp_path / 'events.db'}")
    else:
        opened = adapter_for(request.getfixturevalue("kurrent_uri"))
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = SqliteEventStore(tmp_path / "events.db", busy_timeout_ms=100)
    yield opened
    await opened.close()


# ---- round trip -----------------------------------------------------------------------------------------------


async def test_round_trip_keeps_ids_types_data_and_metadata(store: EventStore) -> None:
    stream = new_stream()
    correlation, causation = str(uuid.uuid4()), str(uuid.uuid4())
    metadata = {"$correlationId": correlation, "$causationId": causation, "actor": "user_1", "workspace": "ws_1"}
    sent = [
        NewEvent("ChargeRequested", {"amount": 1250, "currency": "usd", "nested": {"a": [1, 2]}}, metadata),
        NewEvent("ChargeApproved", {"provider_id": "pi_1", "note": "é ☃"}, metadata),
    ]

    position = await store.append(stream, sent, NO_STREAM)
    recorded = await store.read(stream)

    assert [(e.id, e.type, dict(e.data), dict(e.metadata)) for e in recorded] == [
        (e.id, e.type, dict(e.data), dict(e.metadata)) for e in sent
    ]
    assert [e.version for e in recorded] == [0, 1]
    assert all(e.stream == stream and isinstance(e.recorded_at, datetime) for e in recorded)
    assert recorded[0].position < recorded[1].position == position
    assert recorded[1].metadata["$correlationId"] == correlation
    assert recorded[1].metadata["$causationId"] == causation


async def test_ping_answers_on_a_working_store(store: EventStore) -> None:
    await store.ping()


async def test_read_of_a_missing_stream_is_empty_and_from_version_skips(store: EventStore) -> None:
    stream = new_stream()
    assert await store.read(stream) == []
    sent = events(3)
    await store.append(stream, sent, NO_STREAM)
    assert [e.id for e in await store.read(stream, from_version=1)] == [e.id for e in sent[1:]]


# ---- expected versions --------------------------------------------------------------------------------------


async def test_no_stream_accepts_a_new_stream_and_rejects_an_existing_one(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, events(2), NO_STREAM)
    with pytest.raises(WrongExpectedVersion) as raised:
        await store.append(stream, events(1), NO_STREAM)
    assert (raised.value.stream, raised.value.expected, raised.value.actual) == (stream, NO_STREAM, 1)


async def test_exact_version_accepts_the_current_one_only(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, events(1), NO_STREAM)
    await store.append(stream, events(1), 0)
    with pytest.raises(WrongExpectedVersion) as stale:
        await store.append(stream, events(1), 0)
    assert (stale.value.expected, stale.value.actual) == (0, 1)
    with pytest.raises(WrongExpectedVersion) as missing:
        await store.append(new_stream(), events(1), 0)
    assert missing.value.actual is None
    assert [e.version for e in await store.read(stream)] == [0, 1]


async def test_any_appends_whatever_the_stream_holds(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, events(1), ANY)
    await store.append(stream, events(2), ANY)
    assert [e.version for e in await store.read(stream)] == [0, 1, 2]


async def test_stream_exists_rejects_a_missing_stream(store: EventStore) -> None:
    stream = new_stream()
    with pytest.raises(WrongExpectedVersion) as raised:
        await store.append(stream, events(1), STREAM_EXISTS)
    assert raised.value.actual is None
    await store.append(stream, events(1), NO_STREAM)
    await store.append(stream, events(1), STREAM_EXISTS)
    assert len(await store.read(stream)) == 2


@pytest.mark.parametrize("expected", [NO_STREAM, 0])
async def test_concurrent_appends_at_one_expected_version_have_exactly_one_winner(
    store: EventStore, expected: int
) -> None:
    stream = new_stream()
    if expected == 0:
        await store.append(stream, events(1), NO_STREAM)
    attempts = [events(2) for _ in range(20)]

    results = await asyncio.gather(*(store.append(stream, sent, expected) for sent in attempts), return_exceptions=True)

    winners = [attempt for attempt, result in zip(attempts, results, strict=True) if isinstance(result, int)]
    assert len(winners) == 1
    assert all(isinstance(result, WrongExpectedVersion) for result in results if not isinstance(result, int))
    recorded = await store.read(stream)
    assert [e.id for e in recorded[expected + 1 :]] == [e.id for e in winners[0]]


@pytest.mark.parametrize("rows", [1, 3])
async def test_sqlite_a_failing_append_in_a_batch_undoes_only_its_own_rows(
    sqlite_store: SqliteEventStore, rows: int
) -> None:
    """Appends made in one loop turn share a transaction: one whose last row breaks a constraint (an event id
    already stored, in another stream) fails alone, with none of its rows kept, and the others land."""
    taken = events(1)
    await sqlite_store.append(new_stream(), taken, NO_STREAM)
    failing = [*events(rows - 1), taken[0]]
    failing_stream, before, after = new_stream(), new_stream(), new_stream()

    results = await asyncio.gather(
        sqlite_store.append(before, events(2), NO_STREAM),
        sqlite_store.append(failing_stream, failing, NO_STREAM),
        sqlite_store.append(after, events(1), NO_STREAM),
        return_exceptions=True,
    )

    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert isinstance(results[1], EventStoreError)
    assert await sqlite_store.read(failing_stream) == []
    assert [len(await sqlite_store.read(stream)) for stream in (before, after)] == [2, 1]
    assert [e.version for e in await sqlite_store.read(after)] == [0]


# ---- idempotent re-append -----------------------------------------------------------------------------------


async def test_re_appending_the_same_event_ids_does_not_duplicate(store: EventStore) -> None:
    stream = new_stream()
    first = events(2)
    position = await store.append(stream, first, NO_STREAM)
    assert await store.append(stream, first, NO_STREAM) == position
    assert await store.append(stream, first, ANY) == position

    later = events(1)
    later_position = await store.append(stream, later, 1)
    assert await store.append(stream, later, 1) == later_position
    assert await store.append(stream, later, STREAM_EXISTS) == later_position

    assert [e.id for e in await store.read(stream)] == [e.id for e in first + later]
    everything = [e.id async for e in store.read_all(0) if e.stream == stream]
    assert everything == [e.id for e in first + later]


async def test_same_ids_at_another_version_are_still_a_conflict(store: EventStore) -> None:
    stream = new_stream()
    first = events(1)
    await store.append(stream, first, NO_STREAM)
    await store.append(stream, events(1), 0)
    with pytest.raises(WrongExpectedVersion):
        await store.append(stream, first, 0)  # version 1 holds another event


# ---- global order -------------------------------------------------------------------------------------------


async def test_read_all_is_in_append_order_and_starts_at_from_position(store: EventStore) -> None:
    streams = [new_stream("a"), new_stream("b"), new_stream("c")]
    sent: list[NewEvent] = []
    for round_ in range(3):
        for stream in streams:
            batch = events(2, f"Round{round_}")
            await store.append(stream, batch, ANY)
            sent.extend(batch)

    mine = [e async for e in store.read_all(0) if e.stream in streams]

    assert [e.id for e in mine] == [e.id for e in sent]
    positions = [e.position for e in mine]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    from_fifth = [e.id async for e in store.read_all(mine[4].position) if e.stream in streams]
    assert from_fifth == [e.id for e in sent[4:]]
    after_fifth = [e.id async for e in store.read_all(mine[4].position + 1) if e.stream in streams]
    assert after_fifth == [e.id for e in sent[5:]]


async def test_read_all_pages_through_many_events(store: EventStore) -> None:
    stream = new_stream()
    sent: list[NewEvent] = []
    for _ in range(12):
        batch = events(100)
        await store.append(stream, batch, ANY)
        sent.extend(batch)
    assert [e.id async for e in store.read_all(0) if e.stream == stream] == [e.id for e in sent]


# ---- subscriptions ------------------------------------------------------------------------------------------


async def test_subscription_from_zero_sees_every_event_once_then_live_ones(store: EventStore) -> None:
    stream, other = new_stream(), new_stream()
    before = events(3)
    await store.append(stream, before[:2], NO_STREAM)
    await store.append(other, before[2:], NO_STREAM)
    subscription = store.subscribe(0)
    try:
        caught_up = await collect_until(subscription, {stream, other}, before[-1].id)
        assert [e.id for e in caught_up] == [e.id for e in before]

        live = events(4)
        await store.append(stream, live[:2], 1)
        await store.append(other, live[2:3], 0)
        await store.append(stream, live[3:], 3)
        later = await collect_until(subscription, {stream, other}, live[-1].id)
        assert [e.id for e in later] == [e.id for e in live]
    finally:
        await subscription.aclose()  # type: ignore[attr-defined]


async def test_subscription_from_a_position_starts_there(store: EventStore) -> None:
    stream = new_stream()
    sent = events(4)
    await store.append(stream, sent, NO_STREAM)
    third = (await store.read(stream))[2]
    subscription = store.subscribe(third.position)
    try:
        seen = await collect_until(subscription, {stream}, sent[-1].id)
    finally:
        await subscription.aclose()  # type: ignore[attr-defined]
    assert [e.id for e in seen] == [e.id for e in sent[2:]]


async def test_concurrent_appenders_are_all_seen_by_a_subscription(store: EventStore) -> None:
    streams = [new_stream() for _ in range(8)]
    subscription = store.subscribe(0)
    batches = [events(2) for _ in streams]
    try:
        await asyncio.gather(*(store.append(s, b, NO_STREAM) for s, b in zip(streams, batches, strict=True)))
        marker = events(1)
        await store.append(streams[0], marker, 1)
        seen = await collect_until(subscription, set(streams), marker[0].id)
    finally:
        await subscription.aclose()  # type: ignore[attr-defined]
    assert sorted(e.id for e in seen) == sorted([e.id for b in batches for e in b] + [marker[0].id])
    assert [e.position for e in seen] == sorted(e.position for e in seen)


async def test_several_subscriptions_each_see_every_event_once_in_order_while_appends_go_on(store: EventStore) -> None:
    streams = [new_stream() for _ in range(4)]
    subscriptions = [store.subscribe(0) for _ in range(3)]
    batches = [events(1) for _ in range(24)]
    marker = events(1)

    async def append_all() -> None:
        for number, batch in enumerate(batches):
            await store.append(streams[number % 4], batch, ANY)
            if number % 5 == 0:
                await asyncio.sleep(0.03)  # some appends land while the subscribers linger or read
        await store.append(streams[0], marker, ANY)

    try:
        appending = asyncio.create_task(append_all())
        seen = await asyncio.gather(*(collect_until(s, set(streams), marker[0].id) for s in subscriptions))
        await appending
    finally:
        for subscription in subscriptions:
            await subscription.aclose()  # type: ignore[attr-defined]
    expected = [e.id for b in batches for e in b] + [marker[0].id]
    for each in seen:
        assert [e.id for e in each] == expected


async def test_sqlite_subscriptions_of_one_loop_woken_by_one_append_share_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("payments_shared.eventstore.sqlite.POLL_INTERVAL_S", 60.0)  # only appends wake them
    store = SqliteEventStore(tmp_path / "events.db")
    stream = new_stream()
    await store.append(stream, events(1), NO_STREAM)
    subscriptions = [store.subscribe(0) for _ in range(4)]
    try:
        first = events(1)
        await store.append(stream, first, 0)
        await asyncio.gather(*(collect_until(s, {stream}, first[0].id) for s in subscriptions))  # all caught up
        reads: list[int] = []
        read = store._read

        async def counted_read(query: Callable[[sqlite3.Connection], object]) -> object:
            reads.append(1)
            return await read(query)

        monkeypatch.setattr(store, "_read", counted_read)
        woken = events(1)
        await store.append(stream, woken, 1)
        await asyncio.gather(*(collect_until(s, {stream}, woken[0].id) for s in subscriptions))
    finally:
        for subscription in subscriptions:
            await subscription.aclose()  # type: ignore[attr-defined]
        await store.close()
    assert len(reads) == 1  # one page read for the four subscribers (each read it for itself before)


async def test_a_live_subscription_ends_when_the_store_closes(store: EventStore) -> None:
    stream = new_stream()
    sent = events(1)
    await store.append(stream, sent, NO_STREAM)
    subscription = store.subscribe(0)
    await collect_until(subscription, {stream}, sent[0].id)
    waiting = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0)  # let it wait for live events
    await store.close()
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(StopAsyncIteration):
            await waiting


# ---- SQLite: several processes on one file, failures -----------------------------------------------------------


async def test_sqlite_file_is_wal_and_the_schema_itself_guards_versions_and_ids(
    sqlite_store: SqliteEventStore, tmp_path: Path
) -> None:
    stream = new_stream()
    sent = events(1)
    await sqlite_store.append(stream, sent, NO_STREAM)
    outsider = sqlite3.connect(tmp_path / "events.db")  # as another process writing around the adapter
    try:
        assert outsider.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        insert = "INSERT INTO events (id, stream, version, type, data, metadata, recorded_at) VALUES (?,?,?,?,?,?,?)"
        with pytest.raises(sqlite3.IntegrityError):
            outsider.execute(insert, (str(uuid.uuid4()), stream, 0, "Dup", "{}", "{}", ""))
        with pytest.raises(sqlite3.IntegrityError):
            outsider.execute(insert, (str(sent[0].id), new_stream(), 0, "Dup", "{}", "{}", ""))
    finally:
        outsider.close()


async def test_sqlite_second_instance_on_the_same_file_shares_versions_and_wakes_subscribers(
    sqlite_store: SqliteEventStore, tmp_path: Path
) -> None:
    other = SqliteEventStore(tmp_path / "events.db")
    stream = new_stream()
    try:
        subscription = sqlite_store.subscribe(0)
        attempts = [events(1) for _ in range(20)]
        results = await asyncio.gather(
            *((sqlite_store if n % 2 else other).append(stream, sent, NO_STREAM) for n, sent in enumerate(attempts)),
            return_exceptions=True,
        )
        assert sum(isinstance(result, int) for result in results) == 1
        from_other = events(2)
        await other.append(stream, from_other, 0)
        seen = await collect_until(subscription, {stream}, from_other[-1].id)
        await subscription.aclose()  # type: ignore[attr-defined]
        assert [e.version for e in seen] == [0, 1, 2]
    finally:
        await other.close()


async def test_sqlite_subscription_sees_appends_from_another_process(
    sqlite_store: SqliteEventStore, tmp_path: Path
) -> None:
    stream = new_stream()
    await sqlite_store.append(stream, events(1), NO_STREAM)
    subscription = sqlite_store.subscribe(0)
    first = await anext(subscription)
    script = textwrap.dedent(
        f"""
        import asyncio
        from payments_shared.eventstore.port import NewEvent
        from payments_shared.eventstore.sqlite import SqliteEventStore

        async def main():
            store = SqliteEventStore({str(tmp_path / "events.db")!r})
            await store.append({stream!r}, [NewEvent("FromChild", {{"n": n}}) for n in range(3)], 0)
            await store.close()

        asyncio.run(main())
        """
    )
    try:
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stderr=subprocess.PIPE)
        _, stderr = await asyncio.wait_for(child.communicate(), WAIT_S)
        assert child.returncode == 0, stderr.decode()
        async with asyncio.timeout(WAIT_S):
            rest = [await anext(subscription) for _ in range(3)]
    finally:
        await subscription.aclose()  # type: ignore[attr-defined]
    assert first.version == 0
    assert [(e.type, e.version) for e in rest] == [("FromChild", 1), ("FromChild", 2), ("FromChild", 3)]


async def test_sqlite_locked_file_fails_appends_visibly_and_recovers(
    sqlite_store: SqliteEventStore, tmp_path: Path
) -> None:
    stream = new_stream()
    attempts = [events(2) for _ in range(5)]
    locker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        results = await asyncio.gather(
            *(sqlite_store.append(f"{stream}-{n}", sent, NO_STREAM) for n, sent in enumerate(attempts)),
            return_exceptions=True,
        )
        assert all(isinstance(result, EventStoreUnavailable) for result in results)
        with pytest.raises(EventStoreUnavailable):
            await sqlite_store.ping()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert [await sqlite_store.read(f"{stream}-{n}") for n in range(5)] == [[]] * 5  # nothing half-applied
    for n, sent in enumerate(attempts):
        await sqlite_store.append(f"{stream}-{n}", sent, NO_STREAM)
    await sqlite_store.ping()
    assert len(await sqlite_store.read(f"{stream}-4")) == 2


async def test_sqlite_read_only_file_fails_appends_and_recovers_once_writable(
    sqlite_store: SqliteEventStore, tmp_path: Path
) -> None:
    path = tmp_path / "events.db"
    stream = new_stream()
    await sqlite_store.append(stream, events(1), NO_STREAM)
    pending = events(1)
    fresh: SqliteEventStore | None = None
    try:
        with read_only(path):
            fresh = SqliteEventStore(path, busy_timeout_ms=100)  # opened while read-only, as a restarted process
            for store in (sqlite_store, fresh):
                with pytest.raises(EventStoreUnavailable):
                    await store.append(stream, pending, 0)
                with pytest.raises(EventStoreUnavailable):
                    await store.ping()
                assert len(await store.read(stream)) == 1  # nothing half-applied; reads still work
        await fresh.ping()
        await fresh.append(stream, pending, 0)
        await sqlite_store.append(stream, events(1), 1)
        await sqlite_store.ping()
        assert [e.version for e in await sqlite_store.read(stream)] == [0, 1, 2]
    finally:
        if fresh is not None:
            await fresh.close()


# ---- the factory --------------------------------------------------------------------------------------------


async def test_factory_opens_each_scheme(tmp_path: Path) -> None:
    memory = open_event_store("memory://")
    assert isinstance(memory, InMemoryEventStore)
    nested = tmp_path / "not" / "yet" / "events.db"
    sqlite = open_event_store(f"sqlite:///{nested}")
    try:
        assert isinstance(sqlite, SqliteEventStore)
        assert nested.exists()
        await sqlite.ping()
    finally:
        await sqlite.close()
    with pytest.raises(ValueError, match="EVENTSTORE_URI"):
        open_event_store("redis://localhost")


async def test_sqlite_lock_held_elsewhere_never_stalls_the_loop_and_appends_land_once_released(
    tmp_path: Path,
) -> None:
    """Appends commit on the loop's thread, but never wait there for a lock: while another process holds the
    write lock they wait on the writer thread (busy timeout), and the loop keeps running meanwhile."""
    store = SqliteEventStore(tmp_path / "events.db", busy_timeout_ms=5000)
    stream = new_stream()
    locker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        appends = [asyncio.create_task(store.append(f"{stream}-{n}", events(2), NO_STREAM)) for n in range(5)]
        async with counting_ticks() as ticks:
            await asyncio.sleep(0.3)
        assert not any(append.done() for append in appends)  # waiting for the lock…
        assert ticks.count >= 10  # …but not on the loop
        locker.execute("ROLLBACK")
        positions = await asyncio.wait_for(asyncio.gather(*appends), 5)
        assert len(set(positions)) == 5
        assert [len(await store.read(f"{stream}-{n}")) for n in range(5)] == [2] * 5
        await store.append(f"{stream}-0", events(1), 1)  # and the loop's own writer commits again
        assert len(await store.read(f"{stream}-0")) == 3
    finally:
        locker.close()
        await store.close()


async def test_sqlite_a_commit_waiting_for_the_disk_never_stalls_the_loop_and_later_appends_follow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the COMMIT (its fsync) runs off the loop: while it waits for the disk the loop goes on, nothing is
    acknowledged or visible before it is durable, and the appends made meanwhile follow in one transaction."""
    disk, waiting, finishes = threading.Event(), threading.Event(), []
    finish = BatchWriter.finish

    def slow_disk(writer: BatchWriter, commit: bool) -> None:
        finishes.append(commit)
        if len(finishes) == 1:
            waiting.set()
            disk.wait(WAIT_S)
        finish(writer, commit)

    monkeypatch.setattr(BatchWriter, "finish", slow_disk)
    store = SqliteEventStore(tmp_path / "events.db")
    first_stream, later_stream = new_stream(), new_stream()
    try:
        first = asyncio.create_task(store.append(first_stream, events(1), NO_STREAM))
        assert await asyncio.to_thread(waiting.wait, WAIT_S)
        later = [asyncio.create_task(store.append(f"{later_stream}-{n}", events(1), NO_STREAM)) for n in range(3)]
        async with counting_ticks() as ticks:
            await asyncio.sleep(0.2)
        assert ticks.count >= 10  # the loop ran while the commit waited
        assert not first.done() and not any(append.done() for append in later)
        assert await store.read(first_stream) == []  # not committed yet: not visible
        disk.set()
        first_position = await first
        later_positions = await asyncio.gather(*later)
        assert first_position < min(later_positions)
        assert finishes == [True, True]  # the three appends made meanwhile: one transaction
        assert len(await store.read(first_stream)) == 1
    finally:
        disk.set()
        await store.close()


async def test_sqlite_a_failed_commit_is_written_again_by_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COMMIT that fails keeps nothing; the batch is not lost: the writer thread writes it, once."""
    failed: list[bool] = []
    finish = BatchWriter.finish

    def failing_once(writer: BatchWriter, commit: bool) -> None:
        if commit and not failed:
            failed.append(True)
            writer.close()  # what a failed COMMIT leaves: nothing written, the connection reset
            raise sqlite3.OperationalError("disk I/O error")
        finish(writer, commit)

    monkeypatch.setattr(BatchWriter, "finish", failing_once)
    store = SqliteEventStore(tmp_path / "events.db")
    stream = new_stream()
    try:
        position = await asyncio.wait_for(store.append(stream, events(2), NO_STREAM), WAIT_S)
        assert failed == [True]
        assert [event.version for event in await store.read(stream)] == [0, 1]
        assert position == (await store.read(stream))[-1].position
    finally:
        await store.close()
