"""Hosting list read models in a worker: their projections run in the worker's process, and the worker's queue
answers their list queries (`list_*` commands), so the gateway stays stateless and asks the owner, as for any
other query. The read model lives under the worker's DATA_DIR; each replica keeps its own complete copy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from payments_shared.broker.port import Handler, Message
from payments_shared.errors import invalid
from payments_shared.eventstore.port import EventStore
from payments_shared.messages import Command, Reply
from payments_shared.projections.listing import ListHandler, ListSpec
from payments_shared.projections.model import ListEntry, Projection
from payments_shared.projections.readmodel import ReadModel, read_model_path
from payments_shared.projections.runner import ProjectionRunner


class ListHost:
    def __init__(
        self,
        store: EventStore,
        data_dir: Path,
        projections: Sequence[Projection],
        lists: Mapping[str, ListSpec],
    ) -> None:
        self.read_model = ReadModel(read_model_path(data_dir))
        self.runners = [ProjectionRunner(store, self.read_model, projection) for projection in projections]
        self._store = store
        self._projections = {projection.name: projection for projection in projections}
        self._lists = lists
        self._handler = ListHandler(self.read_model, lists, self.entry)

    async def start(self) -> None:
        for runner in self.runners:
            await runner.start()

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.stop()
        await self.read_model.close()

    async def entry(self, projection_name: str, object_id: str) -> ListEntry | None:
        """The object as the projection would list it, folded from its own stream (None for no such object)."""
        projection = self._projections.get(projection_name)
        stream = projection.stream_of(object_id) if projection is not None else None
        if projection is None or stream is None:
            return None
        events = await self._store.read(stream)
        if not events:
            return None
        try:
            return projection.entry_of(events)
        except Exception:  # a stream its fold refuses names no object of the list (the runner skips it too)
            return None

    def serving(self, handler: Handler) -> Handler:
        """`handler` with this host's list queries answered first."""

        async def handle(message: Message) -> Mapping[str, Any] | None:
            if message.body.get("type") not in self._lists:
                return await handler(message)
            try:
                command = Command.model_validate(message.body)
            except ValidationError:
                error = invalid("Malformed command.")
                return Reply(status=error.status, body=error.body()).to_body()
            return await self._handler.handle_command(command)

        return handle


async def host_lists(
    store: EventStore, data_dir: Path, projections: Sequence[Projection], lists: Mapping[str, ListSpec]
) -> ListHost:
    host = ListHost(store, data_dir, projections, lists)
    await host.start()
    return host
