"""Opt-in retry: against a rate-limited real server, a write retried after a lost answer
through a proxy that drops it, and the policy's arithmetic."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from scaivault_sdk import RetryConfig, SyncScaiVaultClient, audit, auth, events, policies, rotation, secrets, system
from scaivault_sdk.errors import (
    ConflictError,
    IdempotencyKeyReusedError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    error_from_response,
)
from scaivault_sdk.testing import DevServer, dev_server

# 30 a minute: one request comes back every 2 s, so a retry waits about that long.
PER_MINUTE = 30


@pytest.fixture
def limited_server() -> Iterator[DevServer]:
    with dev_server(rate_limit_per_minute=PER_MINUTE) as running:
        yield running


def _exhaust(server: DevServer) -> RateLimitError:
    """Spend the whole budget; return the first 429."""
    with server.client() as plain:
        for _ in range(PER_MINUTE * 3):
            try:
                plain.auth.whoami()
            except RateLimitError as exc:
                return exc
    raise AssertionError(f"no 429 after {PER_MINUTE * 3} requests at {PER_MINUTE}/min")


def test_without_retry_the_first_429_is_raised(limited_server: DevServer) -> None:
    _exhaust(limited_server)
    with limited_server.client() as c, pytest.raises(RateLimitError):
        c.auth.whoami()


def test_retry_waits_out_retry_after_and_succeeds(limited_server: DevServer) -> None:
    first = _exhaust(limited_server)
    assert 0 < first.retry_after <= 60
    with limited_server.client(retry=RetryConfig(max_attempts=5)) as c:
        started = time.monotonic()
        assert c.auth.whoami().identity_id == "root"
    assert time.monotonic() - started >= 0.5, "the request must have waited for the bucket"


async def test_async_retry_waits_out_retry_after(limited_server: DevServer) -> None:
    _exhaust(limited_server)
    async with limited_server.async_client(retry=True) as c:
        assert (await c.auth.whoami()).identity_id == "root"


def test_retry_never_repeats_other_errors(limited_server: DevServer) -> None:
    with limited_server.client(retry=True) as c:
        started = time.monotonic()
        with pytest.raises(NotFoundError):
            c.secrets.read("not/there")
        assert time.monotonic() - started < 1


# --- the policy itself (pure arithmetic, no server needed) ----------------------------


def _rate_limited(after: float) -> RateLimitError:
    return RateLimitError("slow down", code="rate_limited", status=429, retry_after=after)


def test_policy_honours_retry_after() -> None:
    assert RetryConfig().delay(1, _rate_limited(7), repeatable=True) == 7


def test_policy_gives_up_when_retry_after_is_too_long() -> None:
    assert RetryConfig(max_retry_after=10).delay(1, _rate_limited(11), repeatable=True) is None


def test_policy_gives_up_after_max_attempts() -> None:
    assert RetryConfig(max_attempts=3).delay(3, _rate_limited(1), repeatable=True) is None


def test_policy_backs_off_exponentially_on_503_without_retry_after() -> None:
    config = RetryConfig(max_attempts=10, backoff_initial=0.5, backoff_max=4)
    error = ServiceUnavailableError("down", code="storage_unavailable", status=503)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delay = config.delay(attempt, error, repeatable=True)
        assert delay is not None and ceiling / 2 <= delay <= ceiling


def test_policy_honours_retry_after_on_503() -> None:
    error = ServiceUnavailableError("sealed", code="sealed", status=503, retry_after=3)
    assert RetryConfig().delay(1, error, repeatable=True) == 3


def test_policy_never_repeats_a_mutation_without_a_key() -> None:
    lost = TransportError("ConnectError", code="transport_error")
    unavailable = ServiceUnavailableError("sealed", code="sealed", status=503, retry_after=3)
    for error in [lost, unavailable, _rate_limited(1)]:
        assert RetryConfig().delay(1, error, repeatable=True) is not None
        assert RetryConfig().delay(1, error, repeatable=False) is None


def test_policy_retries_a_timeout_but_not_other_server_errors() -> None:
    assert RetryConfig().delay(1, ServerError("slow", code="request_timeout", status=504), repeatable=True) is not None
    assert RetryConfig().delay(1, ServerError("bug", code="internal", status=500), repeatable=True) is None


def test_policy_waits_for_a_first_attempt_in_flight_but_not_other_conflicts() -> None:
    in_flight = ConflictError("running", code="idempotency_key_in_flight", status=409)
    assert RetryConfig().delay(1, in_flight, repeatable=True) is not None
    cas = ConflictError("cas", code="cas_mismatch", status=409)
    assert RetryConfig().delay(1, cas, repeatable=True) is None


def test_every_mutation_but_a_login_carries_a_key_and_may_be_repeated() -> None:
    keyed = [
        secrets._write("a/b", {"k": "v"}, None, None, None),
        secrets._delete("a/b", False),
        secrets._restore("a/b"),
        secrets._rotate("a/b", "compromise"),
        secrets._update_metadata("a/b", None, None),
        auth._create_token("sa:ci", None, None),
        system._rotate_keys(),
        policies._create("p", [], None),
        audit._export("2026-11-01", "2026-11-02", "jsonl", {"type": "file", "path": "a.jsonl"}),
    ]
    for call in keyed:
        assert call.sends_key and call.repeatable, call
    # A fresh key per logical call; its retries reuse the headers made once in run().
    assert keyed[0].idempotency_headers() != keyed[0].idempotency_headers()
    for call in [
        secrets._read("a/b", None),
        secrets._batch_read(["a/b"]),
        policies._test("sa:ci", "a", "read", None),
        rotation._due(None, False, None, None, None),
        events._list(None, None, None, None),
    ]:
        assert not call.sends_key and call.repeatable, call
    login = auth._login_kubernetes("jwt", None)
    assert not login.sends_key and not login.repeatable


def test_rate_limit_error_without_header_still_waits() -> None:
    assert RateLimitError("x", status=429).retry_after == 1.0


# --- a lost answer, through a proxy that drops it --------------------------------------


def _read_message(sock: socket.socket) -> bytes:
    """One HTTP/1.1 message: head and a ``content-length`` body."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            length = 0
            for line in data[:end].decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(data) >= end + 4 + length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class LosingProxy:
    """Forwards the first request to the server, waits for its whole answer (so the
    server has applied the change), then closes the client's connection without relaying
    it. Later connections are relayed. Keeps each connection's first request head."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.heads: list[str] = []
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client, len(self._sockets) == 2), daemon=True).start()

    def _serve(self, client: socket.socket, lose: bool) -> None:
        request = _read_message(client)
        self.heads.append(request.split(b"\r\n\r\n")[0].decode("latin-1"))
        server = socket.create_connection(self._upstream)
        self._sockets.append(server)
        server.sendall(request)
        if lose:
            _read_message(server)
            client.close()
            server.close()
            return
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass

    def keys(self) -> list[str | None]:
        found: list[str | None] = []
        for head in self.heads:
            values = [line.partition(":")[2].strip() for line in head.split("\r\n") if line.lower().startswith("idempotency-key:")]
            found.append(values[0] if values else None)
        return found

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def losing_proxy(server: DevServer) -> Iterator[LosingProxy]:
    proxy = LosingProxy(server.address)
    yield proxy
    proxy.close()


def _through(proxy: LosingProxy, server: DevServer) -> SyncScaiVaultClient:
    return SyncScaiVaultClient(
        address=proxy.address, token=server.root_token, retry=RetryConfig(backoff_initial=0.01, backoff_max=0.05)
    )


def test_a_write_whose_answer_was_lost_is_applied_once(server: DevServer, losing_proxy: LosingProxy, prefix: str) -> None:
    path = f"{prefix}lost-answer"
    with _through(losing_proxy, server) as c:
        assert c.secrets.write(path, {"password": "hunter2"}).version == 1
    with server.client() as direct:
        assert [v.version for v in direct.secrets.versions(path)] == [1]
    keys = losing_proxy.keys()
    assert len(keys) == 2 and keys[0] is not None and keys[0] == keys[1], losing_proxy.heads


def test_without_retry_a_lost_answer_is_the_callers_to_judge(
    server: DevServer, losing_proxy: LosingProxy, prefix: str
) -> None:
    with SyncScaiVaultClient(address=losing_proxy.address, token=server.root_token) as c, pytest.raises(TransportError):
        c.secrets.write(f"{prefix}no-retry", {"k": "v"})
    assert len(losing_proxy.heads) == 1


def test_the_server_refuses_a_key_reused_for_another_body(server: DevServer, prefix: str) -> None:
    url = f"{server.address}/v1/secrets/{prefix}reused"
    headers = {"Authorization": f"Bearer {server.root_token}", "Idempotency-Key": "sdk-test-key-0001"}
    first = httpx.put(url, headers=headers, json={"data": {"k": "v1"}})
    again = httpx.put(url, headers=headers, json={"data": {"k": "v1"}})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers.get("Idempotency-Replayed") == "true" and again.json() == first.json()
    other = httpx.put(url, headers=headers, json={"data": {"k": "v2"}})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert isinstance(error_from_response(other), IdempotencyKeyReusedError)
    with server.client() as c:
        assert c.secrets.read(f"{prefix}reused").data == {"k": "v1"}
