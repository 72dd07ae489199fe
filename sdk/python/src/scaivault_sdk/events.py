"""``client.events``: what happened to secrets and policies (docs/api.md, "Events").

Events come from the change feed, oldest first, by position: ``after`` is the ``seq`` to
continue after (``EventPage.last_seq`` of the previous page). An event names its object
and who acted, never a value; only events on paths the caller may list are shown.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

from ._transport import AsyncTransport, Call, SyncTransport, query
from ._wire import model
from .models import EVENT_TYPES, Event, EventPage

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


STREAM_PATH = "/v1/events/stream"
_decode_event = model(Event)


@dataclass
class _Sse:
    """Turns the lines of a Server-Sent Events answer into (event, id, data) blocks."""

    kind: str | None = None
    id: str | None = None
    data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> tuple[str, int | None, str] | None:
        if line == "":
            block = (self.kind, self.id, "\n".join(self.data))
            self.kind, self.id, self.data = None, None, []
            if block[0] is None:
                return None  # a comment block: the heartbeat
            position = int(block[1]) if block[1] and block[1].isdigit() else None
            return block[0], position, block[2]
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.kind = value
        elif name == "id":
            self.id = value
        elif name == "data":
            self.data.append(value)
        return None


def _stream_params(types: Types, path_prefix: str | None) -> dict[str, str]:
    return query(types=_types(types), path_prefix=path_prefix)


def _resume_headers(after: int | None) -> dict[str, str]:
    return {"Last-Event-ID": str(after)} if after is not None else {}


def _step(block: tuple[str, int | None, str], after: int | None) -> tuple[Event | None, int | None, bool]:
    """What one message means: the event to yield (if any), the position to resume from,
    and whether to reconnect (``lagged``, ``unavailable``). The stream's first message,
    ``position``, says where it starts; types this SDK does not know yet are passed over."""
    kind, position, data = block
    if kind in ("lagged", "unavailable"):
        return None, position if position is not None else after, True
    if kind == "position":
        return None, position if position is not None else after, False
    if kind not in EVENT_TYPES:
        return None, after, False
    event = _decode_event(json.loads(data))
    return event, event.seq, False


class EventsAPI:
    """Events API of the sync client."""

    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run
        self._lines = transport.stream_lines

    def stream(self, types: Types = None, path_prefix: str | None = None, after: int | None = None) -> Iterator[Event]:
        """Events as they happen (Server-Sent Events), each once and in order, forever.

        From ``after`` (what came since is replayed first) or, by default, from now on. When
        the server drops the stream (a subscriber too far behind, storage briefly away) it
        reconnects from the position reached; a lost connection raises ``TransportError``:
        call again with ``after=`` the last event's ``seq``. Nothing is sent until the first
        ``next()``.
        """
        params = _stream_params(types, path_prefix)
        while True:
            sse = _Sse()
            lines = self._lines(STREAM_PATH, params, _resume_headers(after))
            try:
                for line in lines:
                    block = sse.feed(line)
                    if block is None:
                        continue
                    event, after, reconnect = _step(block, after)
                    if reconnect:
                        break
                    if event is not None:
                        yield event
            finally:
                lines.close()

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
        self._lines = transport.stream_lines

    async def stream(
        self, types: Types = None, path_prefix: str | None = None, after: int | None = None
    ) -> AsyncIterator[Event]:
        """Events as they happen; see ``EventsAPI.stream``."""
        params = _stream_params(types, path_prefix)
        while True:
            sse = _Sse()
            lines = self._lines(STREAM_PATH, params, _resume_headers(after))
            try:
                async for line in lines:
                    block = sse.feed(line)
                    if block is None:
                        continue
                    event, after, reconnect = _step(block, after)
                    if reconnect:
                        break
                    if event is not None:
                        yield event
            finally:
                await lines.aclose()

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
