"""HTTP plumbing shared by the sync and async clients.

Each API method is written once, as a function returning a ``Call``: the request to
send and how to decode its answer. The sync and async transports only differ in how
they send it and how they sleep between retries, so the two clients cannot drift.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ._version import __version__
from .errors import ConfigurationError, ScaiVaultError, TransportError, error_from_response
from .retry import READ_METHODS, RetryConfig, resolve

T = TypeVar("T")

USER_AGENT = f"scaivault-sdk-python/{__version__}"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and the decoder of its JSON answer (``None`` for an empty body)."""

    method: str
    path: str
    decode: Callable[[Any], T]
    params: Mapping[str, str] | None = None
    json: Any = None
    # A POST that changes nothing (batch read, what-if test, HMAC): resent as it is.
    read_only: bool = False
    # False only for a mutation the server cannot deduplicate: a login has no caller yet
    # to scope an Idempotency-Key to. Such a call is never retried.
    keyed: bool = True

    @property
    def mutates(self) -> bool:
        return not self.read_only and self.method.upper() not in READ_METHODS

    @property
    def sends_key(self) -> bool:
        """Sent with an ``Idempotency-Key``, so the server applies it once however often it arrives."""
        return self.mutates and self.keyed

    @property
    def repeatable(self) -> bool:
        """May be sent again after a failure: it changes nothing, or it carries a key."""
        return not self.mutates or self.keyed

    def idempotency_headers(self) -> dict[str, str] | None:
        """A fresh key for one logical call; every retry of that call reuses it."""
        return {IDEMPOTENCY_KEY_HEADER: str(uuid.uuid4())} if self.sends_key else None


def no_content(_: Any) -> None:
    return None


# --- paths ---------------------------------------------------------------------------------


def secret_path(path: str) -> str:
    """The URL form of a secret path.

    Dot segments are refused here because httpx normalizes URLs: ``a/../b`` would
    silently become a request for ``b``. Everything else is left for the server to
    judge, so the SDK and the server never disagree about what a valid path is.
    """
    segments = path.split("/")
    if any(segment in (".", "..") for segment in segments):
        raise ScaiVaultError(
            f"secret path {path!r} has a '.' or '..' segment", code="invalid_path"
        )
    return "/".join(quote(segment, safe="") for segment in segments)


def segment(value: str) -> str:
    """One URL path segment (an id, an accessor); ``:`` and ``@`` stay readable."""
    return quote(value, safe=":@")


def query(**params: str | int | bool | None) -> dict[str, str]:
    """Query parameters without the ``None`` ones; booleans as ``true``/``false``."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key.rstrip("_")] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    address: str
    token: str | None = field(repr=False)
    verify: ssl.SSLContext | bool
    timeout: httpx.Timeout
    retry: RetryConfig | None

    @classmethod
    def build(
        cls,
        address: str | None,
        token: str | None,
        ca_cert: str | os.PathLike[str] | None,
        verify: bool,
        timeout: float | httpx.Timeout,
        retry: bool | RetryConfig | None,
    ) -> Settings:
        address = address or os.environ.get("SCAIVAULT_ADDR")
        if not address:
            raise ConfigurationError(
                "no server address: pass address= or set SCAIVAULT_ADDR", code="no_address"
            )
        token = token if token is not None else os.environ.get("SCAIVAULT_TOKEN")
        ca_cert = ca_cert or os.environ.get("SCAIVAULT_CACERT") or None
        return cls(
            address=address.rstrip("/"),
            token=token or None,
            verify=_tls_verify(ca_cert, verify),
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            retry=resolve(retry),
        )

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


def _tls_verify(ca_cert: str | os.PathLike[str] | None, verify: bool) -> ssl.SSLContext | bool:
    if not verify:
        return False
    if ca_cert is None:
        return True
    try:
        return ssl.create_default_context(cafile=os.fspath(ca_cert))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load CA certificate {ca_cert}: {exc}", code="bad_ca_cert") from exc


# --- sending -----------------------------------------------------------------------------------


def _decode(call: Call[T], response: httpx.Response) -> T:
    if response.status_code == 204 or not response.content:
        return call.decode(None)
    try:
        body = response.json()
    except ValueError as exc:
        raise ScaiVaultError(
            f"{call.method} {call.path}: response is not JSON",
            code="invalid_response",
            status=response.status_code,
            request_id=response.headers.get("X-Request-Id"),
        ) from exc
    return call.decode(body)


def _transport_error(exc: httpx.TransportError) -> TransportError:
    return TransportError(f"{type(exc).__name__}: {exc}", code="transport_error")


# --- streams (Server-Sent Events) ---------------------------------------------------------------

# The server sends a heartbeat every 15 s: a read that waits longer than three of them
# means the connection is gone. There is no overall timeout: a stream lasts until closed.
STREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=45.0, write=10.0, pool=10.0)
STREAM_HEADERS = {"Accept": "text/event-stream"}


def _stream_error(response: httpx.Response) -> ScaiVaultError:
    return error_from_response(response)


class SyncTransport:
    def __init__(self, settings: Settings) -> None:
        self._retry = settings.retry
        # One httpx.Client per SDK client: its pool keeps connections alive between calls.
        self._http = httpx.Client(
            base_url=settings.address,
            headers=settings.headers(),
            verify=settings.verify,
            timeout=settings.timeout,
        )

    def run(self, call: Call[T]) -> T:
        headers = call.idempotency_headers()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=headers
                )
            except httpx.TransportError as exc:
                error: ScaiVaultError = _transport_error(exc)
                cause: BaseException | None = exc
            else:
                if response.is_success:
                    return _decode(call, response)
                error, cause = error_from_response(response), None
            delay = self._retry.delay(attempt, error, repeatable=call.repeatable) if self._retry else None
            if delay is None:
                raise error from cause
            time.sleep(delay)

    def stream_lines(
        self, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> Generator[str, None, None]:
        """The lines of a streaming answer, as they arrive; one request, no retries."""
        try:
            with self._http.stream(
                "GET", path, params=params, headers={**STREAM_HEADERS, **headers}, timeout=STREAM_TIMEOUT
            ) as response:
                if not response.is_success:
                    response.read()
                    raise _stream_error(response)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc

    def close(self) -> None:
        self._http.close()


class AsyncTransport:
    def __init__(self, settings: Settings) -> None:
        self._retry = settings.retry
        self._http = httpx.AsyncClient(
            base_url=settings.address,
            headers=settings.headers(),
            verify=settings.verify,
            timeout=settings.timeout,
        )

    async def run(self, call: Call[T]) -> T:
        headers = call.idempotency_headers()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=headers
                )
            except httpx.TransportError as exc:
                error: ScaiVaultError = _transport_error(exc)
                cause: BaseException | None = exc
            else:
                if response.is_success:
                    return _decode(call, response)
                error, cause = error_from_response(response), None
            delay = self._retry.delay(attempt, error, repeatable=call.repeatable) if self._retry else None
            if delay is None:
                raise error from cause
            await asyncio.sleep(delay)

    async def stream_lines(
        self, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> AsyncGenerator[str, None]:
        """The lines of a streaming answer, as they arrive; one request, no retries."""
        try:
            async with self._http.stream(
                "GET", path, params=params, headers={**STREAM_HEADERS, **headers}, timeout=STREAM_TIMEOUT
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise _stream_error(response)
                async for line in response.aiter_lines():
                    yield line
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc

    async def close(self) -> None:
        await self._http.aclose()
