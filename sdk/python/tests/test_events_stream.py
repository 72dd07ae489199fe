"""The event stream (Server-Sent Events), sync and async, against the real server: a stream
from a position replays what came since and then follows live, each event once."""

from __future__ import annotations

from itertools import islice

import pytest

from scaivault_sdk import ScaiVaultClient, SyncScaiVaultClient
from scaivault_sdk.errors import ValidationError


def _position(client: SyncScaiVaultClient, prefix: str) -> int:
    return client.events.list(path_prefix=prefix).last_seq


def test_a_stream_from_a_position_replays_then_follows(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(f"{prefix}a", data={"v": "before"})
    start = _position(client, prefix)
    stream = client.events.stream(path_prefix=prefix, after=start)
    client.secrets.write(f"{prefix}b", data={"v": "secret-value-1"})
    first = next(stream)
    # Written while the stream is open: it arrives live.
    client.secrets.write(f"{prefix}b", data={"v": "secret-value-2"})
    second = next(stream)
    stream.close()
    assert (first.type, first.path, first.version) == ("secret.created", f"{prefix}b", 1)
    assert (second.type, second.version) == ("secret.updated", 2)
    assert first.seq > start and second.seq > first.seq
    # Resuming after the first event gives the second again, and only it before the rest.
    client.secrets.write(f"{prefix}c", data={"v": 3})
    resumed = list(islice(client.events.stream(path_prefix=prefix, after=first.seq), 2))
    assert [(e.path, e.version) for e in resumed] == [(f"{prefix}b", 2), (f"{prefix}c", 1)]


def test_stream_filters_and_bad_filters(client: SyncScaiVaultClient, prefix: str) -> None:
    start = _position(client, prefix)
    client.secrets.write(f"{prefix}x", data={"v": 1})
    client.secrets.delete(f"{prefix}x")
    deleted = next(client.events.stream(types=["secret.deleted"], path_prefix=prefix, after=start))
    assert (deleted.type, deleted.path) == ("secret.deleted", f"{prefix}x")
    with pytest.raises(ValidationError):
        next(client.events.stream(types=["secret.nope"]))


async def test_the_async_stream(async_client: ScaiVaultClient, prefix: str) -> None:
    start = (await async_client.events.list(path_prefix=prefix)).last_seq
    stream = async_client.events.stream(path_prefix=prefix, after=start)
    await async_client.secrets.write(f"{prefix}async", data={"v": 1})
    event = await stream.__anext__()
    await stream.aclose()
    assert (event.type, event.path) == ("secret.created", f"{prefix}async")
