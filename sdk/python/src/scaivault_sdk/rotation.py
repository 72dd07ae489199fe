"""``client.rotation``: the secrets due for rotation (docs/rotation.md).

A secret gets a schedule with ``secrets.write(..., metadata={"rotation": {...}})`` or
``secrets.update_metadata(path, rotation=...)``; ``secrets.rotate(path, reason=...)``
rotates it now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from ._transport import AsyncTransport, Call, SyncTransport, query
from ._wire import model
from .models import DuePage, DueSecret


def _due(
    within_hours: int | None,
    include_overdue: bool,
    prefix: str | None,
    limit: int | None,
    cursor: str | None,
) -> Call[DuePage]:
    params = query(
        within_hours=within_hours,
        include_overdue=include_overdue or None,
        prefix=prefix,
        limit=limit,
        cursor=cursor,
    )
    return Call("GET", "/v1/rotation/due", model(DuePage), params=params)


class RotationAPI:
    """Rotation API of the sync client. Lists only paths the caller may list."""

    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def due(
        self,
        within_hours: int | None = None,
        include_overdue: bool = False,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DuePage:
        """One page of the secrets whose next rotation falls within ``within_hours`` from now
        (server default 168, a week), in path order.

        Secrets past their rotation and its grace (``is_overdue``) are left out unless
        ``include_overdue``. ``limit`` 1..1000 (default 100); see ``iter_due`` for every page.
        """
        return self._run(_due(within_hours, include_overdue, prefix, limit, cursor))

    def iter_pages(
        self,
        within_hours: int | None = None,
        include_overdue: bool = False,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> Iterator[DuePage]:
        cursor: str | None = None
        while True:
            page = self.due(within_hours, include_overdue, prefix, limit, cursor)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def iter_due(
        self,
        within_hours: int | None = None,
        include_overdue: bool = False,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> Iterator[DueSecret]:
        """Every secret due, fetching pages of ``limit`` as the loop goes."""
        for page in self.iter_pages(within_hours, include_overdue, prefix, limit):
            yield from page.secrets


class AsyncRotationAPI:
    """Rotation API of the async client; same methods as ``RotationAPI``, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def due(
        self,
        within_hours: int | None = None,
        include_overdue: bool = False,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DuePage:
        return await self._run(_due(within_hours, include_overdue, prefix, limit, cursor))

    async def iter_pages(
        self,
        within_hours: int | None = None,
        include_overdue: bool = False,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[DuePage]:
        cursor: str | None = None
        while True:
            page = await self.due(within_hours, include_overdue, prefix, limit, cursor)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def iter_due(
        self,
        within_hours: int | None = None,
        include_overdue: bool = False,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[DueSecret]:
        async for page in self.iter_pages(within_hours, include_overdue, prefix, limit):
            for item in page.secrets:
                yield item
