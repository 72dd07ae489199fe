"""``client.secrets``: versioned secrets (docs/api.md, "Secrets")."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._transport import AsyncTransport, Call, SyncTransport, no_content, query, secret_path
from ._wire import model
from .models import (
    BatchReadResult,
    MetadataUpdate,
    RotateResult,
    RotationPolicy,
    Secret,
    SecretListItem,
    SecretMetadata,
    SecretPage,
    VersionInfo,
    WriteOptions,
    WriteResult,
)

# The server reads at most this many paths in one batch; longer lists are split.
BATCH_READ_MAX_PATHS = 100


@dataclass(frozen=True)
class _VersionList:
    versions: list[VersionInfo]


# Inside the API classes `list` names the method, so annotations use this alias.
VersionInfos = list[VersionInfo]

Schedule = RotationPolicy | Mapping[str, Any]


class _Keep(enum.Enum):
    KEEP = "keep"


#: ``update_metadata(rotation=...)`` left out: the schedule stays as it is.
KEEP: Final = _Keep.KEEP


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def rotation_body(policy: Schedule | None) -> dict[str, Any] | None:
    """The wire form of a schedule: a ``RotationPolicy`` without its unset fields, or the dict."""
    if policy is None:
        return None
    if isinstance(policy, RotationPolicy):
        body: dict[str, Any] = _without_none(dataclasses.asdict(policy))
        return body
    return dict(policy)


def _metadata_body(metadata: MetadataUpdate | Mapping[str, Any] | None, rotation: Schedule | None | _Keep) -> dict[str, Any]:
    body: dict[str, Any] = dict(metadata) if metadata is not None else {}
    if rotation is not KEEP:
        body["rotation"] = rotation
    if "rotation" in body:
        # `null` removes the schedule; absent keeps it.
        body["rotation"] = rotation_body(body["rotation"])
    return body


def _url(path: str, action: str = "") -> str:
    return f"/v1/secrets/{secret_path(path)}" + (f"/{action}" if action else "")


def _read(path: str, version: int | None) -> Call[Secret]:
    return Call("GET", _url(path), model(Secret), params=query(version=version))


def _read_metadata(path: str) -> Call[SecretMetadata]:
    return Call("GET", _url(path, "metadata"), model(SecretMetadata))


def _write(
    path: str,
    data: Mapping[str, Any],
    secret_type: str | None,
    options: WriteOptions | Mapping[str, Any] | None,
    metadata: MetadataUpdate | Mapping[str, Any] | None,
) -> Call[WriteResult]:
    body: dict[str, Any] = {"data": dict(data)}
    if secret_type is not None:
        body["secret_type"] = secret_type
    if metadata is not None:
        body["metadata"] = _metadata_body(metadata, KEEP)
    if options is not None:
        body["options"] = dict(options)
    # Each write adds a version: a retry is safe only because it carries the call's
    # Idempotency-Key, which the server applies once.
    return Call("PUT", _url(path), model(WriteResult), json=body)


def _update_metadata(
    path: str, metadata: MetadataUpdate | Mapping[str, Any] | None, rotation: Schedule | None | _Keep = KEEP
) -> Call[SecretMetadata]:
    body = _metadata_body(metadata, rotation)
    return Call("PATCH", _url(path, "metadata"), model(SecretMetadata), json=body)


def _list(
    prefix: str | None,
    limit: int | None,
    cursor: str | None,
    include_metadata: bool,
    include_deleted: bool,
) -> Call[SecretPage]:
    params = query(
        prefix=prefix,
        limit=limit,
        cursor=cursor,
        include_metadata=include_metadata or None,
        include_deleted=include_deleted or None,
    )
    return Call("GET", "/v1/secrets", model(SecretPage), params=params)


def _batch_read(paths: list[str]) -> Call[BatchReadResult]:
    return Call("POST", "/v1/batch/read", model(BatchReadResult), json={"paths": paths}, read_only=True)


def _delete(path: str, destroy: bool) -> Call[None]:
    return Call("DELETE", _url(path), no_content, params=query(destroy=destroy or None))


def _restore(path: str) -> Call[SecretMetadata]:
    return Call("POST", _url(path, "restore"), model(SecretMetadata))


def _versions(path: str) -> Call[_VersionList]:
    return Call("GET", _url(path, "versions"), model(_VersionList))


def _rotate(path: str, reason: str | None) -> Call[RotateResult]:
    body = {"reason": reason} if reason is not None else {}
    # Keyed like every mutation: a retry after a lost answer never rotates twice.
    return Call("POST", _url(path, "rotate"), model(RotateResult), json=body)


def _chunks(paths: Iterable[str]) -> list[list[str]]:
    items = list(paths)
    return [items[i : i + BATCH_READ_MAX_PATHS] for i in range(0, len(items), BATCH_READ_MAX_PATHS)]


def _merge(results: list[BatchReadResult]) -> BatchReadResult:
    if len(results) == 1:
        return results[0]
    # No paths means no request at all; several chunks merge into one result.
    merged = BatchReadResult(secrets={}, errors={})
    for result in results:
        merged.secrets.update(result.secrets)
        merged.errors.update(result.errors)
    return merged


class Secrets:
    """Secrets API of the sync client."""

    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def read(self, path: str, version: int | None = None) -> Secret:
        """The current version of ``path``, or ``version``. 404 for expired or deleted secrets."""
        return self._run(_read(path, version))

    def read_metadata(self, path: str) -> SecretMetadata:
        """Versions, tags, rotation status: everything but the value."""
        return self._run(_read_metadata(path))

    def write(
        self,
        path: str,
        data: Mapping[str, Any],
        secret_type: str | None = None,
        options: WriteOptions | Mapping[str, Any] | None = None,
        metadata: MetadataUpdate | Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Write a new version. ``options``: ``expires_in``, ``cas``, ``max_versions``.

        ``metadata``: ``tags``, ``description``, and ``rotation`` (a ``RotationPolicy`` or its
        dict: ``{"interval": "30d", "strategy": "generate", "generator": {...}}``).
        """
        return self._run(_write(path, data, secret_type, options, metadata))

    def update_metadata(
        self,
        path: str,
        metadata: MetadataUpdate | Mapping[str, Any] | None = None,
        *,
        rotation: Schedule | None | _Keep = KEEP,
    ) -> SecretMetadata:
        """Replace the given metadata fields (``tags``, ``description``); the value is untouched.

        ``rotation=RotationPolicy(...)`` (or its dict) sets the rotation schedule,
        ``rotation=None`` removes it; left out, the schedule stays.
        """
        return self._run(_update_metadata(path, metadata, rotation))

    def list(
        self,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        include_metadata: bool = False,
        include_deleted: bool = False,
    ) -> SecretPage:
        """One page of secrets sorted by path; see ``iter_all`` for every page."""
        return self._run(_list(prefix, limit, cursor, include_metadata, include_deleted))

    def iter_pages(
        self,
        prefix: str | None = None,
        limit: int | None = None,
        include_metadata: bool = False,
        include_deleted: bool = False,
    ) -> Iterator[SecretPage]:
        cursor: str | None = None
        while True:
            page = self.list(prefix, limit, cursor, include_metadata, include_deleted)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def iter_all(
        self,
        prefix: str | None = None,
        limit: int | None = None,
        include_metadata: bool = False,
        include_deleted: bool = False,
    ) -> Iterator[SecretListItem]:
        """Every secret under ``prefix``, fetching pages of ``limit`` as the loop goes."""
        for page in self.iter_pages(prefix, limit, include_metadata, include_deleted):
            yield from page.data

    def batch_read(self, paths: Iterable[str]) -> BatchReadResult:
        """Read many paths; failures land in ``.errors`` instead of raising."""
        return _merge([self._run(_batch_read(chunk)) for chunk in _chunks(paths)])

    def delete(self, path: str, destroy: bool = False) -> None:
        """Soft delete (restorable), or with ``destroy=True`` erase every version for good."""
        self._run(_delete(path, destroy))

    def restore(self, path: str) -> SecretMetadata:
        """Undo a soft delete."""
        return self._run(_restore(path))

    def versions(self, path: str) -> VersionInfos:
        return self._run(_versions(path)).versions

    def rotate(self, path: str, reason: str | None = None) -> RotateResult:
        """Rotate now: a ``generate`` secret gets a new version (``outcome == "rotated"``),
        an ``external`` or ``manual`` one raises ``rotation.requested`` (``"requested"``).

        ``reason`` (at most 512 characters) goes to the audit record and the event. A
        secret without a schedule raises ``ConflictError`` (``rotation_not_configured``).
        """
        return self._run(_rotate(path, reason))


