"""What each recipe needs seeded, what the reader supplies, and what must come out.

One entry per recipe title, serving that title in both documents: docs/cookbook.md and
the contract show the same task, the contract with names left to the reader, docs/
cookbook.md complete. ``expect`` registers a check that seeds the data the recipe
assumes, runs it through the ``Kitchen`` and asserts on its result; it looks at what both
versions share (the server's state, the names the recipe binds, what it prints), never at
which document it came from. ``pending`` names the capability a contract recipe waits for;
``broken`` marks a contract recipe that cannot work as written (a cookbook bug) and its
check asserts the failure a reader meets, while docs/cookbook.md shows the way that works
under the same title. ``ALIASES`` maps a contract title to the docs/cookbook.md recipe
that does its task differently. A recipe with no check fails its test, so a new recipe
cannot slip through untested.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cookbook import Recipe
from kitchen import Kitchen, MotoS3, WebhookReceiver

from scaivault_sdk import SyncScaiVaultClient
from scaivault_sdk.webhooks import generate_secret, verify
from scaivault_sdk.errors import NotFoundError, PermissionDeniedError, RateLimitError

Check = Callable[[Kitchen, Recipe], None]


@dataclass(frozen=True)
class Expectation:
    check: Check
    rate_limit_per_minute: int | None = None
    # The server runs with a movable wall clock (``Kitchen.clock``).
    clock: bool = False
    # For ``broken`` recipes: why the recipe cannot work as written.
    reason: str = ""
    # More ``scaivault-server dev`` flags (a faster rotation scheduler, say).
    server_args: tuple[str, ...] = ()


EXPECTATIONS: dict[str, Expectation] = {}
PENDING: dict[str, str] = {}
BROKEN: dict[str, Expectation] = {}
# Contract title -> the docs/cookbook.md title that does the same task another way.
ALIASES: dict[str, str] = {}


def expect(
    title: str,
    *,
    rate_limit_per_minute: int | None = None,
    clock: bool = False,
    server_args: tuple[str, ...] = (),
) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        assert title not in EXPECTATIONS, f"two checks for {title!r}"
        EXPECTATIONS[title] = Expectation(check, rate_limit_per_minute, clock, server_args=server_args)
        return check

    return register


def broken(title: str, reason: str) -> Callable[[Check], Check]:
    """A recipe that cannot pass as written; the check asserts what a reader gets instead."""

    def register(check: Check) -> Check:
        assert title not in BROKEN, f"two checks for {title!r}"
        BROKEN[title] = Expectation(check, reason=reason)
        return check

    return register


def covered_as(contract_title: str, docs_title: str) -> None:
    """The contract's recipe does its task in a way the server's users should not copy."""
    ALIASES[contract_title] = docs_title


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

    def apply_config(path: str, secret: Any) -> None:
        applied[path] = secret.data

    namespace = k.python(recipe, apply_config=apply_config)
    assert {path: secret.data for path, secret in namespace["batch"].secrets.items()} == seeded
    assert not namespace["batch"].errors
    # The reader's own hook, when the recipe leaves it to them, saw every secret.
    if namespace.get("apply_config") is apply_config:
        assert applied == seeded


@expect("Read with retry on transient failure", rate_limit_per_minute=60)
def _read_with_retry(k: Kitchen, recipe: Recipe) -> None:
    path = BILLING + "stripe"
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
    assert namespace["path"] == path
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
    # The path is the recipe's own when it names one, else the reader's.
    absent = k.python(recipe, path="app/exists", NotFoundError=NotFoundError)
    assert absent["exists"] is False
    k.client.secrets.write(absent["path"], data={"k": "v"})
    assert k.python(recipe, path=absent["path"], NotFoundError=NotFoundError)["exists"] is True


# --- Writing -------------------------------------------------------------------------------


@expect("Idempotent write of initial value")
def _idempotent_write(k: Kitchen, recipe: Recipe) -> None:
    path = "app/bootstrap/api-key"
    first = k.python(recipe, path=path, initial_value="first", NotFoundError=NotFoundError)
    second = k.python(recipe, path=path, initial_value="second", NotFoundError=NotFoundError)
    assert first["path"] == path and first["initial_value"] != second["initial_value"]
    secret = k.client.secrets.read(path)
    assert (secret.data, secret.secret_type, secret.version) == ({"key": first["initial_value"]}, "api_key", 1)


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
    written = k.file(recipe, "config.json", json.dumps(config))
    assert k.cli is not None, "the scaivault CLI binary is missing (SCAIVAULT_CLI_BIN)"
    ok(k.shell(recipe))
    # The reader's file, or the one the recipe wrote itself.
    assert json.loads(written.read_text()) == config
    secret = k.client.secrets.read("app/config")
    assert (secret.data, secret.secret_type) == (config, "json")


@expect("Write with expiration")
def _write_expiring(k: Kitchen, recipe: Recipe) -> None:
    before = datetime.now(timezone.utc)
    namespace = k.python(recipe, value="ya29.short-lived")
    secret = k.client.secrets.read("test/oauth-token")
    assert secret.data == {"token": namespace["value"]}
    assert secret.expires_at is not None
    assert timedelta(minutes=59) < secret.expires_at - before < timedelta(minutes=61)


@expect("Roll back to the previous version")
def _roll_back(k: Kitchen, recipe: Recipe) -> None:
    for word in ("first", "second", "bad"):
        k.client.secrets.write("app/db/password", data={"password": word}, secret_type="password")
    k.python(recipe)
    secret = k.client.secrets.read("app/db/password")
    assert (secret.version, secret.data, secret.secret_type) == (4, {"password": "second"}, "password")
    assert k.client.secrets.read("app/db/password", version=3).data == {"password": "bad"}


# --- Rotation ------------------------------------------------------------------------------------


@expect("Force rotation now")
def _force_rotation(k: Kitchen, recipe: Recipe) -> None:
    k.client.secrets.write(
        STRIPE,
        data={"api_key": "sk_live_old", "account": "acct_1"},
        secret_type="api_key",
        metadata={"rotation": {"interval": "30d", "strategy": "generate", "generator": {"prefix": "sk_live_"}}},
    )
    # The contract's `$PATH` is the secret's path; docs/cookbook.md names it.
    body = json.loads(ok(k.shell(recipe, PATH=STRIPE)))
    assert (body["path"], body["outcome"], body["version"]) == (STRIPE, "rotated", 2)
    assert body["rotation"]["status"] == "scheduled" and body["rotation"]["last_rotated_at"]
    secret = k.client.secrets.read(STRIPE)
    assert secret.version == 2 and secret.data["account"] == "acct_1"
    key = secret.data["api_key"]
    assert key.startswith("sk_live_") and len(key) == len("sk_live_") + 32 and key != "sk_live_old"
    # The reason reaches the event (and the audit record) of the rotation.
    events = k.client.events.list(types=["rotation.completed"]).events
    assert [(e.path, e.version, e.reason, e.actor) for e in events] == [(STRIPE, 2, "compromise", "root")]


def _seed_schedules(k: Kitchen, ages: dict[str, float]) -> datetime:
    """Secrets on a 30-day schedule (grace 24h), each written ``ages[path]`` days ago.

    The strategy is ``external``: nothing rotates them behind the check's back. Returns
    the (real) now the server's clock is set back to.
    """
    assert k.clock is not None
    now = datetime.now(timezone.utc)
    for path, days in ages.items():
        k.clock.set(now - timedelta(days=days))
        k.client.secrets.write(
            path, data={"token": path}, metadata={"rotation": {"interval": "30d", "strategy": "external"}}
        )
    k.clock.set(now)
    k.client.secrets.write("app/unscheduled", data={"token": "t"})
    return now


ROTATION_AGES = {
    "environments/production/billing/stripe": 40,  # overdue: past next_rotation_at + grace
    "environments/production/billing/sendgrid": 35,  # overdue
    "environments/production/billing/database": 30.5,  # due: past next_rotation_at, in the grace
    "environments/staging/api": 26,  # due in 4 days
    "environments/staging/db": 24.5,  # due in 5.5 days
    "app/fresh": 2,  # due in 28 days
}


@expect("List secrets due for rotation in the next week", clock=True)
def _due_next_week(k: Kitchen, recipe: Recipe) -> None:
    _seed_schedules(k, ROTATION_AGES)
    lines = [line.split(" ") for line in ok(k.shell(recipe)).splitlines()]
    # In path order; overdue secrets are left out (include_overdue defaults to false), a
    # secret still in its grace is not.
    expected = ["environments/production/billing/database", "environments/staging/api", "environments/staging/db"]
    assert [path for path, _ in lines] == expected
    for path, when in lines:
        rotation = k.client.secrets.read_metadata(path).rotation
        assert rotation is not None and datetime.fromisoformat(when) == rotation.next_rotation_at


@expect("Find secrets that missed their rotation window", clock=True)
def _missed_window(k: Kitchen, recipe: Recipe) -> None:
    _seed_schedules(k, ROTATION_AGES)
    printed = ok(k.shell(recipe)).splitlines()
    assert printed == ["environments/production/billing/sendgrid", "environments/production/billing/stripe"]
    for path in printed:
        rotation = k.client.secrets.read_metadata(path).rotation
        assert rotation is not None and (rotation.status, rotation.is_overdue) == ("overdue", True)
    # A write of a new version is the rotation of an external secret: it is back on schedule.
    k.client.secrets.write(printed[0], data={"token": "rotated"})
    assert ok(k.shell(recipe)).splitlines() == printed[1:]


@expect("Catch up on rotation events")
def _catch_up_on_rotation_events(k: Kitchen, recipe: Recipe) -> None:
    external = "environments/production/billing/database"
    schedules = {
        STRIPE: ("api_key", "generate"),
        external: ("database", "external"),
        "environments/staging/api": ("api_key", "manual"),
    }
    for path, (secret_type, strategy) in schedules.items():
        k.client.secrets.write(
            path,
            data={secret_type: "first"},
            secret_type=secret_type,
            metadata={"rotation": {"interval": "7d", "strategy": strategy}},
        )
    k.client.secrets.rotate(STRIPE, reason="compromise")
    k.client.secrets.rotate(external, reason="offboarding")
    k.client.secrets.rotate("environments/staging/api", reason="drill")  # another prefix: not listed
    namespace = k.python(recipe)
    wanted = k.client.events.list(types=["rotation.completed", "rotation.requested"], path_prefix=BILLING).events
    assert [(e.type, e.path, e.reason) for e in wanted] == [
        ("rotation.completed", STRIPE, "compromise"),
        ("rotation.requested", external, "offboarding"),
    ]
    assert k.printed.splitlines() == [f"{e.seq} {e.type} {e.path} {e.reason}" for e in wanted]
    # Where the next run goes on from: nothing new, nothing printed twice.
    assert namespace["after"] == wanted[-1].seq


# --- Webhooks ----------------------------------------------------------------------------------

# Where the contract's recipe sends events; the runner puts its own receiver there.
OPS_HOST = "https://ops.acme.example"
SECRET_PLACEHOLDER = '"whsec_..."'
# What docs/cookbook.md's recipe keeps its signing secret in (for the receiver).
SECRET_FILE = "prod-rotations.whsec"
PRODUCTION = "environments/production/"


@expect(
    "Subscribe to rotation events on production secrets",
    clock=True,
    server_args=("--rotation-check-interval", "1s"),
)
def _subscribe_to_rotation_events(k: Kitchen, recipe: Recipe) -> None:
    assert k.clock is not None
    with WebhookReceiver.running() as receiver:
        secret = generate_secret()
        created = json.loads(
            ok(
                k.shell(
                    recipe,
                    placeholders={
                        OPS_HOST: (receiver.origin, "a loopback receiver's address"),
                        SECRET_PLACEHOLDER: (json.dumps(secret), "a signing secret"),
                    },
                )
            )
        )
        # 201: the webhook as the server shows it, never its secret.
        assert created["id"].startswith("wh_") and created["name"] == "prod-rotations"
        assert created["enabled"] is True and created["filters"] == {"path_prefix": PRODUCTION}
        assert {"rotation.due", "rotation.overdue"} <= set(created["events"])
        assert "secret" not in created
        # The reader's secret, or the one the recipe made and kept for its receiver.
        kept = k.workdir / SECRET_FILE
        if kept.exists():
            secret = kept.read_text().strip()
        assert secret[len("whsec_") :] not in json.dumps(created)
        # A recipe that names the real endpoint (ops.acme.example does not resolve) is
        # pointed at the receiver, so delivery is checked the same way for both.
        if not created["url"].startswith(receiver.origin):
            k.client.webhooks.update(created["id"], url=receiver.origin + "/scaivault/rotations")

        # Two secrets on a 30-day schedule, written 32 days ago: both become due (and
        # overdue) once the clock is back; only the production one concerns the webhook.
        now = datetime.now(timezone.utc)
        k.clock.set(now - timedelta(days=32))
        for path in (STRIPE, "environments/staging/api"):
            k.client.secrets.write(
                path, data={"api_key": "k"}, metadata={"rotation": {"interval": "30d", "strategy": "external"}}
            )
        k.clock.set(now)
        got = receiver.wait_for(lambda d: d.json()["type"] == "rotation.due")
        for delivery in got:
            payload = verify(secret, delivery.headers, delivery.body)
            assert payload["data"]["path"] == STRIPE, payload
            assert payload["type"] in created["events"]
        due = got[-1].json()
        assert (due["data"]["path"], due["data"]["actor"]) == (STRIPE, "system")
        # Recorded as succeeded just after the receiver answered.
        deadline = time.monotonic() + 10
        while True:
            delivered = k.client.webhooks.deliveries(created["id"], status="succeeded").deliveries
            if got[-1].headers["webhook-id"] in [d.id for d in delivered] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert got[-1].headers["webhook-id"] in [d.id for d in delivered]


# --- Policies and access ------------------------------------------------------------------------

STRIPE = BILLING + "stripe"
BILLING_SA = "sa:billing-prod"


def _json_documents(text: str) -> list[Any]:
    """The JSON documents a recipe printed one after another (curl prints no newline)."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(text, at)
        out.append(document)
    return out


