"""Typed views of the server's responses (see docs/api.md).

Field names are the wire names. Objects that hold secret material (``Secret.data``,
``CreatedToken.token``) keep it out of ``repr()``: a secret printed in a log line or a
traceback shows which keys it has, never what they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict


class WriteOptions(TypedDict, total=False):
    """``options`` of a write: ``expires_in`` ("1h"), ``cas`` (0 = create only), ``max_versions``."""

    expires_in: str
    cas: int
    max_versions: int


class MetadataUpdate(TypedDict, total=False):
    """Fields of a metadata update; each given one replaces the stored value."""

    tags: list[str]
    description: str


# --- secrets -----------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Secret:
    """One version of a secret, value included."""

    path: str
    version: int
    data: dict[str, Any]
    secret_type: str
    created_at: datetime
    created_by: str | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Secret(path={self.path!r}, version={self.version}, "
            f"secret_type={self.secret_type!r}, keys={sorted(self.data)!r})"
        )


@dataclass(frozen=True)
class WriteResult:
    path: str
    version: int
    created_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: datetime
    created_by: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class RotationStatus:
    status: str
    next_rotation_at: datetime | None = None
    last_rotated_at: datetime | None = None


@dataclass(frozen=True)
class SecretMetadata:
    """Everything about a secret except its value (``GET .../metadata``)."""

    path: str
    secret_type: str
    current_version: int
    version_count: int
    versions: list[VersionInfo]
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    max_versions: int | None = None
    rotation: RotationStatus | None = None
    deleted_at: datetime | None = None
    expires_at: datetime | None = None
    access_count_30d: int = 0


@dataclass(frozen=True)
class SecretListItem:
    """One row of a listing; the ``include_metadata`` fields are ``None`` without it."""

    path: str
    secret_type: str
    tags: list[str]
    current_version: int
    updated_at: datetime
    access_count_30d: int = 0
    description: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    version_count: int | None = None
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class SecretPage:
    """One page of ``secrets.list``; pass ``next_cursor`` back for the next (``None`` at the end)."""

    data: list[SecretListItem] = field(metadata={"wire": "secrets"})
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[SecretListItem]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class BatchError:
    code: str
    message: str


@dataclass(frozen=True)
class BatchReadResult:
    """Partial success: ``secrets`` for the paths read, ``errors`` for the others."""

    secrets: dict[str, Secret]
    errors: dict[str, BatchError] = field(default_factory=dict)


# --- auth ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """What ``whoami`` says about the calling token."""

    identity_id: str
    identity_type: str
    accessor: str
    policies: list[str]
    issued_at: datetime
    expires_at: datetime | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class CreatedToken:
    """A new token. ``token`` is shown once by the server and never in ``repr()``."""

    token: str = field(repr=False)
    accessor: str
    identity_id: str
    identity_type: str
    issued_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class TokenInfo:
    accessor: str
    identity_id: str
    identity_type: str
    issued_at: datetime
    expires_at: datetime | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class TokenList:
    tokens: list[TokenInfo]


# --- sys and health --------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    key_id: int
    created_at: datetime


@dataclass(frozen=True)
class KeyRing:
    active_key_id: int
    keys: list[KeyInfo]


@dataclass(frozen=True)
class Health:
    status: str
    version: str | None = None
    storage: str | None = None


@dataclass(frozen=True)
class ComponentHealth:
    status: str
    latency_ms: float | None = None
    message: str | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class HealthDetailed:
    status: str
    components: dict[str, ComponentHealth]
    version: str | None = None


# --- policies (server side not built yet: kept thin) --------------------------------------


@dataclass(frozen=True)
class PolicyRule:
    path_pattern: str
    permissions: list[str]
    effect: str | None = None


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    rules: list[PolicyRule]
    description: str | None = None


@dataclass(frozen=True)
class PolicyList:
    policies: list[Policy]


@dataclass(frozen=True)
class PolicyBinding:
    identity_type: str
    identity_id: str
    id: str | None = None
    policy_id: str | None = None


@dataclass(frozen=True)
class BindingList:
    bindings: list[PolicyBinding]


@dataclass(frozen=True)
class PolicyTestResult:
    allowed: bool
    matched: Any = None
    reason: str | None = None


# --- audit (server side not built yet: records stay plain dicts) -----------------------------


@dataclass(frozen=True)
class AuditLogs:
    logs: list[dict[str, Any]]
    next_cursor: str | None = None


@dataclass(frozen=True)
class IdentityActivity:
    """``logs`` of one identity plus the server's ``summary`` (``resources_accessed``...)."""

    logs: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
