"""client.audit against the real server: queries, paging, summaries, verify, HMAC, exports."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from scaivault_sdk import ExportFailedError, PolicyRule, ScaiVaultClient, SyncScaiVaultClient
from scaivault_sdk.errors import NotFoundError, PermissionDeniedError, ValidationError
from scaivault_sdk.testing import DevServer, dev_server, find_moto_server, moto_server

UNLIMITED = 1_000_000


def _sa(client: SyncScaiVaultClient, prefix: str) -> tuple[str, str, str]:
    """A service account allowed to read and write under ``prefix``: (identity, token, accessor)."""
    identity = f"sa:{uuid.uuid4().hex[:12]}"
    policy = client.policies.create(f"audit-{identity[3:]}", [PolicyRule(prefix + "**", ["read", "write"])])
    client.policies.add_binding(policy.id, "service_account", identity)
    token = client.auth.create_token(identity, ttl="1h")
    return identity, token.token, token.accessor


def test_every_request_leaves_a_record(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "db"
    client.secrets.write(path, data={"k": "v"})
    client.secrets.read(path)
    with pytest.raises(NotFoundError):
        client.secrets.read(prefix + "missing")
    records = client.audit.logs(path=path).logs
    assert [(r.action, r.outcome, r.status, r.identity_id) for r in records] == [
        ("secrets.write", "success", 200, "root"),
        ("secrets.read", "success", 200, "root"),
    ]
    read = records[1]
    assert read.id.startswith("aud_") and read.request_id.startswith("req_")
    assert (read.permission, read.source_ip, read.path) == ("secrets:read", "127.0.0.1", path)
    assert read.user_agent and read.user_agent.startswith("scaivault-sdk-python/")
    assert read.prev_hash == records[0].hash or read.seq > records[0].seq + 1
    assert read.timestamp.tzinfo is not None
    missing = client.audit.logs(path=prefix + "missing", outcome="failure").logs
    assert [(r.action, r.status) for r in missing] == [("secrets.read", 404)]


def test_pages_and_iteration_cover_every_record_once(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "paged"
    client.secrets.write(path, data={"k": "v"})
    for _ in range(6):
        client.secrets.read(path)
    first = client.audit.logs(path=path, limit=3)
    assert len(first) == 3 and first.next_cursor
    pages = list(client.audit.iter_pages(path=path, limit=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert pages[-1].next_cursor is None
    seqs = [r.seq for r in client.audit.iter_logs(path=path, limit=2)]
    assert seqs == sorted(set(seqs)) and len(seqs) == 7
    assert seqs == [r.seq for page in pages for r in page]
    reads = list(client.audit.iter_logs(path=path, action="secrets.read", limit=4))
    assert len(reads) == 6


def test_time_ranges(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "ranged"
    client.secrets.write(path, data={"k": "v"})
    now = datetime.now(timezone.utc)
    assert len(client.audit.logs(now - timedelta(minutes=5), path=path)) == 1
    assert len(client.audit.logs(now + timedelta(minutes=5), path=path)) == 0
    assert len(client.audit.logs(to=now - timedelta(minutes=5), path=path)) == 0
    # Naive datetimes are UTC; a date `to` includes the whole day.
    naive = (now - timedelta(minutes=5)).replace(tzinfo=None)
    assert len(client.audit.logs(naive, now.date(), path=path)) == 1
    assert len(client.audit.logs(str(now.date()), path=path)) == 1
    with pytest.raises(ValidationError) as err:
        client.audit.logs("last tuesday")
    assert err.value.code == "invalid_request"
    with pytest.raises(ValidationError):
        client.audit.logs(limit=0)
    with pytest.raises(ValidationError):
        client.audit.logs(cursor="not-a-cursor")


def test_for_secret_and_for_identity(client: SyncScaiVaultClient, server: DevServer, prefix: str) -> None:
    identity, token, _ = _sa(client, prefix)
    client.secrets.write(prefix + "a", data={"k": "v"})
    client.secrets.write(prefix + "b", data={"k": "v"})
    with server.client(token=token) as sa:
        sa.secrets.read(prefix + "a")
        sa.secrets.read(prefix + "a")
        sa.secrets.write(prefix + "b", data={"k": "w"})
        with pytest.raises(PermissionDeniedError):
            sa.secrets.read("elsewhere/secret")

    since = datetime.now(timezone.utc) - timedelta(hours=24)
    on_a = client.audit.for_secret(prefix + "a", from_=since)
    assert [(r.identity_id, r.action) for r in on_a] == [
        ("root", "secrets.write"),
        (identity, "secrets.read"),
        (identity, "secrets.read"),
    ]

    activity = client.audit.for_identity(identity, from_=date.today() - timedelta(days=1))
    assert [(r.action, r.outcome) for r in activity] == [
        ("secrets.read", "success"),
        ("secrets.read", "success"),
        ("secrets.write", "success"),
        ("secrets.read", "denied"),
    ]
    summary = activity.summary
    assert summary.total == 4
    assert summary.by_action == {"secrets.read": 3, "secrets.write": 1}
    # Only what it touched successfully; the denied read is not a resource accessed.
    assert summary.resources_accessed == [prefix + "a", prefix + "b"]
    assert summary.first_seen == activity.logs[0].timestamp
    assert summary.last_seen == activity.logs[-1].timestamp

    nobody = client.audit.for_identity("user:nobody@acme.example")
    assert (nobody.logs, nobody.summary.total, nobody.summary.first_seen) == ([], 0, None)


def test_hmac_finds_a_token_s_records(client: SyncScaiVaultClient, server: DevServer, prefix: str) -> None:
    identity, token, accessor = _sa(client, prefix)
    with server.client(token=token) as sa:
        sa.auth.whoami()
    digest = client.audit.hmac(accessor)
    assert len(digest) == 64 and accessor not in digest
    assert digest == client.audit.hmac(accessor)
    mine = [r for r in client.audit.iter_logs(identity=identity, limit=1000)]
    assert mine and {r.accessor_hmac for r in mine} == {digest}


def test_verify_the_chain(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "v", data={"k": "v"})
    result = client.audit.verify()
    assert result.verified is True and result.first_broken is None
    assert result.checked >= 2 and result.first_seq == 1
    assert result.last_seq is not None and result.last_seq >= result.checked
    today = client.audit.verify(from_=date.today(), to=date.today())
    assert today.verified and 0 < today.checked <= client.audit.verify().checked


def test_audit_needs_permission(server: DevServer, client: SyncScaiVaultClient) -> None:
    token = client.auth.create_token(f"sa:{uuid.uuid4().hex[:12]}", ttl="1h")
    with server.client(token=token.token) as nobody:
        for call in (
            lambda: nobody.audit.logs(),
            lambda: nobody.audit.for_secret("a/b"),
            lambda: nobody.audit.for_identity("root"),
            lambda: nobody.audit.verify(),
            lambda: nobody.audit.hmac("x"),
            lambda: nobody.audit.export("2026-01-01", "2026-01-02", {"type": "file", "path": "x"}),
            lambda: nobody.audit.export_status("exp_x"),
        ):
            with pytest.raises(PermissionDeniedError):
                call()


# --- exports -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevServer, Path]]:
    exports = tmp_path_factory.mktemp("exports")
    with dev_server(
        rate_limit_per_minute=UNLIMITED, extra_args=["--audit-export-dir", str(exports)]
    ) as running:
        yield running, exports


def test_export_to_a_file(export_server: tuple[DevServer, Path], prefix: str) -> None:
    server, exports = export_server
    with server.client() as client:
        for i in range(5):
            client.secrets.write(prefix + f"s{i}", data={"k": i})
        day = date.today()
        job = client.audit.export(day, day, {"type": "file", "path": "daily/today.jsonl"})
        assert job.id.startswith("exp_") and job.status in ("running", "completed")
        assert (job.format, job.destination) == ("jsonl", {"type": "file", "path": "daily/today.jsonl"})
        assert job.from_ == datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        done = client.audit.wait_for_export(job.id, timeout=30)
        assert (done.status, done.error) == ("completed", None) and done.completed_at is not None
        assert client.audit.export_status(job.id) == done

        lines = (exports / "daily" / "today.jsonl").read_text().splitlines()
        exported = [json.loads(line) for line in lines]
        assert done.records_exported == len(exported) >= 5
        assert [(o.records, o.bytes) for o in done.objects] == [(len(exported), sum(len(x) + 1 for x in lines))]
        # Every record up to the last one exported, in order, exactly as the log holds it.
        last = exported[-1]["seq"]
        logged = [r for r in client.audit.iter_logs(day, day, limit=1000) if r.seq <= last]
        assert [e["seq"] for e in exported] == list(range(1, last + 1))
        # Queries leave out a mutation's request record once its response record follows;
        # the export keeps both.
        logged_seqs = {r.seq for r in logged}
        assert all(e.get("phase") == "request" for e in exported if e["seq"] not in logged_seqs)
        shown = [(e["seq"], e["hash"]) for e in exported if e["seq"] in logged_seqs]
        assert shown == [(r.seq, r.hash) for r in logged]
        writes = [e for e in exported if e["action"] == "secrets.write" and e.get("phase") == "response"]
        assert [e["path"] for e in writes] == [prefix + f"s{i}" for i in range(5)]


def test_export_errors(export_server: tuple[DevServer, Path], server: DevServer) -> None:
    exporting, _ = export_server
    with exporting.client() as client:
        with pytest.raises(NotFoundError):
            client.audit.export_status("exp_0000000000000000")
        with pytest.raises(ValidationError):
            client.audit.export("2026-01-01", "2026-01-02", {"type": "file", "path": "../escape.jsonl"})
        with pytest.raises(ValidationError):
            client.audit.export("2026-02-01", "2026-01-01", {"type": "file", "path": "x.jsonl"})
        with pytest.raises(ValidationError):
            client.audit.export("2026-01-01", "2026-01-02", {"type": "file", "path": "x.jsonl"}, format="csv")
        with pytest.raises(NotFoundError):
            client.audit.export(
                "2026-01-01", "2026-01-02",
                {"type": "s3", "bucket": "b-1", "credentials_path": "no/such/secret"},
            )
    # Without --audit-export-dir, file exports are refused.
    with server.client() as plain, pytest.raises(ValidationError) as err:
        plain.audit.export("2026-01-01", "2026-01-02", {"type": "file", "path": "x.jsonl"})
    assert "--audit-export-dir" in err.value.message


def test_a_failed_export_raises_with_the_job(export_server: tuple[DevServer, Path], unused_port: int) -> None:
    server, _ = export_server
    with server.client() as client:
        client.secrets.write(
            "infra/aws/nowhere",
            data={"access_key_id": "AKIA", "secret_access_key": "s3cr3t", "endpoint": f"http://127.0.0.1:{unused_port}"},
        )
        job = client.audit.export(
            date.today(), date.today(),
            {"type": "s3", "bucket": "acme-audit", "prefix": "x/", "credentials_path": "infra/aws/nowhere"},
        )
        with pytest.raises(ExportFailedError) as err:
            client.audit.wait_for_export(job.id, timeout=60)
    failed = err.value.job
    assert (failed.id, failed.status) == (job.id, "failed")
    assert failed.error and "s3cr3t" not in failed.error
    assert err.value.code == "export_failed"


async def test_async_audit(export_server: tuple[DevServer, Path], prefix: str) -> None:
    server, exports = export_server
    async with server.async_client() as client:
        assert isinstance(client, ScaiVaultClient)
        await client.secrets.write(prefix + "x", data={"k": "v"})
        await client.secrets.read(prefix + "x")
        page = await client.audit.logs(path=prefix + "x", limit=1)
        assert len(page) == 1 and page.next_cursor
        assert [r.action async for r in client.audit.iter_logs(path=prefix + "x", limit=1)] == [
            "secrets.write",
            "secrets.read",
        ]
        assert [r.action for r in await client.audit.for_secret(prefix + "x")] == ["secrets.write", "secrets.read"]
        assert (await client.audit.for_identity("root")).summary.total > 0
        assert (await client.audit.verify()).verified
        assert len(await client.audit.hmac("acc_x")) == 64
        job = await client.audit.export(date.today(), date.today(), {"type": "file", "path": "async.jsonl"})
        done = await client.audit.wait_for_export(job.id, timeout=30)
        assert done.status == "completed" and (await client.audit.export_status(job.id)).records_exported > 0
        assert (exports / "async.jsonl").is_file()


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API on loopback (``moto_server``, installed by ``make sdk-venv``)."""
    if find_moto_server() is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    with moto_server(tmp_path_factory.mktemp("moto")) as moto:
        yield moto.endpoint


