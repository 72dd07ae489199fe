"""``client.webhooks``: events pushed to an endpoint, and checking them where they arrive.

A webhook POSTs each event it subscribes to as ``{"type", "timestamp", "data": <event>}``,
signed the Standard Webhooks way (docs/webhooks.md): headers ``webhook-id`` (``msg_...``,
the same on every attempt: deduplicate on it), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, several
space-separated while a replaced secret still signs). The caller brings the signing
secret (``generate_secret()`` makes one); the server never shows it again.

On the receiving side::

    from scaivault_sdk.webhooks import verify, WebhookVerificationError

    payload = verify(secret, request.headers, request.body)   # raises when forged or stale
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets as _random
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from ._transport import AsyncTransport, Call, SyncTransport, no_content, query, segment
from ._wire import model
from .errors import ScaiVaultError
from .models import Delivery, DeliveryPage, Webhook, WebhookFilters, WebhookList, WebhookTestResult

__all__ = [
    "SECRET_PREFIX",
    "DEFAULT_TOLERANCE",
    "WebhookVerificationError",
    "generate_secret",
    "sign",
    "verify",
    "WebhooksAPI",
    "AsyncWebhooksAPI",
]

#: A signing secret is this prefix and the base64 of 24 to 64 random bytes.
SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
#: Bytes of key in the secrets ``generate_secret`` makes.
GENERATED_SECRET_BYTES = 32
#: How far (seconds) a delivery's timestamp may be from now before it counts as a replay.
DEFAULT_TOLERANCE = 300
#: Largest page of ``deliveries``; the default is 50.
MAX_DELIVERIES_PAGE = 1000

Events = Iterable[str]
Filters = WebhookFilters | Mapping[str, Any]
Webhooks = list[Webhook]


# --- signatures ----------------------------------------------------------------------------


class WebhookVerificationError(ScaiVaultError):
    """A delivery that must not be trusted: ``code`` is ``invalid_secret``,
    ``missing_header``, ``invalid_timestamp``, ``stale_timestamp``, ``no_signature`` or
    ``invalid_signature``. The message never quotes the secret or a signature."""


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookVerificationError(f"the webhook secret must start with {SECRET_PREFIX}", code="invalid_secret")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError(
            f"the part of the webhook secret after {SECRET_PREFIX} must be base64", code="invalid_secret"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise WebhookVerificationError(
            f"the webhook secret must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes", code="invalid_secret"
        )
    return key


def generate_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 bytes from ``secrets``."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(GENERATED_SECRET_BYTES)).decode()


def _body_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def sign(secret: str, message_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``webhook-signature`` value the server sends for this message (one ``v1,``
    entry): for a receiver's own tests."""
    mac = hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + _body_bytes(body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    # Header names are case-insensitive; a plain dict may spell them either way.
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    raise WebhookVerificationError(f"the {name} header is missing", code="missing_header")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery as received and return its JSON payload.

    ``body`` is the raw request body, before any JSON parsing (re-encoding changes the
    bytes). Raises ``WebhookVerificationError`` unless ``webhook-timestamp`` is within
    ``tolerance`` seconds of ``now`` (default: the current time) and one ``v1`` entry of
    ``webhook-signature`` is the HMAC under ``secret`` (compared in constant time).
    """
    key = _key(secret)
    message_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp").strip()
    signature = _header(headers, "webhook-signature")
    if not message_id:
        raise WebhookVerificationError("the webhook-id header is empty", code="missing_header")
    try:
        signed_at = int(stamp)
    except ValueError:
        raise WebhookVerificationError(
            "the webhook-timestamp header is not Unix seconds", code="invalid_timestamp"
        ) from None
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance:
        raise WebhookVerificationError(
            f"the webhook-timestamp is {abs(int(current) - signed_at)} s from now, beyond {tolerance} s",
            code="stale_timestamp",
        )
    raw = _body_bytes(body)
    expected = hmac.new(key, f"{message_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    entries = [e[3:] for e in signature.split() if e.startswith("v1,")]
    if not entries:
        raise WebhookVerificationError("the webhook-signature header holds no v1 signature", code="no_signature")
    for entry in entries:
        try:
            given = base64.b64decode(entry, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(given, expected):
            payload: dict[str, Any] = json.loads(raw)
            return payload
    raise WebhookVerificationError("no webhook signature matches the payload", code="invalid_signature")


# --- the API -------------------------------------------------------------------------------


class _SecretBody(dict[str, Any]):
    """A request body holding a signing secret: its repr (in a ``Call``, a traceback's
    locals, a debugger) leaves the secret out."""

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k == "secret" else v) for k, v in self.items()}
        return f"{shown!r}"


def _filters(filters: Filters | None) -> dict[str, Any] | None:
    if filters is None:
        return None
    if isinstance(filters, WebhookFilters):
        return {"path_prefix": filters.path_prefix} if filters.path_prefix is not None else {}
    return dict(filters)


def _events(events: Events) -> list[str]:
    return [events] if isinstance(events, str) else list(events)


def _url(webhook_id: str, rest: str = "") -> str:
    return f"/v1/webhooks/{segment(webhook_id)}{rest}"


def _create(
    name: str,
    url: str,
    secret: str,
    events: Events,
    filters: Filters | None,
    enabled: bool | None,
) -> Call[Webhook]:
    body = _SecretBody(name=name, url=url, secret=secret, events=_events(events))
    if (f := _filters(filters)) is not None:
        body["filters"] = f
    if enabled is not None:
        body["enabled"] = enabled
    return Call("POST", "/v1/webhooks", model(Webhook), json=body)


def _list() -> Call[WebhookList]:
    return Call("GET", "/v1/webhooks", model(WebhookList))


def _get(webhook_id: str) -> Call[Webhook]:
    return Call("GET", _url(webhook_id), model(Webhook))


def _update(
    webhook_id: str,
    name: str | None = None,
    url: str | None = None,
    secret: str | None = None,
    events: Events | None = None,
    filters: Filters | None = None,
    enabled: bool | None = None,
) -> Call[Webhook]:
    body = _SecretBody()
    for key, value in (("name", name), ("url", url), ("secret", secret), ("enabled", enabled)):
        if value is not None:
            body[key] = value
    if events is not None:
        body["events"] = _events(events)
    if (f := _filters(filters)) is not None:
        body["filters"] = f
    return Call("PATCH", _url(webhook_id), model(Webhook), json=body)


def _delete(webhook_id: str) -> Call[None]:
    return Call("DELETE", _url(webhook_id), no_content)


def _test(webhook_id: str) -> Call[WebhookTestResult]:
    return Call("POST", _url(webhook_id, "/test"), model(WebhookTestResult))


def _deliveries(webhook_id: str, status: str | None, before: int | None, limit: int | None) -> Call[DeliveryPage]:
    params = query(status=status, before=before, limit=limit)
    return Call("GET", _url(webhook_id, "/deliveries"), model(DeliveryPage), params=params)


def _retry(webhook_id: str, delivery_id: str) -> Call[Delivery]:
    return Call("POST", _url(webhook_id, f"/deliveries/{segment(delivery_id)}/retry"), model(Delivery))


def _next_before(page: DeliveryPage, before: int | None) -> int | None:
    nxt = page.next_before
    if nxt is not None and nxt == before:
        # A server handing back the same position would make us loop forever.
        raise RuntimeError("the server returned the same next_before twice")
    return nxt


class WebhooksAPI:
    """Webhooks API of the sync client: ``admin`` on ``sys/webhooks`` to change them,
    ``read`` to look at them and their deliveries."""

    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def create(
        self,
        name: str,
        url: str,
        secret: str,
        events: Events,
        filters: Filters | None = None,
        enabled: bool | None = None,
    ) -> Webhook:
        """A new webhook, sent the chosen ``events`` from now on (about paths its creator
        may list). ``secret``: ``whsec_...`` (``generate_secret()``), never returned.
        ``filters``: ``{"path_prefix": "environments/production/"}`` or ``WebhookFilters``.
        ``ValidationError`` for a URL the server may not reach, a bad secret or events;
        ``ConflictError`` when the name is taken or 100 webhooks exist."""
        return self._run(_create(name, url, secret, events, filters, enabled))

    def list(self) -> Webhooks:
        """Every webhook, by name (at most 100 exist)."""
        return self._run(_list()).webhooks

    def get(self, webhook_id: str) -> Webhook:
        return self._run(_get(webhook_id))

    def update(
        self,
        webhook_id: str,
        *,
        name: str | None = None,
        url: str | None = None,
        secret: str | None = None,
        events: Events | None = None,
        filters: Filters | None = None,
        enabled: bool | None = None,
    ) -> Webhook:
        """Change what is given; the rest stays. A new ``secret`` signs from now on and the
        old one keeps signing too for 24 h; ``enabled=True`` re-enables a webhook the
        server disabled; ``filters={}`` removes the path filter."""
        return self._run(_update(webhook_id, name, url, secret, events, filters, enabled))

    def delete(self, webhook_id: str) -> None:
        """Delete a webhook and its delivery history."""
        self._run(_delete(webhook_id))

    def test(self, webhook_id: str) -> WebhookTestResult:
        """Send one signed ``webhook.test`` event now; ``.delivered`` when it answered 2xx."""
        return self._run(_test(webhook_id))

    def deliveries(
        self, webhook_id: str, status: str | None = None, before: int | None = None, limit: int | None = None
    ) -> DeliveryPage:
        """One page of deliveries, newest first. ``status``: ``pending``, ``succeeded`` or
        ``failed``; ``before``: ``next_before`` of the previous page; ``limit`` 1..1000
        (default 50)."""
        return self._run(_deliveries(webhook_id, status, before, limit))

    def iter_deliveries(
        self, webhook_id: str, status: str | None = None, limit: int | None = None
    ) -> Iterator[Delivery]:
        """Every delivery, newest first, a page at a time."""
        before: int | None = None
        while True:
            page = self.deliveries(webhook_id, status, before, limit)
            yield from page.deliveries
            before = _next_before(page, before)
            if before is None:
                return

    def retry(self, webhook_id: str, delivery_id: str) -> Delivery:
        """Make a pending or failed delivery due now (it goes out in its turn);
        ``ConflictError`` when it succeeded."""
        return self._run(_retry(webhook_id, delivery_id))


class AsyncWebhooksAPI:
    """Webhooks API of the async client; same methods as ``WebhooksAPI``, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def create(
        self,
        name: str,
        url: str,
        secret: str,
        events: Events,
        filters: Filters | None = None,
        enabled: bool | None = None,
    ) -> Webhook:
        return await self._run(_create(name, url, secret, events, filters, enabled))

    async def list(self) -> Webhooks:
        return (await self._run(_list())).webhooks

    async def get(self, webhook_id: str) -> Webhook:
        return await self._run(_get(webhook_id))

    async def update(
        self,
        webhook_id: str,
        *,
        name: str | None = None,
        url: str | None = None,
        secret: str | None = None,
        events: Events | None = None,
        filters: Filters | None = None,
        enabled: bool | None = None,
    ) -> Webhook:
        return await self._run(_update(webhook_id, name, url, secret, events, filters, enabled))

    async def delete(self, webhook_id: str) -> None:
        await self._run(_delete(webhook_id))

    async def test(self, webhook_id: str) -> WebhookTestResult:
        return await self._run(_test(webhook_id))

    async def deliveries(
        self, webhook_id: str, status: str | None = None, before: int | None = None, limit: int | None = None
    ) -> DeliveryPage:
        return await self._run(_deliveries(webhook_id, status, before, limit))

    async def iter_deliveries(
        self, webhook_id: str, status: str | None = None, limit: int | None = None
    ) -> AsyncIterator[Delivery]:
        before: int | None = None
        while True:
            page = await self.deliveries(webhook_id, status, before, limit)
            for delivery in page.deliveries:
                yield delivery
            before = _next_before(page, before)
            if before is None:
                return

    async def retry(self, webhook_id: str, delivery_id: str) -> Delivery:
        return await self._run(_retry(webhook_id, delivery_id))
