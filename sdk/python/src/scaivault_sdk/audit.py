"""``client.audit``: the audit log (server side arrives with the audit feature).

Records stay plain dicts until the server's record schema is settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ._transport import AsyncTransport, Call, SyncTransport, query, secret_path, segment
from ._wire import json_object, model
from .models import AuditLogs, IdentityActivity

When = datetime | str | None


def _time(value: When) -> str | None:
    """RFC 3339 in UTC for datetimes; strings (``2026-01-01``) go as given."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def _logs(
    from_: When, to: When, identity_id: str | None, path: str | None, limit: int | None, cursor: str | None
) -> Call[AuditLogs]:
    params = query(
        from_=_time(from_), to=_time(to), identity_id=identity_id, path=path, limit=limit, cursor=cursor
    )
    return Call("GET", "/v1/audit/logs", model(AuditLogs), params=params)


def _for_secret(path: str, from_: When, to: When) -> Call[AuditLogs]:
    params = query(from_=_time(from_), to=_time(to))
    return Call("GET", f"/v1/audit/secrets/{secret_path(path)}", model(AuditLogs), params=params)


def _for_identity(identity_id: str, from_: When, to: When) -> Call[IdentityActivity]:
    params = query(from_=_time(from_), to=_time(to))
    return Call("GET", f"/v1/audit/identities/{segment(identity_id)}", model(IdentityActivity), params=params)


def _export(from_: When, to: When, format: str, destination: Mapping[str, Any]) -> Call[dict[str, Any]]:
    body = {"from": _time(from_), "to": _time(to), "format": format, "destination": dict(destination)}
    return Call("POST", "/v1/audit/export", json_object, json=body)


def _export_status(export_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/audit/exports/{segment(export_id)}", json_object)


def _verify() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/audit/verify", json_object)


class AuditAPI:
    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def logs(
        self,
        from_: When = None,
        to: When = None,
        identity_id: str | None = None,
        path: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditLogs:
        return self._run(_logs(from_, to, identity_id, path, limit, cursor))

    def for_secret(self, path: str, from_: When = None, to: When = None) -> AuditLogs:
        """Who touched ``path`` (``from_`` is the wire's ``from``, a Python keyword)."""
        return self._run(_for_secret(path, from_, to))

    def for_identity(self, identity_id: str, from_: When = None, to: When = None) -> IdentityActivity:
        return self._run(_for_identity(identity_id, from_, to))

    def export(
        self, from_: When, to: When, destination: Mapping[str, Any], format: str = "jsonl"
    ) -> dict[str, Any]:
        return self._run(_export(from_, to, format, destination))

    def export_status(self, export_id: str) -> dict[str, Any]:
        return self._run(_export_status(export_id))

    def verify(self) -> dict[str, Any]:
        """Check the hash chain of the log."""
        return self._run(_verify())


class AsyncAuditAPI:
    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def logs(
        self,
        from_: When = None,
        to: When = None,
        identity_id: str | None = None,
        path: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditLogs:
        return await self._run(_logs(from_, to, identity_id, path, limit, cursor))

    async def for_secret(self, path: str, from_: When = None, to: When = None) -> AuditLogs:
        return await self._run(_for_secret(path, from_, to))

    async def for_identity(self, identity_id: str, from_: When = None, to: When = None) -> IdentityActivity:
        return await self._run(_for_identity(identity_id, from_, to))

    async def export(
        self, from_: When, to: When, destination: Mapping[str, Any], format: str = "jsonl"
    ) -> dict[str, Any]:
        return await self._run(_export(from_, to, format, destination))

    async def export_status(self, export_id: str) -> dict[str, Any]:
        return await self._run(_export_status(export_id))

    async def verify(self) -> dict[str, Any]:
        return await self._run(_verify())