def _grant_stripe_read(k: Kitchen) -> str:
    """What "Grant a service account read access to one path" means to do, done with the SDK."""
    policy = k.client.policies.create(
        "sa-billing-stripe-read", [{"path_pattern": STRIPE, "permissions": ["read"]}]
    )
    k.client.policies.add_binding(policy.id, "service_account", BILLING_SA)
    return policy.id


@broken(
    "Grant a service account read access to one path",
    "the binding request is sent to /v1/policies/pol_abc/bindings, a made-up id: the server "
    "assigns ids (pol_<16 hex>) and answers 404 not_found `no policy with id pol_abc`, and curl "
    "without -f still exits 0, so the reader is told nothing failed while the service account "
    "stays without access. The recipe should capture the id (`| jq -r .id`) and use it.",
)
def _grant(k: Kitchen, recipe: Recipe) -> None:
    created, bind = _json_documents(ok(k.shell(recipe)))
    assert created["name"] == "sa-billing-stripe-read" and created["id"].startswith("pol_")
    assert created["rules"] == [{"path_pattern": STRIPE, "permissions": ["read"], "effect": "allow"}]
    assert bind["error"]["code"] == "not_found"
    assert bind["error"]["message"] == "no policy with id pol_abc"
    assert k.client.policies.list_bindings(created["id"]) == []
    assert k.client.policies.test(BILLING_SA, STRIPE, "read").allowed is False


