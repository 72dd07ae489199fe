"""Rotation schedules, forced rotation, the due/overdue query and events, against the real server."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from scaivault_sdk import (
    EVENT_TYPES,
    ConflictError,
    NotFoundError,
    RotationGenerator,
    RotationPolicy,
    ScaiVaultClient,
    SyncScaiVaultClient,
    ValidationError,
)
from scaivault_sdk import events, rotation, secrets
from scaivault_sdk.testing import DevServer, dev_server

CLOCKSHIFT_SOURCE = Path(__file__).resolve().parents[3] / "tests" / "cookbook" / "clockshift.c"


def _status(client: SyncScaiVaultClient, path: str) -> str | None:
    rotation = client.secrets.read_metadata(path).rotation
    return rotation.status if rotation else None


def _near(when: datetime | None, expected: datetime, slack: timedelta = timedelta(minutes=2)) -> bool:
    return when is not None and abs(when - expected) < slack


# --- the requests, as built -------------------------------------------------------------------


def test_schedules_go_on_the_wire_without_their_unset_fields() -> None:
    policy = RotationPolicy("30d", "generate", generator=RotationGenerator(fields=["password"], length=40))
    call = secrets._update_metadata("app/db", {"tags": ["t"]}, policy)
    assert call.json == {
        "tags": ["t"],
        "rotation": {"interval": "30d", "strategy": "generate", "generator": {"fields": ["password"], "length": 40}},
    }
    # None removes the schedule (`null`); left out, the body does not mention it.
    assert secrets._update_metadata("app/db", None, None).json == {"rotation": None}
    assert secrets._update_metadata("app/db", {"tags": []}).json == {"tags": []}
    assert secrets._update_metadata("app/db", {"rotation": None}).json == {"rotation": None}
    written = secrets._write("app/db", {"password": "p"}, "password", None, {"rotation": policy})
    assert written.json["metadata"]["rotation"]["generator"] == {"fields": ["password"], "length": 40}
    # A dict is sent as given.
    raw = {"interval": "1d", "strategy": "manual", "grace": "1h"}
    assert secrets._update_metadata("app/db", None, raw).json == {"rotation": raw}


def test_queries_carry_only_what_was_asked() -> None:
    assert rotation._due(None, False, None, None, None).params == {}
    assert rotation._due(24, True, "app/", 5, "c").params == {
        "within_hours": "24",
        "include_overdue": "true",
        "prefix": "app/",
        "limit": "5",
        "cursor": "c",
    }
    assert events._list(["rotation.due", "rotation.overdue"], "app/", 0, 10).params == {
        "types": "rotation.due,rotation.overdue",
        "path_prefix": "app/",
        "after": "0",
        "limit": "10",
    }
    assert events._list("secret.updated", None, None, None).params == {"types": "secret.updated"}
    assert events._list([], None, None, None).params == {}
    assert secrets._rotate("app/db", None).json == {}
    assert secrets._rotate("app/db", "compromise").json == {"reason": "compromise"}


# --- schedules ---------------------------------------------------------------------------------


def test_a_schedule_written_with_the_value_shows_in_metadata_and_listings(
    client: SyncScaiVaultClient, prefix: str
) -> None:
    path = prefix + "db"
    before = datetime.now(timezone.utc)
    client.secrets.write(
        path,
        data={"password": "first", "user": "app"},
        secret_type="password",
        metadata={
            "tags": ["billing"],
            "rotation": {
                "interval": "30d",
                "strategy": "generate",
                "generator": {"length": 40, "charset": "hex"},
                "grace": "12h",
            },
        },
    )
    rotation = client.secrets.read_metadata(path).rotation
    assert rotation is not None
    assert (rotation.status, rotation.strategy, rotation.interval, rotation.is_overdue) == (
        "scheduled",
        "generate",
        "30d",
        False,
    )
    assert _near(rotation.next_rotation_at, before + timedelta(days=30))
    assert rotation.policy == RotationPolicy(
        "30d", "generate", generator=RotationGenerator(length=40, charset="hex"), grace="12h"
    )
    (item,) = client.secrets.list(prefix=prefix).data
    assert item.rotation is not None and item.rotation.status == "scheduled"
    assert item.rotation.next_rotation_at == rotation.next_rotation_at


def test_update_metadata_sets_keeps_and_removes_the_schedule(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "api"
    client.secrets.write(path, data={"api_key": "k1"}, secret_type="api_key")
    assert _status(client, path) == "not_configured"

    schedule = RotationPolicy("7d", "external", rotate_at="03:00")
    meta = client.secrets.update_metadata(path, rotation=schedule)
    assert meta.rotation is not None and meta.rotation.policy == schedule
    assert meta.rotation.next_rotation_at is not None
    assert (meta.rotation.next_rotation_at.hour, meta.rotation.next_rotation_at.minute) == (3, 0)

    # Tags alone leave the schedule as it is; the value is never touched.
    meta = client.secrets.update_metadata(path, metadata={"tags": ["pci"]})
    assert meta.tags == ["pci"] and meta.rotation is not None and meta.rotation.policy == schedule

    meta = client.secrets.update_metadata(path, rotation=None)
    assert meta.rotation is not None and meta.rotation.status == "not_configured"
    assert meta.rotation.policy is None and meta.tags == ["pci"]
    assert client.secrets.read(path).data == {"api_key": "k1"}


def test_a_bad_schedule_is_refused(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "bad"
    client.secrets.write(path, data={"password": "p"}, secret_type="password")
    for bad in (
        {"interval": "soon", "strategy": "manual"},
        {"interval": "30d", "strategy": "sometimes"},
        {"interval": "30d", "strategy": "generate", "generator": {"length": 2}},
    ):
        with pytest.raises(ValidationError):
            client.secrets.update_metadata(path, rotation=bad)
    assert _status(client, path) == "not_configured"


# --- forced rotation ---------------------------------------------------------------------------


def test_rotate_generates_a_new_version_from_the_generator(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "stripe"
    client.secrets.write(
        path,
        data={"api_key": "sk_live_old", "account": "acct_1"},
        secret_type="api_key",
        metadata={
            "rotation": RotationPolicy(
                "30d", "generate", generator=RotationGenerator(length=24, charset="alphanumeric", prefix="sk_live_")
            )
        },
    )
    result = client.secrets.rotate(path, reason="compromise")
    assert (result.path, result.outcome, result.version) == (path, "rotated", 2)
    assert result.rotation.last_rotated_at is not None

    secret = client.secrets.read(path)
    assert secret.version == 2
    # The generated field changed and follows the generator; the others are kept.
    key = secret.data["api_key"]
    assert key.startswith("sk_live_") and len(key) == len("sk_live_") + 24 and key[8:].isalnum()
    assert key != "sk_live_old" and secret.data["account"] == "acct_1"
    assert client.secrets.read(path, version=1).data["api_key"] == "sk_live_old"

    events = client.events.list(types=["rotation.completed"], path_prefix=prefix).events
    assert [(e.type, e.path, e.version, e.reason, e.actor) for e in events] == [
        ("rotation.completed", path, 2, "compromise", "root")
    ]


def test_rotate_requests_rotation_of_external_and_manual_secrets(client: SyncScaiVaultClient, prefix: str) -> None:
    for strategy in ("external", "manual"):
        path = prefix + strategy
        client.secrets.write(path, data={"token": "t"}, metadata={"rotation": {"interval": "1d", "strategy": strategy}})
        result = client.secrets.rotate(path, reason="offboarding")
        assert (result.outcome, result.version) == ("requested", 1)
        assert client.secrets.read(path).version == 1
    requested = client.events.list(types="rotation.requested", path_prefix=prefix).events
    assert [(e.path, e.reason, e.actor) for e in requested] == [
        (prefix + "external", "offboarding", "root"),
        (prefix + "manual", "offboarding", "root"),
    ]


def test_rotate_needs_a_schedule_and_a_secret(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "plain", data={"k": "v"})
    with pytest.raises(ConflictError) as unscheduled:
        client.secrets.rotate(prefix + "plain")
    assert unscheduled.value.code == "rotation_not_configured"
    with pytest.raises(NotFoundError) as missing:
        client.secrets.rotate(prefix + "missing", reason="compromise")
    assert missing.value.code == "secret_not_found"
    with pytest.raises(ValidationError):
        client.secrets.rotate(prefix + "plain", reason="x" * 513)


# --- the due query -------------------------------------------------------------------------------


def _seed_intervals(client: SyncScaiVaultClient, prefix: str, intervals: dict[str, str]) -> None:
    for name, interval in intervals.items():
        client.secrets.write(
            prefix + name, data={"token": name}, metadata={"rotation": {"interval": interval, "strategy": "external"}}
        )


def test_due_lists_what_rotates_within_the_window_in_path_order(client: SyncScaiVaultClient, prefix: str) -> None:
    _seed_intervals(client, prefix, {"a-in-3d": "3d", "b-in-1h": "1h", "c-in-30d": "30d", "d-in-1d": "1d"})
    client.secrets.write(prefix + "unscheduled", data={"k": "v"})
    page = client.rotation.due(prefix=prefix)  # a week by default
    assert [s.path for s in page] == [prefix + "a-in-3d", prefix + "b-in-1h", prefix + "d-in-1d"]
    assert page.next_cursor is None
    assert all(s.strategy == "external" and not s.is_overdue and s.last_rotated_at is None for s in page)
    assert [s.path for s in client.rotation.due(within_hours=30, prefix=prefix)] == [
        prefix + "b-in-1h",
        prefix + "d-in-1d",
    ]
    everything = client.rotation.due(within_hours=24 * 31, prefix=prefix)
    assert len(everything) == 4
    # An entry says what the secret's metadata says.
    for entry in everything:
        rotation = client.secrets.read_metadata(entry.path).rotation
        assert rotation is not None and entry.next_rotation_at == rotation.next_rotation_at
    with pytest.raises(ValidationError):
        client.rotation.due(within_hours=0)


def test_iter_due_follows_every_page(client: SyncScaiVaultClient, prefix: str) -> None:
    _seed_intervals(client, prefix, {f"s{i}": f"{i + 1}h" for i in range(5)})
    pages = list(client.rotation.iter_pages(prefix=prefix, limit=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [s.path for s in client.rotation.iter_due(prefix=prefix, limit=2)] == [prefix + f"s{i}" for i in range(5)]


def test_due_shows_only_paths_the_caller_may_list(client: SyncScaiVaultClient, server: DevServer, prefix: str) -> None:
    _seed_intervals(client, prefix, {"team/a": "1d", "other/b": "1d"})
    policy = client.policies.create(
        f"list-{prefix.strip('/').replace('/', '-')}", [{"path_pattern": prefix + "team/**", "permissions": ["list"]}]
    )
    identity = f"sa:due-{prefix.split('/')[1]}"
    client.policies.add_binding(policy.id, "service_account", identity)
    with server.client(token=client.auth.create_token(identity).token) as team:
        assert [s.path for s in team.rotation.due(prefix=prefix)] == [prefix + "team/a"]
        seen = team.events.list(path_prefix=prefix).events
        assert seen and {e.path for e in seen} == {prefix + "team/a"}


# --- events ----------------------------------------------------------------------------------------


def test_events_page_on_from_last_seq(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "evt"
    for value in ("one", "two", "three"):
        client.secrets.write(path, data={"k": value})
    client.secrets.update_metadata(path, metadata={"tags": ["x"]})
    client.secrets.delete(path)
    mine = client.events.list(path_prefix=prefix)
    assert [e.type for e in mine] == [
        "secret.created",
        "secret.updated",
        "secret.updated",
        "secret.metadata_updated",
        "secret.deleted",
    ]
    assert [e.version for e in mine.events[:3]] == [1, 2, 3]
    assert all(e.id == f"evt_{e.seq}" and e.actor == "root" and e.path == path for e in mine)
    seqs = [e.seq for e in mine]
    assert seqs == sorted(seqs) and mine.last_seq >= seqs[-1]

    first = client.events.list(path_prefix=prefix, limit=2)
    rest = client.events.list(path_prefix=prefix, after=first.last_seq)
    assert [e.seq for e in first] + [e.seq for e in rest] == seqs
    assert [e.seq for e in client.events.iter_events(path_prefix=prefix, limit=2)] == seqs
    # Past the end: nothing, and the position does not move back.
    end = client.events.list(path_prefix=prefix, after=mine.last_seq)
    assert end.events == [] and end.last_seq >= mine.last_seq
    updates = client.events.list(types=["secret.updated", "secret.deleted"], path_prefix=prefix)
    assert [e.type for e in updates] == ["secret.updated", "secret.updated", "secret.deleted"]


def test_every_event_type_is_a_filter_and_an_unknown_one_is_refused(client: SyncScaiVaultClient) -> None:
    client.events.list(types=EVENT_TYPES, limit=1)
    with pytest.raises(ValidationError):
        client.events.list(types=["secret.peeked"])


# --- async -------------------------------------------------------------------------------------------


async def test_the_async_client_rotates_lists_due_and_reads_events(async_client: ScaiVaultClient, prefix: str) -> None:
    path = prefix + "pw"
    await async_client.secrets.write(path, data={"password": "old"}, secret_type="password")
    meta = await async_client.secrets.update_metadata(
        path, rotation=RotationPolicy("1d", "generate", generator=RotationGenerator(length=16, charset="symbols"))
    )
    assert meta.rotation is not None and meta.rotation.status == "scheduled"
    result = await async_client.secrets.rotate(path, reason="compromise")
    assert (result.outcome, result.version) == ("rotated", 2)
    password = (await async_client.secrets.read(path)).data["password"]
    assert len(password) == 16 and password != "old"

    due = [s.path async for s in async_client.rotation.iter_due(prefix=prefix, limit=1)]
    assert due == [path]
    assert [p.secrets[0].path async for p in async_client.rotation.iter_pages(prefix=prefix)] == [path]
    events = [e async for e in async_client.events.iter_events(types=["rotation.completed"], path_prefix=prefix)]
    assert [(e.path, e.reason) for e in events] == [(path, "compromise")]
    page = await async_client.events.list(path_prefix=prefix, types="secret.created")
    assert [e.type for e in page] == ["secret.created"]
    meta = await async_client.secrets.update_metadata(path, rotation=None)
    assert meta.rotation is not None and meta.rotation.status == "not_configured"


# --- overdue: a server whose wall clock the test moves -------------------------------------------------


class _Clock:
    """The dev server's wall clock, moved through ``tests/cookbook/clockshift.c`` (LD_PRELOAD)."""

    def __init__(self, workdir: Path) -> None:
        cc = shutil.which("cc") or shutil.which("gcc")
        assert cc, "a C compiler (cc) is needed to build the clock shim"
        self.library = workdir / "clockshift.so"
        subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-o", str(self.library), str(CLOCKSHIFT_SOURCE), "-ldl"],
            check=True,
            capture_output=True,
        )
        self.file = workdir / "clockshift.offset"
        self.file.write_bytes(struct.pack("=q", 0))

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.library), "CLOCKSHIFT_FILE": str(self.file)}

    def set(self, when: datetime) -> None:
        with self.file.open("r+b") as f:
            f.write(struct.pack("=q", round((when.timestamp() - time.time()) * 1e9)))


