"""What each recipe needs seeded, what the reader supplies, and what must come out.

One entry per recipe title. ``expect`` registers a check that seeds the data the
recipe assumes, runs it through the ``Kitchen`` and asserts on its result; ``pending``
names the capability a recipe waits for. A cookbook recipe with neither fails its
test, so a new recipe cannot slip through untested.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cookbook import Recipe
from kitchen import Kitchen

from scaivault_sdk.errors import NotFoundError, RateLimitError

Check = Callable[[Kitchen, Recipe], None]


@dataclass(frozen=True)
class Expectation:
    check: Check
    rate_limit_per_minute: int | None = None


EXPECTATIONS: dict[str, Expectation] = {}
PENDING: dict[str, str] = {}


def expect(title: str, *, rate_limit_per_minute: int | None = None) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        assert title not in EXPECTATIONS, f"two checks for {title!r}"
        EXPECTATIONS[title] = Expectation(check, rate_limit_per_minute)
        return check

    return register


def pending(capability: str, *titles: str) -> None:
    for title in titles:
        PENDING[title] = f"waits for: {capability}"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """stdout of a shell recipe that must have succeeded."""
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


# --- Reading -------------------------------------------------------------------------------

BILLING = "environments/production/billing/"


@expect("Read one secret and use a single field")
def _read_one_field(k: Kitchen, recipe: Recipe) -> None:
    url = "postgres://billing:pw@db.internal:5432/billing"
    k.client.secrets.write(BILLING + "database", data={"url": url, "user": "billing"}, secret_type="database")
    assert k.python(recipe)["conn_str"] == url


@expect("Read many secrets at startup")
def _read_many(k: Kitchen, recipe: Recipe) -> None:
    seeded = {
        BILLING + "database": {"url": "postgres://db"},
        BILLING + "stripe": {"api_key": "sk_live_1"},
        BILLING + "sendgrid": {"api_key": "SG.1"},
    }
    for path, data in seeded.items():
        k.client.secrets.write(path, data=data)
    applied: dict[str, Any] = {}
    k.python(recipe, apply_config=lambda path, secret: applied.__setitem__(path, secret.data))
    assert applied == seeded


@expect("Read with retry on transient failure", rate_limit_per_minute=60)
def _read_with_retry(k: Kitchen, recipe: Recipe) -> None:
    path = "app/retry/token"
    k.client.secrets.write(path, data={"token": "t1"})
    # Spend the budget so the recipe's first read meets a real 429 and its
    # `except RateLimitError` branch has to sleep for Retry-After.
    for _ in range(200):
        try:
            k.client.auth.whoami()
        except RateLimitError:
            break
    else:
        raise AssertionError("the server never rate-limited 200 requests at 60/min")
    namespace = k.python(recipe, path=path)
    assert namespace["secret"].data == {"token": "t1"}
    assert namespace["attempt"] >= 1, "the first attempt should have been rate-limited and retried"


@expect("Read a specific version")
def _read_version(k: Kitchen, recipe: Recipe) -> None:
    for word in ("first", "second", "third"):
        k.client.secrets.write("app/db/password", data={"password": word}, secret_type="password")
    body = json.loads(ok(k.shell(recipe)))
    assert (body["version"], body["data"]) == (2, {"password": "second"})


@expect("Check whether a secret exists without reading it")
def _exists(k: Kitchen, recipe: Recipe) -> None:
    k.client.secrets.write("app/exists", data={"k": "v"})
    assert k.python(recipe, path="app/exists", NotFoundError=NotFoundError)["exists"] is True
    assert k.python(recipe, path="app/absent", NotFoundError=NotFoundError)["exists"] is False


# --- Writing -------------------------------------------------------------------------------


@expect("Idempotent write of initial value")
def _idempotent_write(k: Kitchen, recipe: Recipe) -> None:
    path = "app/bootstrap/api-key"
    k.python(recipe, path=path, initial_value="first", NotFoundError=NotFoundError)
    k.python(recipe, path=path, initial_value="second", NotFoundError=NotFoundError)
    secret = k.client.secrets.read(path)
    assert (secret.data, secret.secret_type, secret.version) == ({"key": "first"}, "api_key", 1)


@expect("Update one field without overwriting others")
def _update_one_field(k: Kitchen, recipe: Recipe) -> None:
    k.client.secrets.write("app/config", data={"db_pool": 10, "feature_flag_y": False}, secret_type="json")
    k.python(recipe)
    secret = k.client.secrets.read("app/config")
    assert secret.data == {"db_pool": 10, "feature_flag_y": False, "feature_flag_x": True}
    assert (secret.secret_type, secret.version) == ("json", 2)


@expect("Write a JSON blob from a file")
def _write_json_file(k: Kitchen, recipe: Recipe) -> None:
    config = {"log_level": "debug", "replicas": 3, "features": {"x": True}}
    k.file("config.json", json.dumps(config))
    assert k.cli is not None, "the scaivault CLI binary is missing (SCAIVAULT_CLI_BIN)"
    ok(k.shell(recipe))
    secret = k.client.secrets.read("app/config")
    assert (secret.data, secret.secret_type) == (config, "json")


@expect("Write with expiration")
def _write_expiring(k: Kitchen, recipe: Recipe) -> None:
    before = datetime.now(timezone.utc)
    k.python(recipe, value="ya29.short-lived")
    secret = k.client.secrets.read("test/oauth-token")
    assert secret.data == {"token": "ya29.short-lived"}
    assert secret.expires_at is not None
    assert timedelta(minutes=59) < secret.expires_at - before < timedelta(minutes=61)


# --- Health and observability ------------------------------------------------------------------


@expect("Smoke test the API")
def _smoke(k: Kitchen, recipe: Recipe) -> None:
    assert json.loads(ok(k.shell(recipe)))["status"] == "ok"


@expect("Detailed component health")
def _detailed_health(k: Kitchen, recipe: Recipe) -> None:
    body = json.loads(ok(k.shell(recipe)))
    assert body["status"] == "ok"
    assert body["components"]["storage"]["status"] == "ok"


@expect("Confirm a token works and see its identity")
def _whoami(k: Kitchen, recipe: Recipe) -> None:
    body = json.loads(ok(k.shell(recipe)))
    assert (body["identity_id"], body["identity_type"]) == ("root", "root")


@expect("Find your own rate-limit headroom")
def _headroom(k: Kitchen, recipe: Recipe) -> None:
    headers = {}
    for line in ok(k.shell(recipe)).splitlines():
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    limit = int(headers["x-ratelimit-limit"])
    remaining = int(headers["x-ratelimit-remaining"])
    reset = int(headers["x-ratelimit-reset"])
    assert 0 <= remaining < limit
    assert time.time() - 5 <= reset <= time.time() + 3600


# --- Cleanup and migration ---------------------------------------------------------------------


@expect("Soft-delete then restore")
def _delete_restore(k: Kitchen, recipe: Recipe) -> None:
    k.client.secrets.write("old/path", data={"k": "v"})
    restored = json.loads(ok(k.shell(recipe)))
    # A restore of a secret that was not deleted answers 409 `not_deleted`: a
    # metadata document here shows the DELETE happened first.
    assert restored["path"] == "old/path" and restored["deleted_at"] is None
    assert k.client.secrets.read("old/path").data == {"k": "v"}


@expect("Bulk-tag secrets matching a pattern")
def _bulk_tag(k: Kitchen, recipe: Recipe) -> None:
    before = {
        "environments/staging/api": ["team:web"],
        "environments/staging/db": [],
        "environments/staging/cache": ["needs-rotation"],
        "environments/production/api": ["team:web"],
    }
    for path, tags in before.items():
        k.client.secrets.write(path, data={"k": "v"}, metadata={"tags": tags})
    k.python(recipe)
    after = {path: set(k.client.secrets.read_metadata(path).tags) for path in before}
    assert after == {
        "environments/staging/api": {"team:web", "needs-rotation"},
        "environments/staging/db": {"needs-rotation"},
        "environments/staging/cache": {"needs-rotation"},
        "environments/production/api": {"team:web"},
    }


@expect("Find unused secrets (30-day baseline)")
def _unused(k: Kitchen, recipe: Recipe) -> None:
    paths = ["app/used/a", "app/unused/b", "app/used/c", "app/unused/d"]
    for path in paths:
        k.client.secrets.write(path, data={"k": "v"})
    for path in paths:
        if "/used/" in path:
            k.client.secrets.read(path)
    assert ok(k.shell(recipe)).splitlines() == ["app/unused/b", "app/unused/d"]


# --- Waiting for capabilities the server does not have yet --------------------------------------

pending(
    "rotation",
    "Force rotation now",
    "List secrets due for rotation in the next week",
    "Find secrets that missed their rotation window",
)
pending("webhooks", "Subscribe to rotation events on production secrets")
pending(
    "policies (issue 3)",
    "Grant a service account read access to one path",
    "Test whether an identity can read a path",
    "List who has access to a path",
)
pending(
    "pki",
    "Issue a 7-day mTLS cert",
    "Renew a cert ahead of schedule",
    "Validate a cert chain a client gave you",
    "List certs expiring in 30 days",
    "Revoke a cert",
)
pending(
    "dynamic credentials",
    "One-shot Postgres credential for a script",
    "AWS IAM credentials for a deploy job",
    "Emergency revoke all leases from an engine",
)
pending(
    "audit",
    "Who read this secret in the last 24 hours?",
    "Find every action by an ex-employee",
    "Export last month for compliance",
)
pending("federation", "Read from HashiCorp Vault via ScaiVault", "Trigger an immediate sync")
