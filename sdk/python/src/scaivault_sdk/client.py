"""The two clients: ``SyncScaiVaultClient`` and the asyncio ``ScaiVaultClient``."""

from __future__ import annotations

import os
from types import TracebackType

import httpx

from ._transport import DEFAULT_TIMEOUT, AsyncTransport, Call, Settings, SyncTransport
from ._wire import model
from .audit import AsyncAuditAPI, AuditAPI
from .auth import AsyncAuth, Auth
from .events import AsyncEventsAPI, EventsAPI
from .models import Health, HealthDetailed
from .policies import AsyncIdentitiesAPI, AsyncPoliciesAPI, IdentitiesAPI, PoliciesAPI
from .retry import RetryConfig
from .rotation import AsyncRotationAPI, RotationAPI
from .secrets import AsyncSecrets, Secrets
from .system import AsyncSys, Sys
from .webhooks import AsyncWebhooksAPI, WebhooksAPI


def _health() -> Call[Health]:
    return Call("GET", "/v1/health", model(Health))


def _health_ready() -> Call[Health]:
    return Call("GET", "/v1/health/ready", model(Health))


def _health_detailed() -> Call[HealthDetailed]:
    return Call("GET", "/v1/health/detailed", model(HealthDetailed))


class _ClientBase:
    _settings: Settings

    @property
    def address(self) -> str:
        return self._settings.address

    def __repr__(self) -> str:
        # The token stays out: clients end up in logs and tracebacks.
        return f"{type(self).__name__}(address={self.address!r})"


class SyncScaiVaultClient(_ClientBase):
    """Blocking client.

    ``address`` and ``token`` default to ``SCAIVAULT_ADDR`` and ``SCAIVAULT_TOKEN``.
    TLS certificates are verified; ``ca_cert`` (or ``SCAIVAULT_CACERT``) names a PEM
    file of private CAs to trust instead of the system store. ``retry=True`` (or a
    ``RetryConfig``) retries rate-limited and unavailable responses. Use it as a
    context manager, or call ``close()``, to release pooled connections.
    """

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        ca_cert: str | os.PathLike[str] | None = None,
        verify: bool = True,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: bool | RetryConfig = False,
    ) -> None:
        self._settings = Settings.build(address, token, ca_cert, verify, timeout, retry)
        self._transport = SyncTransport(self._settings)
        self.secrets = Secrets(self._transport)
        self.auth = Auth(self._transport)
        self.sys = Sys(self._transport)
        self.policies = PoliciesAPI(self._transport)
        self.identities = IdentitiesAPI(self._transport)
        self.audit = AuditAPI(self._transport)
        self.rotation = RotationAPI(self._transport)
        self.events = EventsAPI(self._transport)
        self.webhooks = WebhooksAPI(self._transport)

    def health(self) -> Health:
        """Liveness without authentication: the server answers (it touches no storage)."""
        return self._transport.run(_health())

    def ready(self) -> Health:
        """Readiness without authentication; raises ``ServiceUnavailableError`` when storage
        or the audit log cannot be written."""
        return self._transport.run(_health_ready())

    def health_detailed(self) -> HealthDetailed:
        return self._transport.run(_health_detailed())

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> SyncScaiVaultClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ScaiVaultClient(_ClientBase):
    """asyncio client with the same API as ``SyncScaiVaultClient``, awaited.

    Use ``async with`` or ``await client.aclose()``.
    """

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        ca_cert: str | os.PathLike[str] | None = None,
        verify: bool = True,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: bool | RetryConfig = False,
    ) -> None:
        self._settings = Settings.build(address, token, ca_cert, verify, timeout, retry)
        self._transport = AsyncTransport(self._settings)
        self.secrets = AsyncSecrets(self._transport)
        self.auth = AsyncAuth(self._transport)
        self.sys = AsyncSys(self._transport)
        self.policies = AsyncPoliciesAPI(self._transport)
        self.identities = AsyncIdentitiesAPI(self._transport)
        self.audit = AsyncAuditAPI(self._transport)
        self.rotation = AsyncRotationAPI(self._transport)
        self.events = AsyncEventsAPI(self._transport)
        self.webhooks = AsyncWebhooksAPI(self._transport)

    async def health(self) -> Health:
        return await self._transport.run(_health())

    async def ready(self) -> Health:
        return await self._transport.run(_health_ready())

    async def health_detailed(self) -> HealthDetailed:
        return await self._transport.run(_health_detailed())

    async def aclose(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> ScaiVaultClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