@expect("Grant a service account read access to one path")
def _grant_works(k: Kitchen, recipe: Recipe) -> None:
    """What the recipe means to do: the service account can then read the path, and only it."""
    k.client.secrets.write(STRIPE, data={"api_key": "sk_live_1"})
    k.client.secrets.write(BILLING + "database", data={"url": "postgres://db"})
    # The last document printed is the binding (a recipe may print the policy first).
    binding = _json_documents(ok(k.shell(recipe)))[-1]
    assert (binding["identity_type"], binding["identity_id"]) == ("service_account", BILLING_SA)
    policy = k.client.policies.get(binding["policy_id"])
    assert policy.name == "sa-billing-stripe-read"
    assert [b.identity_id for b in k.client.policies.list_bindings(policy.id)] == [BILLING_SA]
    with _token(k, BILLING_SA) as sa:
        assert sa.secrets.read(STRIPE).data == {"api_key": "sk_live_1"}
        with pytest.raises(PermissionDeniedError):
            sa.secrets.read(BILLING + "database")


@expect("Test whether an identity can read a path")
def _test_access(k: Kitchen, recipe: Recipe) -> None:
    policy_id = _grant_stripe_read(k)
    assert ok(k.shell(recipe)) == "true\n"
    k.client.policies.delete_binding(policy_id, BILLING_SA)
    assert ok(k.shell(recipe)) == "false\n"


