"""Walking the paged lists: every list endpoint answers at most ``limit`` items and an
opaque ``next_cursor`` (sealed by the server to the caller and the query, valid for an
hour). The ``list()`` methods follow it to the end; ``list_page()`` returns one page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

#: The largest page the server serves (``MAX_LIST_LIMIT``); the walkers use it.
MAX_PAGE = 1000

class _Page(Protocol):
    @property
    def next_cursor(self) -> str | None: ...


P = TypeVar("P", bound=_Page)


def _advance(page: _Page, cursor: str | None) -> str | None:
    nxt = page.next_cursor
    if nxt is not None and nxt == cursor:
        # A server handing back the same cursor would make us loop forever.
        raise RuntimeError("the server returned the same cursor twice")
    return nxt


def walk(fetch: Callable[[str | None], P], items: Callable[[P], list[Any]]) -> list[Any]:
    out: list[Any] = []
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        out.extend(items(page))
        cursor = _advance(page, cursor)
        if cursor is None:
            return out


async def walk_async(
    fetch: Callable[[str | None], Awaitable[P]], items: Callable[[P], list[Any]]
) -> list[Any]:
    out: list[Any] = []
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        out.extend(items(page))
        cursor = _advance(page, cursor)
        if cursor is None:
            return out
