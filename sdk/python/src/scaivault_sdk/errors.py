"""Exceptions raised by the SDK.

Every error the server returns has the shape
``{"error": {"code", "message", "request_id"}}``; the HTTP status picks the class and
the stable ``code`` tells the cases of one class apart (``secret_deleted`` versus
``version_not_found``, say). Messages come from the server, which never puts secret
values in them, so printing an error is safe.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = [
    "ScaiVaultError",
    "ValidationError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "IdempotencyKeyReusedError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServiceUnavailableError",
    "ServerError",
    "TransportError",
    "ConfigurationError",
    "error_from_response",
]


class ScaiVaultError(Exception):
    """Base class of every SDK error.

    ``status`` is the HTTP status (``None`` when no response arrived), ``code`` the
    server's stable error code, ``request_id`` the id to quote when asking for help.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "unknown",
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class ValidationError(ScaiVaultError):
    """400 (and 415): the request itself is wrong: bad path, JSON, version, TTL or tag."""


class AuthenticationError(ScaiVaultError):
    """401: the token is missing, unknown, expired or revoked."""


class PermissionDeniedError(ScaiVaultError):
    """403: the token's identity lacks the permission for this path."""


class NotFoundError(ScaiVaultError):
    """404: no such secret, version or token; also expired and soft-deleted secrets."""


class ConflictError(ScaiVaultError):
    """409: a check-and-set mismatch, a restore of a secret that is not deleted, or
    ``idempotency_key_in_flight`` (the first request with this key still runs)."""


class IdempotencyKeyReusedError(ScaiVaultError):
    """422 ``idempotency_key_reused``: the ``Idempotency-Key`` was used before for a
    different request (method, path or body), so this one was not applied."""


class PayloadTooLargeError(ScaiVaultError):
    """413: the request body or the secret value exceeds the server's limit."""


class _RetryableError(ScaiVaultError):
    """An error after which the same request may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimitError(_RetryableError):
    """429: the token's request budget is used up.

    ``retry_after`` is the number of seconds the server asked to wait (its
    ``Retry-After`` header); it is always a number so ``time.sleep(e.retry_after)`` works.
    """

    retry_after: float

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        # A 429 without the header still means "wait": one second is the smallest
        # unit the header can express.
        super().__init__(message, retry_after=1.0 if retry_after is None else retry_after, **kwargs)


class ServiceUnavailableError(_RetryableError):
    """503: storage is down or the vault is sealed; ``retry_after`` when the server gave one."""


class ServerError(ScaiVaultError):
    """Any other 5xx: a server bug; the details are in the server log under ``request_id``."""


class TransportError(ScaiVaultError):
    """No HTTP response: connection refused, TLS failure, timeout."""


class ConfigurationError(ScaiVaultError):
    """The client was built without what it needs (address, token, CA file)."""


_BY_STATUS: dict[int, type[ScaiVaultError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: ValidationError,
    422: IdempotencyKeyReusedError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_from_response(response: httpx.Response) -> ScaiVaultError:
    """Build the exception for a non-2xx response."""
    code, message, request_id = _error_fields(response)
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else ScaiVaultError
    kwargs: dict[str, Any] = {"code": code, "status": response.status_code, "request_id": request_id}
    if issubclass(cls, _RetryableError):
        kwargs["retry_after"] = parse_retry_after(response.headers.get("Retry-After"))
    return cls(message, **kwargs)


def _error_fields(response: httpx.Response) -> tuple[str, str, str | None]:
    header_id = response.headers.get("X-Request-Id")
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        request_id = error.get("request_id") or header_id
        return (
            str(error.get("code") or f"http_{response.status_code}"),
            str(error.get("message") or response.reason_phrase),
            str(request_id) if request_id else None,
        )
    # Not the documented shape (a proxy in between, say): keep the status, say little.
    return f"http_{response.status_code}", response.reason_phrase or "request failed", header_id