@expect("List who has access to a path")
def _who_has_access(k: Kitchen, recipe: Recipe) -> None:
    """The recipe's jq treats glob patterns as unanchored regexes; the check pins what that prints.

    Which policies the server says match (glob rules) and which lines the recipe prints
    differ for this data; both are asserted so the cookbook bug stays visible. Not seeded:
    a bare `**` pattern, on which jq 1.6 stops with "Regex failure: target of repeat
    operator is not specified" and the recipe prints nothing at all.
    """
    rules = {
        "exact": [STRIPE],
        "production-subtree": ["environments/production/**"],
        "any-env-billing": ["environments/*/billing/stripe"],  # glob: match; regex: none
        "stripe-suffixed": [BILLING + "stripe-*"],  # glob: no match; regex: "stripe" + "-"*
        "staging": ["environments/staging/**"],  # neither
        "billing-oncall": [STRIPE, BILLING + "**"],  # two matching rules: printed twice
    }
    ids = {
        name: k.client.policies.create(name, [{"path_pattern": p, "permissions": ["read"]} for p in patterns]).id
        for name, patterns in rules.items()
    }
    printed_per_policy = {
        "exact": 1, "production-subtree": 1, "any-env-billing": 0,
        "stripe-suffixed": 1, "staging": 0, "billing-oncall": 2,
    }
    by_id = {policy_id: name for name, policy_id in ids.items()}
    listed = [p.id for p in k.client.policies.list()]
    expected = [pid for pid in listed for _ in range(printed_per_policy[by_id[pid]])]
    assert ok(k.shell(recipe)).splitlines() == expected

    glob_matches = {by_id[p.id] for p in k.client.policies.list_for_path(STRIPE)}
    assert glob_matches == {"exact", "production-subtree", "any-env-billing", "billing-oncall"}


