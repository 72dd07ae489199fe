"""Opt-in retry: against a rate-limited real server, and the policy's arithmetic."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from scaivault_sdk import RetryConfig, secrets
from scaivault_sdk.errors import (
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    TransportError,
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
        delay = config.delay(attempt, error, repeatable=False)
        assert delay is not None and ceiling / 2 <= delay <= ceiling


def test_policy_honours_retry_after_on_503() -> None:
    error = ServiceUnavailableError("sealed", code="sealed", status=503, retry_after=3)
    assert RetryConfig().delay(1, error, repeatable=False) == 3


def test_policy_repeats_lost_connections_only_for_repeatable_requests() -> None:
    error = TransportError("ConnectError", code="transport_error")
    assert RetryConfig().delay(1, error, repeatable=True) is not None
    assert RetryConfig().delay(1, error, repeatable=False) is None


def test_secret_writes_are_not_repeatable_but_reads_are() -> None:
    assert not secrets._write("a/b", {"k": "v"}, None, None, None).repeatable
    assert secrets._read("a/b", None).repeatable
    assert secrets._delete("a/b", False).repeatable
    assert not secrets._restore("a/b").repeatable


def test_rate_limit_error_without_header_still_waits() -> None:
    assert RateLimitError("x", status=429).retry_after == 1.0