@pytest.fixture
def shifted(tmp_path: Path) -> Iterator[tuple[SyncScaiVaultClient, _Clock]]:
    clock = _Clock(tmp_path)
    with dev_server(env=clock.env()) as running, running.client() as c:
        yield c, clock


def test_overdue_secrets_are_left_out_unless_asked_for(shifted: tuple[SyncScaiVaultClient, _Clock]) -> None:
    client, clock = shifted
    now = datetime.now(timezone.utc)
    # Written with a 30-day interval and the default 24h grace, so many days ago that:
    ages = {"overdue": 40, "in-grace": 30.5, "due-soon": 27, "fresh": 1}
    for name, days in ages.items():
        clock.set(now - timedelta(days=days))
        client.secrets.write(
            f"app/{name}", data={"token": name}, metadata={"rotation": {"interval": "30d", "strategy": "manual"}}
        )
    clock.set(now)

    assert [(s.path, s.is_overdue) for s in client.rotation.due()] == [("app/due-soon", False), ("app/in-grace", False)]
    with_overdue = client.rotation.due(include_overdue=True)
    assert [(s.path, s.is_overdue) for s in with_overdue] == [
        ("app/due-soon", False),
        ("app/in-grace", False),
        ("app/overdue", True),
    ]
    assert _near(with_overdue.secrets[2].next_rotation_at, now - timedelta(days=10))
    states = {name: client.secrets.read_metadata(f"app/{name}").rotation for name in ages}
    assert {name: (r.status, r.is_overdue) for name, r in states.items() if r} == {
        "overdue": ("overdue", True),
        "in-grace": ("due", False),
        "due-soon": ("scheduled", False),
        "fresh": ("scheduled", False),
    }

    # A write of a new version is the rotation of a manual secret: it is no longer due.
    client.secrets.write("app/overdue", data={"token": "rotated"})
    assert [s.path for s in client.rotation.due(include_overdue=True)] == ["app/due-soon", "app/in-grace"]
    rotated = client.secrets.read_metadata("app/overdue").rotation
    assert rotated is not None and rotated.status == "scheduled" and _near(rotated.last_rotated_at, now)
