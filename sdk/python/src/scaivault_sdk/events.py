"""``client.events``: what happened to secrets and policies (docs/api.md, "Events").

Events come from the change feed, oldest first, by position: ``after`` is the ``seq`` to
continue after (``EventPage.last_seq`` of the previous page). An event names its object
and who acted, never a value; only events on paths the caller may list are shown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

from ._transport import AsyncTransport, Call, SyncTransport, query
from ._wire import model
from .models import Event, EventPage

Types = Iterable[str] | str | None


def _types(types: Types) -> str | None:
    """``["rotation.due", "secret.updated"]`` (or the comma-separated string) as the wire's list."""
    if types is None:
        return None
    if isinstance(types, str):
        return types
    return ",".join(types) or None


def _list(types: Types, path_prefix: str | None, after: int | None, limit: int | None) -> Call[EventPage]:
    params = query(types=_types(types), path_prefix=path_prefix, after=after, limit=limit)
    return Call("GET", "/v1/events", model(EventPage), params=params)


def _moved_on(page: EventPage, after: int | None) -> bool:
    """Whether the page reached a later position: at the feed's end it does not."""
    return page.last_seq > (after or 0)


class EventsAPI:
    """Events API of the sync client."""

    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def list(
        self,
        types: Types = None,
        path_prefix: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> EventPage:
        """One page of events after ``after`` (default: the oldest kept), oldest first.

        ``types``: names like ``rotation.due`` (``EVENT_TYPES``), every type when ``None``;
        ``limit`` 1..1000 (default 100). Pass ``page.last_seq`` as ``after`` for the next
        page; ``iter_events`` does that up to the newest event.
        """
        return self._run(_list(types, path_prefix, after, limit))

    def iter_events(
        self,
        types: Types = None,
        path_prefix: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Iterator[Event]:
        """Every event after ``after`` up to the newest one, a page at a time."""
        while True:
            page = self.list(types, path_prefix, after, limit)
            yield from page.events
            if not _moved_on(page, after):
                return
            after = page.last_seq


class AsyncEventsAPI:
    """Events API of the async client; same methods as ``EventsAPI``, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def list(
        self,
        types: Types = None,
        path_prefix: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> EventPage:
        return await self._run(_list(types, path_prefix, after, limit))

    async def iter_events(
        self,
        types: Types = None,
        path_prefix: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Event]:
        while True:
            page = await self.list(types, path_prefix, after, limit)
            for event in page.events:
                yield event
            if not _moved_on(page, after):
                return
            after = page.last_seq
