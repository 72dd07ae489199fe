"""``client.audit``: the audit log (docs/api.md, "Audit").

Every request but the health check and the OpenAPI document leaves a hash-chained
record. Times (``from_``, ``to``) are datetimes (naive ones are taken as UTC), dates
(``to=date(2026, 4, 30)`` includes the whole day) or strings as the server reads them
(RFC 3339 or ``YYYY-MM-DD``). ``from_`` is the wire's ``from``, a Python keyword.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import date, datetime, timezone
from typing import Any

from ._transport import AsyncTransport, Call, SyncTransport, query, secret_path, segment
from ._wire import model
from .errors import ScaiVaultError
from .models import (
    AuditLogs,
    AuditRecord,
    ExportJob,
    HmacResult,
    IdentityActivity,
    VerifyResult,
)

When = datetime | date | str | None

# How often ``wait_for_export`` asks, in seconds (doubling up to the cap).
_POLL_FIRST = 0.1
_POLL_MAX = 2.0


class ExportFailedError(ScaiVaultError):
    """``wait_for_export`` saw the job fail; ``job.error`` says why."""

    def __init__(self, job: ExportJob) -> None:
        super().__init__(f"audit export {job.id} failed: {job.error}", code="export_failed")
        self.job = job


def _time(value: When) -> str | None:
    """RFC 3339 in UTC for datetimes, ``YYYY-MM-DD`` for dates; strings go as given."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _logs(
    from_: When,
    to: When,
    identity: str | None,
    path: str | None,
    action: str | None,
    outcome: str | None,
    limit: int | None,
    cursor: str | None,
) -> Call[AuditLogs]:
    params = query(
        from_=_time(from_),
        to=_time(to),
        identity=identity,
        path=path,
        action=action,
        outcome=outcome,
        limit=limit,
        cursor=cursor,
    )
    return Call("GET", "/v1/audit/logs", model(AuditLogs), params=params)


def _for_secret(path: str, from_: When, to: When) -> Call[AuditLogs]:
    params = query(from_=_time(from_), to=_time(to))
    return Call("GET", f"/v1/audit/secrets/{secret_path(path)}", model(AuditLogs), params=params)


def _for_identity(identity: str, from_: When, to: When) -> Call[IdentityActivity]:
    params = query(from_=_time(from_), to=_time(to))
    return Call("GET", f"/v1/audit/identities/{segment(identity)}", model(IdentityActivity), params=params)


def _verify(from_: When, to: When) -> Call[VerifyResult]:
    return Call("GET", "/v1/audit/verify", model(VerifyResult), params=query(from_=_time(from_), to=_time(to)))


def _hmac(value: str) -> Call[HmacResult]:
    return Call("POST", "/v1/audit/hmac", model(HmacResult), json={"input": value}, read_only=True)


def _export(from_: When, to: When, format: str, destination: Mapping[str, Any]) -> Call[ExportJob]:
    body = {"from": _time(from_), "to": _time(to), "format": format, "destination": dict(destination)}
    return Call("POST", "/v1/audit/export", model(ExportJob), json=body)


def _export_status(export_id: str) -> Call[ExportJob]:
    return Call("GET", f"/v1/audit/exports/{segment(export_id)}", model(ExportJob))


def _finished(job: ExportJob) -> ExportJob | None:
    if job.status == "failed":
        raise ExportFailedError(job)
    return job if job.done else None


def _timed_out(export_id: str, timeout: float) -> TimeoutError:
    return TimeoutError(f"audit export {export_id} still running after {timeout}s")