@expect("List who can read a path")
def _who_can_read(k: Kitchen, recipe: Recipe) -> None:
    """Glob matching by the server, bindings, then the what-if test: deny rules count."""
    policies = {
        "stripe-read": ([{"path_pattern": STRIPE, "permissions": ["read"]}], [BILLING_SA, "user:bob@acme.example"]),
        "billing-all": (
            [{"path_pattern": BILLING + "**", "permissions": ["read"]}],
            ["k8s:billing/api", "user:contractor@acme.example"],
        ),
        "no-stripe": (
            [{"path_pattern": "**/stripe", "permissions": ["read"], "effect": "deny"}],
            ["user:contractor@acme.example"],
        ),
        "list-only": ([{"path_pattern": BILLING + "*", "permissions": ["list"]}], ["sa:inventory"]),
        "staging": ([{"path_pattern": "environments/staging/**", "permissions": ["read"]}], ["sa:staging"]),
    }
    kinds = {"user": "user", "sa": "service_account", "k8s": "kubernetes"}
    for name, (rules, identities) in policies.items():
        policy_id = k.client.policies.create(name, rules).id
        for identity in identities:
            k.client.policies.add_binding(policy_id, kinds[identity.split(":")[0]], identity)
    expected = ["k8s:billing/api", BILLING_SA, "user:bob@acme.example"]
    namespace = k.python(recipe)
    assert namespace["readers"] == expected
    assert k.printed.splitlines() == expected
    # Each one really reads it; the contractor, bound to an allow and a deny, does not.
    k.client.secrets.write(STRIPE, data={"api_key": "sk_live_1"})
    for identity in expected:
        with _token(k, identity) as c:
            c.secrets.read(STRIPE)
    with _token(k, "user:contractor@acme.example") as c, pytest.raises(PermissionDeniedError):
        c.secrets.read(STRIPE)


covered_as("List who has access to a path", "List who can read a path")


@expect("Issue a short-lived token for a CI job")
def _ci_token(k: Kitchen, recipe: Recipe) -> None:
    assert k.cli is not None, "the scaivault CLI binary is missing (SCAIVAULT_CLI_BIN)"
    token = ok(k.shell(recipe)).strip()
    assert token.startswith("svt_")
    with k.server.client(token=token) as ci:
        me = ci.auth.whoami()
        assert (me.identity_id, me.identity_type) == ("sa:ci-deploy", "service_account")
        assert me.expires_at is not None
        assert timedelta(minutes=59) < me.expires_at - datetime.now(timezone.utc) <= timedelta(hours=1)
        # No policy bound yet: authorization fails closed.
        with pytest.raises(PermissionDeniedError):
            ci.secrets.read("app/db/password")
    listed = [t for t in k.client.auth.list_tokens() if t.identity_id == "sa:ci-deploy"]
    assert [t.display_name for t in listed] == ["deploy"]


