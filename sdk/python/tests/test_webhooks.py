"""Webhooks against the real server, with a loopback receiver (allowed in dev mode), and
the verification snippet of docs/webhooks.md run against what the receiver got."""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from scaivault_sdk import (
    EVENT_TYPES,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ScaiVaultClient,
    SyncScaiVaultClient,
    ValidationError,
    WebhookFilters,
    WebhookVerificationError,
)
from scaivault_sdk import webhooks
from scaivault_sdk.testing import DevServer

DOC = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"

# The Standard Webhooks specification's example (standard-webhooks/standard-webhooks).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _spec_headers(signature: str = SPEC_SIGNATURE, timestamp: int = SPEC_TIMESTAMP) -> dict[str, str]:
    return {"webhook-id": SPEC_ID, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def doc_verifier() -> Callable[..., Any]:
    """``verify_webhook`` as docs/webhooks.md shows it, between its markers."""
    text = DOC.read_text()
    block = text.split("<!-- verify-snippet:start -->", 1)[1].split("<!-- verify-snippet:end -->", 1)[0]
    code = re.search(r"```python\n(.*?)```", block, re.DOTALL)
    assert code, "docs/webhooks.md has no python block between the verify-snippet markers"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)
    verifier: Callable[..., Any] = namespace["verify_webhook"]
    return verifier


# --- a receiver -------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A loopback HTTP server answering every POST with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.got: queue.Queue[Received] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.got.put(Received({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def next(self, timeout: float = 30) -> Received:
        return self.got.get(timeout=timeout)

    def next_of(self, type_: str, timeout: float = 30) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            got = self.next(max(0.1, deadline - time.monotonic()))
            if got.json()["type"] == type_:
                return got

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def failing_receiver() -> Iterator[Receiver]:
    r = Receiver(status=503)
    yield r
    r.close()