class AuditAPI:
    """Audit API of the sync client. Reading needs ``read`` on ``sys/audit``."""

    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def logs(
        self,
        from_: When = None,
        to: When = None,
        *,
        identity: str | None = None,
        path: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditLogs:
        """One page (``limit`` 1..1000, default 100), oldest first; see ``iter_logs``."""
        return self._run(_logs(from_, to, identity, path, action, outcome, limit, cursor))

    def iter_pages(
        self,
        from_: When = None,
        to: When = None,
        *,
        identity: str | None = None,
        path: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditLogs]:
        cursor: str | None = None
        while True:
            page = self.logs(
                from_, to, identity=identity, path=path, action=action, outcome=outcome, limit=limit, cursor=cursor
            )
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def iter_logs(
        self,
        from_: When = None,
        to: When = None,
        *,
        identity: str | None = None,
        path: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditRecord]:
        """Every matching record, fetching pages of ``limit`` as the loop goes."""
        for page in self.iter_pages(
            from_, to, identity=identity, path=path, action=action, outcome=outcome, limit=limit
        ):
            yield from page.logs

    def for_secret(self, path: str, from_: When = None, to: When = None) -> AuditLogs:
        """Who touched ``path`` (every action and outcome; up to 1000 records from ``from_``)."""
        return self._run(_for_secret(path, from_, to))

    def for_identity(self, identity: str, from_: When = None, to: When = None) -> IdentityActivity:
        """What ``identity`` did, with ``.summary`` (``resources_accessed``, ``by_action``...)."""
        return self._run(_for_identity(identity, from_, to))

    def verify(self, from_: When = None, to: When = None) -> VerifyResult:
        """Re-check the hash chain over a range (the whole log by default)."""
        return self._run(_verify(from_, to))

    def hmac(self, input: str) -> str:
        """The HMAC of ``input`` as records show it (``accessor_hmac`` of a token accessor)."""
        return self._run(_hmac(input)).hmac

    def export(
        self, from_: When, to: When, destination: Mapping[str, Any], format: str = "jsonl"
    ) -> ExportJob:
        """Start an export job of ``[from_, to]``; follow it with ``wait_for_export``.

        ``destination``: ``{"type": "s3", "bucket", "prefix", "credentials_path"}`` or
        ``{"type": "file", "path"}`` (under the server's ``--audit-export-dir``).
        """
        return self._run(_export(from_, to, format, destination))

    def export_status(self, export_id: str) -> ExportJob:
        return self._run(_export_status(export_id))

    def wait_for_export(self, export_id: str, timeout: float = 300.0) -> ExportJob:
        """Poll until the job completes and return it.

        Raises ``ExportFailedError`` (with ``.job``) when it failed, ``TimeoutError``
        when it is still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        delay = _POLL_FIRST
        while True:
            done = _finished(self.export_status(export_id))
            if done is not None:
                return done
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timed_out(export_id, timeout)
            time.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX)


class AsyncAuditAPI:
    """Audit API of the async client; same methods as ``AuditAPI``, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def logs(
        self,
        from_: When = None,
        to: When = None,
        *,
        identity: str | None = None,
        path: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditLogs:
        return await self._run(_logs(from_, to, identity, path, action, outcome, limit, cursor))

    async def iter_pages(
        self,
        from_: When = None,
        to: When = None,
        *,
        identity: str | None = None,
        path: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[AuditLogs]:
        cursor: str | None = None
        while True:
            page = await self.logs(
                from_, to, identity=identity, path=path, action=action, outcome=outcome, limit=limit, cursor=cursor
            )
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def iter_logs(
        self,
        from_: When = None,
        to: When = None,
        *,
        identity: str | None = None,
        path: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[AuditRecord]:
        async for page in self.iter_pages(
            from_, to, identity=identity, path=path, action=action, outcome=outcome, limit=limit
        ):
            for record in page.logs:
                yield record

    async def for_secret(self, path: str, from_: When = None, to: When = None) -> AuditLogs:
        return await self._run(_for_secret(path, from_, to))

    async def for_identity(self, identity: str, from_: When = None, to: When = None) -> IdentityActivity:
        return await self._run(_for_identity(identity, from_, to))

    async def verify(self, from_: When = None, to: When = None) -> VerifyResult:
        return await self._run(_verify(from_, to))

    async def hmac(self, input: str) -> str:
        return (await self._run(_hmac(input))).hmac

    async def export(
        self, from_: When, to: When, destination: Mapping[str, Any], format: str = "jsonl"
    ) -> ExportJob:
        return await self._run(_export(from_, to, format, destination))

    async def export_status(self, export_id: str) -> ExportJob:
        return await self._run(_export_status(export_id))

    async def wait_for_export(self, export_id: str, timeout: float = 300.0) -> ExportJob:
        deadline = time.monotonic() + timeout
        delay = _POLL_FIRST
        while True:
            done = _finished(await self.export_status(export_id))
            if done is not None:
                return done
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timed_out(export_id, timeout)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX)