# --- Audit -----------------------------------------------------------------------------------------


def _token(k: Kitchen, identity: str) -> SyncScaiVaultClient:
    return k.server.client(token=k.client.auth.create_token(identity).token)


@expect("Who read this secret in the last 24 hours?", clock=True)
def _who_read(k: Kitchen, recipe: Recipe) -> None:
    assert k.clock is not None
    now = datetime.now(timezone.utc)
    k.clock.set(now - timedelta(days=2))
    k.client.secrets.write(STRIPE, data={"api_key": "sk_live_1"})
    k.client.secrets.read(STRIPE)  # two days ago: outside the window
    k.clock.set(now)
    _grant_stripe_read(k)
    with _token(k, BILLING_SA) as sa, _token(k, "sa:intruder") as intruder:
        sa.secrets.read(STRIPE)
        sa.secrets.read(STRIPE)
        k.client.secrets.write(STRIPE, data={"api_key": "sk_live_2"})
        with pytest.raises(PermissionDeniedError):
            intruder.secrets.read(STRIPE)
    lines = [line.split(" ") for line in ok(k.shell(recipe)).splitlines()]
    # Every record on the path in the window, not only reads: the recipe's jq does not
    # filter on action or outcome, so the write and the refused attempt are listed too.
    assert [(who, ip) for _, who, ip in lines] == [
        (BILLING_SA, "127.0.0.1"),
        (BILLING_SA, "127.0.0.1"),
        ("root", "127.0.0.1"),
        ("sa:intruder", "127.0.0.1"),
    ]
    recent = [r for r in k.client.audit.for_secret(STRIPE, from_=now - timedelta(days=1))][: len(lines)]
    assert [datetime.fromisoformat(ts) for ts, _, _ in lines] == [r.timestamp for r in recent]
    assert [r.action for r in recent] == ["secrets.read", "secrets.read", "secrets.write", "secrets.read"]


@expect("Find every action by an ex-employee", clock=True)
def _ex_employee(k: Kitchen, recipe: Recipe) -> None:
    assert k.clock is not None
    alice = "user:alice@acme.example"
    k.client.policies.add_binding(
        k.client.policies.create("alice", [{"path_pattern": "environments/production/**", "permissions": ["read"]}]).id,
        "user",
        alice,
    )
    legacy, stripe, database = "environments/production/legacy/db", STRIPE, BILLING + "database"
    for path in (legacy, stripe, database):
        k.client.secrets.write(path, data={"k": "v"})
    k.clock.set(datetime(2025, 12, 15, 12, 0, tzinfo=timezone.utc))  # before the recipe's from=
    with _token(k, alice) as old:
        old.secrets.read(legacy)
    k.clock.set(datetime.now(timezone.utc))
    with _token(k, alice) as c:
        c.secrets.read(stripe)
        c.secrets.read(database)
        c.secrets.read(stripe)
        with pytest.raises(PermissionDeniedError):
            c.secrets.write(stripe, data={"k": "mine"})
        with pytest.raises(PermissionDeniedError):
            c.secrets.read("environments/staging/billing/stripe")
    body = json.loads(ok(k.shell(recipe)))
    assert {r["identity_id"] for r in body["logs"]} == {alice}
    assert [(r["action"], r["path"], r["outcome"]) for r in body["logs"]] == [
        ("secrets.read", stripe, "success"),
        ("secrets.read", database, "success"),
        ("secrets.read", stripe, "success"),
        ("secrets.write", stripe, "denied"),
        ("secrets.read", "environments/staging/billing/stripe", "denied"),
    ]
    summary = body["summary"]
    # What the recipe says to rotate next: what alice read since 2026-01-01, not the legacy read.
    assert summary["resources_accessed"] == [database, stripe]
    assert (summary["total"], summary["by_action"]) == (5, {"secrets.read": 4, "secrets.write": 1})