def _eventually(probe: Callable[[], Any], timeout: float = 30) -> Any:
    """``probe()`` once it is truthy (the server records an outcome just after sending)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _name() -> str:
    return f"hook-{time.monotonic_ns()}"


# --- signatures, without a server --------------------------------------------------------------


def test_the_specification_example_verifies_with_the_sdk_and_the_doc_snippet() -> None:
    assert webhooks.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert webhooks.verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP) == {"test": 2432232314}
    # Any one of several entries will do (a replaced secret signs too for 24 h).
    two = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + SPEC_SIGNATURE
    assert webhooks.verify(SPEC_SECRET, _spec_headers(two), SPEC_BODY.decode(), now=SPEC_TIMESTAMP + 299)
    # The snippet checks against the current time: sign a fresh message the same way.
    now = int(time.time())
    signed = webhooks.sign(SPEC_SECRET, SPEC_ID, now, SPEC_BODY)
    assert doc_verifier()(SPEC_SECRET, _spec_headers(signed, now), SPEC_BODY) == {"test": 2432232314}


@pytest.mark.parametrize(
    ("secret", "headers", "body", "now", "code"),
    [
        (SPEC_SECRET, _spec_headers(), b'{"test": 2432232315}', SPEC_TIMESTAMP, "invalid_signature"),
        ("whsec_" + "A" * 32, _spec_headers(), SPEC_BODY, SPEC_TIMESTAMP, "invalid_signature"),
        (SPEC_SECRET, _spec_headers("v1,not-base64!"), SPEC_BODY, SPEC_TIMESTAMP, "invalid_signature"),
        (SPEC_SECRET, _spec_headers("v2," + SPEC_SIGNATURE[3:]), SPEC_BODY, SPEC_TIMESTAMP, "no_signature"),
        (SPEC_SECRET, _spec_headers(), SPEC_BODY, SPEC_TIMESTAMP + 301, "stale_timestamp"),
        (SPEC_SECRET, _spec_headers(), SPEC_BODY, SPEC_TIMESTAMP - 3600, "stale_timestamp"),
        (SPEC_SECRET, {**_spec_headers(), "webhook-timestamp": "soon"}, SPEC_BODY, SPEC_TIMESTAMP, "invalid_timestamp"),
        (SPEC_SECRET, {"webhook-id": SPEC_ID}, SPEC_BODY, SPEC_TIMESTAMP, "missing_header"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", _spec_headers(), SPEC_BODY, SPEC_TIMESTAMP, "invalid_secret"),
        ("whsec_c2hvcnQ=", _spec_headers(), SPEC_BODY, SPEC_TIMESTAMP, "invalid_secret"),
    ],
)
def test_forged_stale_and_malformed_deliveries_are_refused(
    secret: str, headers: dict[str, str], body: bytes, now: int, code: str
) -> None:
    with pytest.raises(WebhookVerificationError) as caught:
        webhooks.verify(secret, headers, body, now=now)
    assert caught.value.code == code
    assert secret.removeprefix("whsec_") not in str(caught.value)


def test_the_doc_snippet_refuses_forgeries_and_replays() -> None:
    verify_webhook = doc_verifier()
    now = int(time.time())
    signed = webhooks.sign(SPEC_SECRET, SPEC_ID, now, SPEC_BODY)
    for headers, body in [
        (_spec_headers(signed, now), b'{"test": 1}'),
        (_spec_headers(webhooks.sign("whsec_" + "A" * 32, SPEC_ID, now, SPEC_BODY), now), SPEC_BODY),
        (_spec_headers(webhooks.sign(SPEC_SECRET, SPEC_ID, now - 600, SPEC_BODY), now - 600), SPEC_BODY),
        ({"webhook-id": SPEC_ID, "webhook-signature": signed}, SPEC_BODY),
    ]:
        with pytest.raises(ValueError):
            verify_webhook(SPEC_SECRET, headers, body)


def test_generated_secrets_are_valid_and_requests_never_show_them() -> None:
    a, b = webhooks.generate_secret(), webhooks.generate_secret()
    assert a != b and a.startswith("whsec_")
    assert len(webhooks._key(a)) == webhooks.GENERATED_SECRET_BYTES
    create = webhooks._create("n", "https://ops.acme.example/", a, ["rotation.due"], None, None)
    update = webhooks._update("wh_1", secret=a)
    assert a not in repr(create) and a not in repr(update)
    assert create.json["secret"] == a and update.json == {"secret": a}
    assert json.loads(json.dumps(create.json))["secret"] == a


def test_requests_carry_only_what_was_asked() -> None:
    assert webhooks._update("wh_1", enabled=True).json == {"enabled": True}
    assert webhooks._update("wh_1", filters={}).json == {"filters": {}}
    assert webhooks._update("wh_1", filters=WebhookFilters("a/")).json == {"filters": {"path_prefix": "a/"}}
    created = webhooks._create("n", "u", "whsec_x", "rotation.due", WebhookFilters("p/"), False)
    assert dict(created.json) == {
        "name": "n",
        "url": "u",
        "secret": "whsec_x",
        "events": ["rotation.due"],
        "filters": {"path_prefix": "p/"},
        "enabled": False,
    }
    assert webhooks._deliveries("wh_1", "failed", 12, 5).params == {"status": "failed", "before": "12", "limit": "5"}
    assert webhooks._deliveries("wh_1", None, None, None).params == {}
    assert webhooks._retry("wh_1", "msg_1_2").path == "/v1/webhooks/wh_1/deliveries/msg_1_2/retry"
    assert {"webhook.exhausted", "webhook.disabled", "webhook.test"} <= set(EVENT_TYPES)


# --- against the server -------------------------------------------------------------------------


def test_a_write_is_delivered_signed_and_listed(
    server: DevServer, client: SyncScaiVaultClient, receiver: Receiver, prefix: str
) -> None:
    secret = webhooks.generate_secret()
    hook = client.webhooks.create(
        _name(), receiver.url, secret, ["secret.created", "secret.updated"], filters={"path_prefix": prefix}
    )
    assert hook.id.startswith("wh_") and hook.enabled
    assert hook.filters.path_prefix == prefix and hook.events == ["secret.created", "secret.updated"]

    client.secrets.write("elsewhere/" + prefix + "x", data={"password": "not-for-this-hook"})
    client.secrets.write(prefix + "db", data={"password": "hunter2-value"})
    got = receiver.next()
    # The SDK and the doc's stdlib snippet both accept it; nothing else would.
    payload = webhooks.verify(secret, got.headers, got.body)
    assert doc_verifier()(secret, got.headers, got.body) == payload
    assert payload["type"] == "secret.created" and payload["data"]["path"] == prefix + "db"
    assert got.headers["content-type"] == "application/json"
    assert b"hunter2-value" not in got.body
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(webhooks.generate_secret(), got.headers, got.body)
    with pytest.raises(ValueError):
        doc_verifier()(secret, got.headers, got.body.replace(b"db", b"dc"))

    # An update arrives after it, in order.
    client.secrets.write(prefix + "db", data={"password": "second"})
    second = receiver.next()
    assert webhooks.verify(secret, second.headers, second.body)["type"] == "secret.updated"
    assert second.headers["webhook-id"] != got.headers["webhook-id"]

    # The test event, signed the same way.
    result = client.webhooks.test(hook.id)
    assert result.delivered and result.attempt.status_code == 200 and result.attempt.succeeded
    test = receiver.next_of("webhook.test")
    assert webhooks.verify(secret, test.headers, test.body)["data"]["webhook_id"] == hook.id

    # A new secret: for 24 h both sign, so a receiver on either one accepts the message.
    new_secret = webhooks.generate_secret()
    client.webhooks.update(hook.id, secret=new_secret)
    assert client.webhooks.test(hook.id).delivered
    rotated = receiver.next_of("webhook.test")
    assert len(rotated.headers["webhook-signature"].split()) == 2
    for either in (secret, new_secret):
        assert webhooks.verify(either, rotated.headers, rotated.body)["type"] == "webhook.test"
        assert doc_verifier()(either, rotated.headers, rotated.body)["type"] == "webhook.test"
    assert new_secret[6:] not in server.log()

    # Both deliveries succeeded, newest first, under the ids the receiver saw.
    def all_succeeded() -> list[Any]:
        found = list(client.webhooks.iter_deliveries(hook.id, limit=1))
        return found if len(found) == 2 and all(d.status == "succeeded" for d in found) else []

    deliveries = _eventually(all_succeeded)
    assert [d.id for d in deliveries] == [second.headers["webhook-id"], got.headers["webhook-id"]]
    assert {d.status for d in deliveries} == {"succeeded"}
    assert deliveries[0].attempt_log[-1].status_code == 200
    page = client.webhooks.deliveries(hook.id, status="succeeded", limit=1)
    assert len(page) == 1 and page.next_before is not None
    assert client.webhooks.deliveries(hook.id, status="failed").deliveries == []
    with pytest.raises(ConflictError):
        client.webhooks.retry(hook.id, deliveries[0].id)

    # The secret is in no answer, nor in the server's log.
    raw = httpx.get(
        f"{server.address}/v1/webhooks", headers={"Authorization": f"Bearer {server.root_token}"}
    ).text
    assert hook.id in raw and secret not in raw and secret[6:] not in raw
    assert secret[6:] not in server.log()
    client.webhooks.delete(hook.id)


def test_crud_and_refusals(client: SyncScaiVaultClient, server: DevServer, receiver: Receiver) -> None:
    secret = webhooks.generate_secret()
    name = _name()
    hook = client.webhooks.create(name, receiver.url, secret, ["rotation.due"])
    assert hook.id in [w.id for w in client.webhooks.list()]
    got = client.webhooks.get(hook.id)
    assert (got.name, got.url, got.events, got.enabled, got.created_by) == (name, receiver.url, ["rotation.due"], True, "root")

    changed = client.webhooks.update(hook.id, enabled=False, events=["rotation.due", "rotation.overdue"])
    assert not changed.enabled and changed.events == ["rotation.due", "rotation.overdue"]
    assert changed.url == receiver.url and changed.name == name
    rotated = client.webhooks.update(hook.id, secret=webhooks.generate_secret(), enabled=True)
    assert rotated.enabled and rotated.secret_set_at > got.secret_set_at

    with pytest.raises(ConflictError):
        client.webhooks.create(name, receiver.url, secret, ["rotation.due"])
    for url in ("http://169.254.169.254/latest/meta-data/", "ftp://127.0.0.1/", "http://10.0.0.1/hook"):
        with pytest.raises(ValidationError):
            client.webhooks.create(_name(), url, secret, ["rotation.due"])
    with pytest.raises(ValidationError) as bad_secret:
        client.webhooks.create(_name(), receiver.url, "whsec_not-base64!", ["rotation.due"])
    assert "not-base64" not in str(bad_secret.value)
    with pytest.raises(ValidationError):
        client.webhooks.create(_name(), receiver.url, secret, ["rotation.someday"])
    with pytest.raises(NotFoundError):
        client.webhooks.get("wh_000000000000000000000000")
    with pytest.raises(NotFoundError):
        client.webhooks.retry(hook.id, "msg_000_1")

    # Without admin on sys/webhooks: nothing to see, nothing to change.
    token = client.auth.create_token("sa:no-webhooks", ttl="5m").token
    with server.client(token=token) as nobody:
        with pytest.raises(PermissionDeniedError):
            nobody.webhooks.list()
        with pytest.raises(PermissionDeniedError):
            nobody.webhooks.create(_name(), receiver.url, secret, ["rotation.due"])

    client.webhooks.delete(hook.id)
    with pytest.raises(NotFoundError):
        client.webhooks.get(hook.id)


def test_a_failing_endpoint_keeps_its_delivery_pending_and_retry_sends_it_again(
    client: SyncScaiVaultClient, failing_receiver: Receiver, prefix: str
) -> None:
    secret = webhooks.generate_secret()
    hook = client.webhooks.create(_name(), failing_receiver.url, secret, ["secret.created"], {"path_prefix": prefix})
    client.secrets.write(prefix + "a", data={"k": "v"})
    first = failing_receiver.next()
    webhooks.verify(secret, first.headers, first.body)
    assert not client.webhooks.test(hook.id).delivered

    pending = _eventually(
        lambda: [d for d in client.webhooks.deliveries(hook.id, status="pending").deliveries if d.attempts]
    )
    assert [d.id for d in pending] == [first.headers["webhook-id"]]
    assert pending[0].attempt_log[0].status_code == 503 and pending[0].next_attempt_at is not None
    retried = client.webhooks.retry(hook.id, pending[0].id)
    assert retried.status == "pending"
    deadline = time.monotonic() + 30
    while True:
        again = failing_receiver.next(max(0.1, deadline - time.monotonic()))
        if again.headers["webhook-id"] == pending[0].id:
            break
    assert webhooks.verify(secret, again.headers, again.body)["data"]["path"] == prefix + "a"
    client.webhooks.delete(hook.id)


async def test_the_async_client(async_client: ScaiVaultClient, receiver: Receiver, prefix: str) -> None:
    secret = webhooks.generate_secret()
    hook = await async_client.webhooks.create(
        _name(), receiver.url, secret, ["secret.created"], filters=WebhookFilters(prefix)
    )
    assert hook.id in [w.id for w in await async_client.webhooks.list()]
    assert (await async_client.webhooks.test(hook.id)).delivered
    await async_client.secrets.write(prefix + "async", data={"k": "v"})
    got = receiver.next_of("secret.created")
    assert webhooks.verify(secret, got.headers, got.body)["data"]["path"] == prefix + "async"
    for _ in range(300):
        deliveries = [d async for d in async_client.webhooks.iter_deliveries(hook.id)]
        if deliveries and deliveries[0].status == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert [d.status for d in deliveries] == ["succeeded"]
    updated = await async_client.webhooks.update(hook.id, name=hook.name + "-renamed")
    assert updated.name == hook.name + "-renamed"
    assert (await async_client.webhooks.get(hook.id)).name == updated.name
    await async_client.webhooks.delete(hook.id)
