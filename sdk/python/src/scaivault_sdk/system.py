"""``client.sys``: keyring administration (docs/api.md, "System")."""

from __future__ import annotations

from ._transport import AsyncTransport, Call, SyncTransport
from ._wire import model
from .models import KeyInfo, KeyRing


def _rotate_keys() -> Call[KeyInfo]:
    return Call("POST", "/v1/sys/keys/rotate", model(KeyInfo))


def _keys() -> Call[KeyRing]:
    return Call("GET", "/v1/sys/keys", model(KeyRing))


class Sys:
    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def rotate_keys(self) -> KeyInfo:
        """Start a new data key for new writes; older versions stay readable."""
        return self._run(_rotate_keys())

    def keys(self) -> KeyRing:
        return self._run(_keys())


class AsyncSys:
    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def rotate_keys(self) -> KeyInfo:
        return await self._run(_rotate_keys())

    async def keys(self) -> KeyRing:
        return await self._run(_keys())