AUDIT_BUCKET = "acme-audit"
AUDIT_PREFIX = "scaivault/2026-04/"


@expect("Export last month for compliance", clock=True)
def _export_to_s3(k: Kitchen, recipe: Recipe) -> None:
    assert k.clock is not None
    with MotoS3.running(k.workdir.parent) as moto:
        s3 = moto.client()
        s3.create_bucket(Bucket=AUDIT_BUCKET)
        # March: the credentials the recipe names, and some traffic outside the range.
        k.clock.set(datetime(2026, 3, 31, 23, 0, tzinfo=timezone.utc))
        k.client.secrets.write(
            "infra/aws/audit-uploader",
            data={
                "access_key_id": "AKIAAUDITUPLOADER",
                "secret_access_key": "moto-secret",
                "endpoint": moto.endpoint,
                "region": "us-east-1",
            },
        )
        k.client.secrets.write(STRIPE, data={"api_key": "sk_march"})
        # April: the month to export.
        k.clock.set(datetime(2026, 4, 10, 12, 0, tzinfo=timezone.utc))
        _grant_stripe_read(k)
        with _token(k, BILLING_SA) as sa:
            for _ in range(5):
                sa.secrets.read(STRIPE)
            with pytest.raises(PermissionDeniedError):
                sa.secrets.read("infra/aws/audit-uploader")
        k.client.secrets.write(STRIPE, data={"api_key": "sk_april"})
        k.clock.set(datetime(2026, 4, 30, 23, 59, 0, tzinfo=timezone.utc))
        k.client.secrets.read(STRIPE)
        # May: "last month" is April; the export itself and its polling fall outside.
        k.clock.set(datetime(2026, 5, 2, 9, 0, tzinfo=timezone.utc))
        k.client.secrets.read(STRIPE)

        job = json.loads(ok(k.shell(recipe)))
        assert job["status"] in ("running", "completed") and job["id"].startswith("exp_")
        done = k.client.audit.wait_for_export(job["id"], timeout=60)

        april = list(k.client.audit.iter_logs("2026-04-01T00:00:00Z", "2026-04-30T23:59:59Z", limit=1000))
        assert len(april) >= 10 and all(r.timestamp.month == 4 for r in april)
        listed = s3.list_objects_v2(Bucket=AUDIT_BUCKET, Prefix=AUDIT_PREFIX).get("Contents", [])
        keys = sorted(o["Key"] for o in listed)
        assert keys == [o.location for o in done.objects] == [AUDIT_PREFIX + "part-00000.jsonl"]
        exported = []
        for key in keys:
            body = s3.get_object(Bucket=AUDIT_BUCKET, Key=key)["Body"].read().decode()
            exported += [json.loads(line) for line in body.splitlines()]
        # Every April record, none from March or May, each as the log holds it. Queries
        # leave out a mutation's request record once its response follows; exports keep it.
        assert all(e["timestamp"].startswith("2026-04") for e in exported)
        queried = {r.seq for r in april}
        assert all(e.get("phase") == "request" for e in exported if e["seq"] not in queried)
        shown = [(e["seq"], e["hash"]) for e in exported if e["seq"] in queried]
        assert shown == [(r.seq, r.hash) for r in april]
        assert done.records_exported == len(exported) == sum(o.records for o in done.objects)
        assert k.client.audit.verify("2026-04-01", "2026-04-30").verified


@expect("Check that the audit log is intact")
def _audit_verify(k: Kitchen, recipe: Recipe) -> None:
    assert k.cli is not None, "the scaivault CLI binary is missing (SCAIVAULT_CLI_BIN)"
    k.client.secrets.write(STRIPE, data={"api_key": "sk_live_1"})
    k.client.secrets.read(STRIPE)
    records = list(k.client.audit.iter_logs("2026-01-01", None, limit=1000))
    report = dict(line.split(None, 1) for line in ok(k.shell(recipe)).splitlines())
    assert report["verified"] == "yes" and report["first_broken"] == "-"
    # The chain up to the records written before the recipe ran; its own call adds one.
    assert int(report["checked"]) >= len(records) >= 2
    # The first record may be a write's request record, which queries leave out once its
    # response follows; verify checks every stored record.
    assert int(report["first_seq"]) <= records[0].seq


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
pending("federation", "Read from HashiCorp Vault via ScaiVault", "Trigger an immediate sync")
