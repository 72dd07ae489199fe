"""Fixtures: a real ``scaivault-server dev`` per session (and per rate-limit test).

No HTTP mocks: every behaviour test talks to the server binary named by
SCAIVAULT_SERVER_BIN (``make test-sdk`` sets it to the freshly built one).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from scaivault_sdk import ScaiVaultClient, SyncScaiVaultClient
from scaivault_sdk.testing import DevServer, dev_server

# High enough that no test but the rate-limit ones ever sees a 429.
UNLIMITED = 1_000_000


@pytest.fixture(scope="session")
def server() -> Iterator[DevServer]:
    with dev_server(rate_limit_per_minute=UNLIMITED) as running:
        yield running


@pytest.fixture
def client(server: DevServer) -> Iterator[SyncScaiVaultClient]:
    with server.client() as c:
        yield c


@pytest.fixture
async def async_client(server: DevServer) -> AsyncIterator[ScaiVaultClient]:
    async with server.async_client() as c:
        yield c


@pytest.fixture
def prefix() -> str:
    """A path prefix of this test's own, so tests sharing the server never collide."""
    return f"t/{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