def test_export_to_s3(export_server: tuple[DevServer, Path], moto_endpoint: str, prefix: str) -> None:
    server, _ = export_server
    boto3 = pytest.importorskip("boto3", reason="moto[server] brings boto3")
    s3 = boto3.client(
        "s3", endpoint_url=moto_endpoint, aws_access_key_id="AKIASDK",
        aws_secret_access_key="sdk-secret", region_name="us-east-1",
    )
    s3.create_bucket(Bucket="sdk-audit")
    with server.client() as client:
        client.secrets.write(
            prefix + "s3-creds",
            data={"access_key_id": "AKIASDK", "secret_access_key": "sdk-secret", "endpoint": moto_endpoint},
        )
        client.secrets.write(prefix + "marker", data={"k": "v"})
        day = date.today()
        job = client.audit.export(
            day, day,
            {"type": "s3", "bucket": "sdk-audit", "prefix": "daily/", "credentials_path": prefix + "s3-creds"},
        )
        done = client.audit.wait_for_export(job.id, timeout=60)
        assert done.status == "completed" and [o.location for o in done.objects] == ["daily/part-00000.jsonl"]
        listed = s3.list_objects_v2(Bucket="sdk-audit")["Contents"]
        assert [o["Key"] for o in listed] == ["daily/part-00000.jsonl"]
        body = s3.get_object(Bucket="sdk-audit", Key="daily/part-00000.jsonl")["Body"].read()
        exported = [json.loads(line) for line in body.decode().splitlines()]
        assert len(exported) == done.records_exported == done.objects[0].records
        assert len(body) == done.objects[0].bytes == listed[0]["Size"]
        last = exported[-1]["seq"]
        logged = [r for r in client.audit.iter_logs(day, day, limit=1000) if r.seq <= last]
        logged_seqs = {r.seq for r in logged}
        assert all(e.get("phase") == "request" for e in exported if e["seq"] not in logged_seqs)
        assert [(e["seq"], e["hash"]) for e in exported if e["seq"] in logged_seqs] == [(r.seq, r.hash) for r in logged]
        assert any(e["path"] == prefix + "marker" for e in exported)
