"""Each error class, raised by the real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import scaivault_sdk
from scaivault_sdk import SyncScaiVaultClient
from scaivault_sdk.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ScaiVaultError,
    TransportError,
    ValidationError,
)
from scaivault_sdk.testing import DevServer, dev_server


def _assert_server_error(error: ScaiVaultError, status: int, code: str) -> None:
    assert (error.status, error.code) == (status, code)
    assert error.message
    assert error.request_id, "every error response carries a request id"


def test_not_found_error_is_importable_from_both_places() -> None:
    assert scaivault_sdk.NotFoundError is NotFoundError


def test_404_unknown_secret(client: SyncScaiVaultClient, prefix: str) -> None:
    with pytest.raises(NotFoundError) as err:
        client.secrets.read(prefix + "nothing")
    _assert_server_error(err.value, 404, "secret_not_found")


def test_404_unknown_version(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "one", data={"k": "v"})
    with pytest.raises(NotFoundError) as err:
        client.secrets.read(prefix + "one", version=7)
    _assert_server_error(err.value, 404, "version_not_found")


def test_400_invalid_path(client: SyncScaiVaultClient, prefix: str) -> None:
    with pytest.raises(ValidationError) as err:
        client.secrets.write(prefix + "has space", data={"k": "v"})
    _assert_server_error(err.value, 400, "invalid_path")


def test_400_invalid_ttl(client: SyncScaiVaultClient, prefix: str) -> None:
    with pytest.raises(ValidationError) as err:
        client.secrets.write(prefix + "x", data={"k": "v"}, options={"expires_in": "soon"})
    _assert_server_error(err.value, 400, "invalid_ttl")


def test_dot_segments_are_refused_before_sending(client: SyncScaiVaultClient) -> None:
    # httpx would normalize "a/../b" into "b" and read another secret than asked.
    with pytest.raises(ScaiVaultError) as err:
        client.secrets.read("app/../other")
    assert err.value.code == "invalid_path" and err.value.status is None


def test_401_unknown_token(server: DevServer) -> None:
    with server.client(token="svt_not_a_real_token") as bad:
        with pytest.raises(AuthenticationError) as err:
            bad.auth.whoami()
    _assert_server_error(err.value, 401, "unauthenticated")


def test_409_restore_of_a_live_secret(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "live", data={"k": "v"})
    with pytest.raises(ConflictError) as err:
        client.secrets.restore(prefix + "live")
    _assert_server_error(err.value, 409, "not_deleted")


def test_413_value_too_large(client: SyncScaiVaultClient, prefix: str) -> None:
    big = "x" * (65 * 1024)
    with pytest.raises(PayloadTooLargeError) as err:
        client.secrets.write(prefix + "big", data={"blob": big})
    _assert_server_error(err.value, 413, "value_too_large")
    assert big not in str(err.value) and big not in repr(err.value)


def test_413_body_too_large(client: SyncScaiVaultClient, prefix: str) -> None:
    with pytest.raises(PayloadTooLargeError) as err:
        client.secrets.write(prefix + "huge", data={"blob": "x" * (2 * 1024 * 1024)})
    assert err.value.status == 413
    assert err.value.code in ("payload_too_large", "value_too_large")


@pytest.fixture(scope="module")
def limited_server() -> Iterator[DevServer]:
    with dev_server(rate_limit_per_minute=3) as running:
        yield running


def test_429_carries_retry_after_seconds(limited_server: DevServer) -> None:
    with limited_server.client() as c:
        with pytest.raises(RateLimitError) as err:
            for _ in range(10):
                c.auth.whoami()
    _assert_server_error(err.value, 429, "rate_limited")
    assert err.value.retry_after > 0


def test_no_server_listening_is_a_transport_error(unused_port: int) -> None:
    with SyncScaiVaultClient(address=f"http://127.0.0.1:{unused_port}", token="svt_x") as c:
        with pytest.raises(TransportError) as err:
            c.health()
    assert err.value.status is None
