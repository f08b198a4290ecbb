"""Answering a list query from a read model: parameters checked, one page, Stripe's list shape.

Workers register `ListHandler.handle` for their `list_*` query types; the gateway forwards the query string
untouched (`payload["params"]`), so the rules for the parameters live here, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from payments_shared.errors import ApiError, echoed, invalid
from payments_shared.messages import Command, Reply
from payments_shared.projections.created import PARAMETERS as CREATED_PARAMETERS
from payments_shared.projections.created import created_range
from payments_shared.projections.model import ListEntry
from payments_shared.projections.readmodel import ListPage, ListQuery, ReadModel, UnknownCursor, epoch_us

DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 100
CURSORS: Final = ("starting_after", "ending_before")
PAGING: Final = ("limit", *CURSORS)

# (projection, object id) → the object as its list shows it, folded from its own stream; None if there is none.
EntryLookup = Callable[[str, str], Awaitable[ListEntry | None]]


@dataclass(frozen=True)
class ListSpec:
    """One list route: its read model, its URL, and which filters it takes. `status` takes one of `statuses`, or
    a name of `status_groups` (several statuses; None for every one); without it the list shows `unfiltered`
    (None: every status). Stripe's subscription list, say, leaves canceled ones out unless `status` asks."""

    projection: str
    url: str
    filters: Sequence[str]  # of "status", "customer_id", "email", "created"
    statuses: Sequence[str] = ()
    status_groups: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)
    unfiltered: tuple[str, ...] | None = None


def parse_query(spec: ListSpec, workspace: str, params: Mapping[str, str]) -> ListQuery:
    allowed = set(PAGING) | {f for f in spec.filters if f != "created"}
    if "created" in spec.filters:
        allowed |= set(CREATED_PARAMETERS)
    for name in params:
        if name not in allowed:
            raise invalid(f"Unknown parameter {echoed(name)!r}.", param=echoed(name))
    if all(name in params for name in CURSORS):
        raise invalid("Received both starting_after and ending_before: pass only one.", param="ending_before")
    created = created_range(params)
    return ListQuery(
        workspace=workspace,
        limit=_limit(params.get("limit")),
        starting_after=_non_empty(params, "starting_after"),
        ending_before=_non_empty(params, "ending_before"),
        statuses=_statuses(spec, params.get("status")),
        customer_id=_non_empty(params, "customer_id"),
        email=_non_empty(params, "email"),
        created_gte_us=created.gte_us,
        created_lt_us=created.lt_us,
    )


def _statuses(spec: ListSpec, raw: str | None) -> tuple[str, ...] | None:
    """The statuses the list shows (None: every one)."""
    if raw is None:
        return spec.unfiltered
    if raw in spec.statuses:
        return (raw,)
    if raw in spec.status_groups:
        return spec.status_groups[raw]
    raise invalid(f"status must be one of {', '.join([*spec.statuses, *spec.status_groups])}.", param="status")


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid(f"limit must be an integer from 1 to {MAX_LIMIT}.", param="limit")
    return int(raw)


def _non_empty(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is not None and not value.strip():
        raise invalid(f"{name} must not be empty.", param=name)
    return value


def list_body(spec: ListSpec, data: list[dict[str, Any]], has_more: bool, position: int) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": spec.url, "projection_position": position}


class ListHandler:
    def __init__(self, read_model: ReadModel, specs: Mapping[str, ListSpec], lookup: EntryLookup | None = None) -> None:
        self._read_model = read_model
        self._specs = specs  # by command type, e.g. "list_transactions"
        self._lookup = lookup

    async def handle_command(self, command: Command) -> dict[str, Any]:
        """The reply body for a `list_*` command (API.md's error shape on a bad parameter)."""
        spec = self._specs[command.type]
        params = {str(k): str(v) for k, v in dict(command.payload.get("params") or {}).items()}
        try:
            query = parse_query(spec, command.workspace, params)
            page = await self._page(spec.projection, query)
        except UnknownCursor as unknown:
            return _error(invalid(f"{unknown.param} names no object of this list.", param=unknown.param))
        except ApiError as error:
            return _error(error)
        return Reply(status=200, body=list_body(spec, page.data, page.has_more, page.position)).to_body()

    async def _page(self, projection: str, query: ListQuery) -> ListPage:
        """A cursor the read model does not hold yet (lists lag their writes) is looked up in its own stream."""
        try:
            return await self._read_model.page(projection, query)
        except UnknownCursor:
            if self._lookup is None or query.cursor is None:
                raise
            entry = await self._lookup(projection, query.cursor)
            if entry is None or entry.workspace != query.workspace:
                raise
            at = (epoch_us(entry.created_at), entry.id)
            return await self._read_model.page(projection, replace(query, cursor_at=at))


def _error(error: ApiError) -> dict[str, Any]:
    return Reply(status=error.status, body=error.body(), headers=error.headers()).to_body()
