"""Typed views of the server's responses (see docs/api.md).

Field names are the wire names. Objects that hold secret material (``Secret.data``,
``CreatedToken.token``) keep it out of ``repr()``: a secret printed in a log line or a
traceback shows which keys it has, never what they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict


class WriteOptions(TypedDict, total=False):
    """``options`` of a write: ``expires_in`` ("1h"), ``cas`` (0 = create only), ``max_versions``."""

    expires_in: str
    cas: int
    max_versions: int


class MetadataUpdate(TypedDict, total=False):
    """Fields of a metadata update; each given one replaces the stored value.

    ``rotation`` sets the rotation schedule (a ``RotationPolicy`` or its wire dict);
    ``None`` removes it.
    """

    tags: list[str]
    description: str
    rotation: RotationPolicy | Mapping[str, Any] | None


class S3Destination(TypedDict, total=False):
    """``audit.export`` to S3: objects ``<prefix>part-NNNNN.jsonl`` in ``bucket``.

    The server reads the credentials from the secret at ``credentials_path`` (fields
    ``access_key_id``, ``secret_access_key``, optional ``session_token``, ``endpoint``,
    ``region``); the caller needs read access to that secret.
    """

    type: str  # "s3"
    bucket: str
    prefix: str
    credentials_path: str
    region: str
    endpoint: str


class FileDestination(TypedDict):
    """``audit.export`` to a file under the server's ``--audit-export-dir``."""

    type: str  # "file"
    path: str


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
class RotationGenerator:
    """How ``generate`` makes a value: each of ``fields`` gets a new random string.

    ``fields`` defaults by secret type (``password``, ``api_key``, ``token``; other types
    must name them); ``length`` 8..4096 (default 32, the prefix excluded); ``charset``
    ``alphanumeric`` (default), ``symbols``, ``hex`` or ``base64url``; ``prefix`` (at most
    32 characters) goes before each value, like ``sk_live_``.
    """

    fields: list[str] | None = None
    length: int | None = None
    charset: str | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class RotationPolicy:
    """A secret's rotation schedule, as written and as metadata shows it.

    ``interval``: ``30d``, ``12h``... (1m to 3650d). ``strategy``: ``generate`` (the
    server writes a new version from ``generator``), ``external`` (the server signals
    ``rotation.due``; a write counts as the rotation) or ``manual`` (only ``rotate`` or a
    write). ``grace``: how long after ``next_rotation_at`` the secret becomes overdue
    (default ``24h``). ``rotate_at``: a UTC time of day, ``03:00``, for intervals of a day
    or more.
    """

    interval: str
    strategy: str
    generator: RotationGenerator | None = None
    grace: str | None = None
    rotate_at: str | None = None


@dataclass(frozen=True)
class RotationStatus:
    """Where a secret stands: ``status`` is ``not_configured``, ``scheduled``, ``due``
    (``next_rotation_at`` passed, within the grace) or ``overdue`` (past the grace too)."""

    status: str
    strategy: str | None = None
    interval: str | None = None
    next_rotation_at: datetime | None = None
    last_rotated_at: datetime | None = None
    is_overdue: bool = False
    policy: RotationPolicy | None = None


@dataclass(frozen=True)
class RotateResult:
    """What ``secrets.rotate`` did: ``outcome`` is ``rotated`` (a ``generate`` secret got
    ``version``) or ``requested`` (``rotation.requested`` was raised; ``version`` is the
    current one)."""

    path: str
    outcome: str
    version: int
    rotation: RotationStatus


@dataclass(frozen=True)
class DueSecret:
    """One entry of ``rotation.due``; ``strategy`` says who is expected to rotate it."""

    path: str
    next_rotation_at: datetime
    is_overdue: bool
    strategy: str
    last_rotated_at: datetime | None = None


@dataclass(frozen=True)
class DuePage:
    """One page of ``rotation.due``; pass ``next_cursor`` back for the next (``None`` at the end)."""

    secrets: list[DueSecret]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[DueSecret]:
        return iter(self.secrets)

    def __len__(self) -> int:
        return len(self.secrets)


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
    rotation: RotationStatus | None = None


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
    """One page; pass ``next_cursor`` back as ``cursor`` for the next (``None`` at the end)."""

    tokens: list[TokenInfo]
    next_cursor: str | None = None


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


# --- policies, bindings and identities ----------------------------------------------------