class AsyncSecrets:
    """Secrets API of the async client; same methods as ``Secrets``, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def read(self, path: str, version: int | None = None) -> Secret:
        return await self._run(_read(path, version))

    async def read_metadata(self, path: str) -> SecretMetadata:
        return await self._run(_read_metadata(path))

    async def write(
        self,
        path: str,
        data: Mapping[str, Any],
        secret_type: str | None = None,
        options: WriteOptions | Mapping[str, Any] | None = None,
        metadata: MetadataUpdate | Mapping[str, Any] | None = None,
    ) -> WriteResult:
        return await self._run(_write(path, data, secret_type, options, metadata))

    async def update_metadata(
        self,
        path: str,
        metadata: MetadataUpdate | Mapping[str, Any] | None = None,
        *,
        rotation: Schedule | None | _Keep = KEEP,
    ) -> SecretMetadata:
        return await self._run(_update_metadata(path, metadata, rotation))

    async def list(
        self,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        include_metadata: bool = False,
        include_deleted: bool = False,
    ) -> SecretPage:
        return await self._run(_list(prefix, limit, cursor, include_metadata, include_deleted))

    async def iter_pages(
        self,
        prefix: str | None = None,
        limit: int | None = None,
        include_metadata: bool = False,
        include_deleted: bool = False,
    ) -> AsyncIterator[SecretPage]:
        cursor: str | None = None
        while True:
            page = await self.list(prefix, limit, cursor, include_metadata, include_deleted)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def iter_all(
        self,
        prefix: str | None = None,
        limit: int | None = None,
        include_metadata: bool = False,
        include_deleted: bool = False,
    ) -> AsyncIterator[SecretListItem]:
        async for page in self.iter_pages(prefix, limit, include_metadata, include_deleted):
            for item in page.data:
                yield item

    async def batch_read(self, paths: Iterable[str]) -> BatchReadResult:
        return _merge([await self._run(_batch_read(chunk)) for chunk in _chunks(paths)])

    async def delete(self, path: str, destroy: bool = False) -> None:
        await self._run(_delete(path, destroy))

    async def restore(self, path: str) -> SecretMetadata:
        return await self._run(_restore(path))

    async def versions(self, path: str) -> VersionInfos:
        return (await self._run(_versions(path))).versions

    async def rotate(self, path: str, reason: str | None = None) -> RotateResult:
        return await self._run(_rotate(path, reason))
