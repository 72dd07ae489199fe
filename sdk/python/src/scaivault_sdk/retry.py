"""Opt-in retry policy.

Off by default: a caller who retries on their own (as the cookbook's "Read with retry"
recipe does) must see the first ``RateLimitError``. When on, a request is repeated
after a 429 or 503 for as long as the server says (``Retry-After``), with exponential
backoff where it says nothing, after a 504 (the server stopped waiting for an answer),
and after a lost connection (the answer may have been lost after the server acted).

Repeating is safe because every mutation carries an ``Idempotency-Key``, made once per
call and reused by its retries: the server applies the request once and answers a
repeat with the first answer (``Idempotency-Replayed: true``), or with ``409
idempotency_key_in_flight`` while the first attempt still runs, which is retried too.
A mutation without a key (a login: the server has no caller to scope a key to) is
never retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import (
    ConflictError,
    RateLimitError,
    ScaiVaultError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
)

# Requests that change nothing by their method; a few POSTs also change nothing and say so.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class RetryConfig:
    """How often and how long to retry.

    ``max_attempts`` counts the first try. A ``Retry-After`` longer than
    ``max_retry_after`` is not waited out: the error is raised so the caller decides.
    """

    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    retry_connection_errors: bool = True

    def delay(self, attempt: int, error: ScaiVaultError, *, repeatable: bool) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

        ``attempt`` is the number of the attempt that just failed (1 for the first);
        ``repeatable`` says whether the request may be sent again at all: it changes
        nothing, or it carries an ``Idempotency-Key``.
        """
        if attempt >= self.max_attempts or not repeatable:
            return None
        if isinstance(error, RateLimitError | ServiceUnavailableError) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        if isinstance(error, ServiceUnavailableError):
            return self.backoff(attempt)
        if isinstance(error, ServerError) and error.status == 504:
            # The server stopped waiting, the work may go on: a keyed repeat waits for
            # it (409 in flight) and then gets its answer.
            return self.backoff(attempt)
        if isinstance(error, ConflictError) and error.code == "idempotency_key_in_flight":
            return self.backoff(attempt)
        if isinstance(error, TransportError) and self.retry_connection_errors:
            return self.backoff(attempt)
        return None

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff, so many clients do not retry in lockstep."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def resolve(retry: bool | RetryConfig | None) -> RetryConfig | None:
    if retry is True:
        return RetryConfig()
    if retry is False or retry is None:
        return None
    return retry