@dataclass(frozen=True)
class PolicyRule:
    """``path_pattern``: exact segments, ``*`` inside one segment, ``**`` across segments.

    ``permissions``: ``read``, ``write``, ``list``, ``delete``, ``rotate``, ``admin``
    (``admin`` implies the others). ``effect`` is ``allow`` or ``deny``; a deny wins.
    """

    path_pattern: str
    permissions: list[str]
    effect: str = "allow"


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    rules: list[PolicyRule]
    created_at: datetime
    updated_at: datetime
    description: str | None = None


@dataclass(frozen=True)
class PolicyList:
    """One page; pass ``next_cursor`` back as ``cursor`` for the next (``None`` at the end)."""

    policies: list[Policy]
    next_cursor: str | None = None


@dataclass(frozen=True)
class PolicyBinding:
    """A policy bound to an identity; bindings are keyed by ``(policy_id, identity_id)``."""

    policy_id: str
    identity_type: str
    identity_id: str
    created_at: datetime


@dataclass(frozen=True)
class BindingList:
    """One page; pass ``next_cursor`` back as ``cursor`` for the next (``None`` at the end)."""

    bindings: list[PolicyBinding]
    next_cursor: str | None = None


@dataclass(frozen=True)
class MatchedRule:
    """A rule that decided a policy test; ``policy_id`` is ``draft`` for an inline policy."""

    policy_id: str
    policy_name: str
    rule: PolicyRule


@dataclass(frozen=True)
class PolicyTestResult:
    """The answer of ``policies.test``: the decision, the rules behind it, and why."""

    allowed: bool
    matched: list[MatchedRule]
    reason: str


@dataclass(frozen=True)
class RegisteredIdentity:
    """An identity registered with ``identities.create`` and the names of its bound
    ``policies`` (as ``auth.whoami()`` shows them)."""

    id: str
    identity_type: str
    created_at: datetime
    display_name: str | None = None
    policies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IdentityList:
    """One page; pass ``next_cursor`` back as ``cursor`` for the next (``None`` at the end)."""

    identities: list[RegisteredIdentity]
    next_cursor: str | None = None


# --- audit -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecord:
    """One request as the audit log keeps it (hash-chained: ``prev_hash`` -> ``hash``).

    ``outcome`` is ``success``, ``denied``, ``unauthenticated``, ``failure`` or ``unknown``;
    ``action`` reads like ``secrets.read``; ``accessor_hmac`` is the HMAC of the token
    accessor used (see ``audit.hmac``). A mutation leaves a ``phase="request"`` record
    before its change and a ``phase="response"`` record (``request_seq`` links them);
    queries show the request record only when no response followed (outcome ``unknown``).
    """

    id: str
    seq: int
    timestamp: datetime
    request_id: str
    action: str
    outcome: str
    status: int
    prev_hash: str
    identity_id: str | None = None
    identity_type: str | None = None
    path: str | None = None
    permission: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    accessor_hmac: str | None = None
    phase: str | None = None
    request_seq: int | None = None
    hash: str = ""


@dataclass(frozen=True)
class AuditLogs:
    """One page of audit records, oldest first; ``next_cursor`` is ``None`` on the last page."""

    logs: list[AuditRecord]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[AuditRecord]:
        return iter(self.logs)

    def __len__(self) -> int:
        return len(self.logs)


@dataclass(frozen=True)
class IdentitySummary:
    total: int
    by_action: dict[str, int]
    resources_accessed: list[str]
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True)
class IdentityActivity:
    """Everything one identity did (up to 1000 records) and the server's ``summary``."""

    logs: list[AuditRecord]
    summary: IdentitySummary

    def __iter__(self) -> Iterator[AuditRecord]:
        return iter(self.logs)

    def __len__(self) -> int:
        return len(self.logs)


@dataclass(frozen=True)
class BrokenRecord:
    seq: int
    reason: str


@dataclass(frozen=True)
class AuditCheckpoint:
    """The newest signed checkpoint of the chain (Ed25519, hex ``public_key``/``signature``)."""

    seq: int
    hash: str
    keyed_from: int
    purged_seq: int
    purged_hash: str
    created_at: datetime
    public_key: str
    signature: str


@dataclass(frozen=True)
class VerifyResult:
    """Chain and checkpoint check of a range: ``verified`` or the ``first_broken`` record and why.

    ``keyed`` records are chained under a key the database does not hold;
    ``legacy_unkeyed`` ones predate keyed chaining.
    """

    verified: bool
    checked: int
    first_seq: int | None = None
    last_seq: int | None = None
    first_broken: BrokenRecord | None = None
    keyed: int = 0
    legacy_unkeyed: int = 0
    checkpoint: AuditCheckpoint | None = None


@dataclass(frozen=True)
class HmacResult:
    hmac: str


@dataclass(frozen=True)
class ExportedObject:
    """An S3 key or a file path, with how many records and bytes it holds."""

    location: str
    records: int
    bytes: int


@dataclass(frozen=True)
class ExportJob:
    """An audit export; ``status`` is ``running``, ``completed`` or ``failed`` (see ``error``)."""

    id: str
    status: str
    from_: datetime = field(metadata={"wire": "from"})
    to: datetime
    format: str
    destination: dict[str, Any]
    records_exported: int
    objects: list[ExportedObject]
    created_at: datetime
    error: str | None = None
    completed_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status != "running"


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something that happened to a secret or a policy; never a value.

    ``type`` is ``secret.created``, ``secret.updated``, ``rotation.due``, ... (see
    ``EVENT_TYPES``); ``id`` (``evt_<seq>``) is unique and stable; ``seq`` is the position
    in the change feed (``after=`` resumes from it). ``path`` names the secret,
    ``policy_id`` the policy of ``policy.changed``, ``webhook_id`` the webhook of
    ``webhook.*``; ``reason`` is a forced rotation's reason or a failure's cause.
    """

    id: str
    type: str
    time: datetime
    actor: str
    seq: int
    path: str | None = None
    policy_id: str | None = None
    webhook_id: str | None = None
    version: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class EventPage:
    """One page of ``events.list``, oldest first; pass ``last_seq`` as ``after`` for the next.

    ``last_seq`` moves on even when none of the page's events was visible to the caller.
    """

    events: list[Event]
    last_seq: int

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


#: The event types the server emits (``api/src/events.rs``).
EVENT_TYPES = (
    "secret.created",
    "secret.updated",
    "secret.metadata_updated",
    "secret.deleted",
    "secret.restored",
    "secret.expired",
    "secret.destroyed",
    "rotation.due",
    "rotation.overdue",
    "rotation.requested",
    "rotation.completed",
    "rotation.failed",
    "policy.changed",
    "webhook.exhausted",
    "webhook.disabled",
    "webhook.test",
)


# --- webhooks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookFilters:
    """Which events a webhook gets besides their types: ``path_prefix`` limits them to
    secrets under it (events without a path, ``policy.changed`` and ``webhook.*``, are
    then not sent)."""

    path_prefix: str | None = None


@dataclass(frozen=True)
class Webhook:
    """A webhook as the server shows it: never its signing secret.

    ``disabled_reason`` says why the server disabled it (every delivery failing for five
    days); ``failing_since`` is set while deliveries fail; ``secret_set_at`` is when the
    secret was last replaced.
    """

    id: str
    name: str
    url: str
    events: list[str]
    filters: WebhookFilters
    enabled: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    secret_set_at: datetime
    disabled_reason: str | None = None
    failing_since: datetime | None = None


@dataclass(frozen=True)
class WebhookList:
    webhooks: list[Webhook]


@dataclass(frozen=True)
class DeliveryAttempt:
    """One try: the receiver's ``status_code`` when it answered, else the ``error``."""

    at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one webhook. ``id`` is the ``webhook-id`` header, the same on
    every attempt; ``status`` is ``pending``, ``succeeded`` or ``failed`` (the schedule ran
    out); ``attempt_log`` holds the newest attempts, oldest first."""

    id: str
    webhook_id: str
    event: Event
    status: str
    attempts: int
    attempt_log: list[DeliveryAttempt]
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class DeliveryPage:
    """One page of deliveries, newest first; pass ``next_before`` as ``before`` for the next
    (older) one (``None`` on the last)."""

    deliveries: list[Delivery]
    next_before: int | None = None

    def __iter__(self) -> Iterator[Delivery]:
        return iter(self.deliveries)

    def __len__(self) -> int:
        return len(self.deliveries)


@dataclass(frozen=True)
class WebhookTestResult:
    """What ``webhooks.test`` saw: ``delivered`` when the endpoint answered 2xx."""

    delivered: bool
    attempt: DeliveryAttempt
