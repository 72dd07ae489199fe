"""client.secrets against the real server (sync client)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scaivault_sdk import ConflictError, NotFoundError, SyncScaiVaultClient


def test_write_then_read_returns_value_type_and_metadata(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "db"
    written = client.secrets.write(
        path,
        data={"url": "postgres://u:p@db/app"},
        secret_type="database",
        metadata={"tags": ["billing"], "description": "main db"},
    )
    assert (written.path, written.version, written.expires_at) == (path, 1, None)

    secret = client.secrets.read(path)
    assert secret.data == {"url": "postgres://u:p@db/app"}
    assert (secret.path, secret.version, secret.secret_type) == (path, 1, "database")
    assert isinstance(secret.created_at, datetime) and secret.created_at.tzinfo is not None
    assert secret.expires_at is None
    assert secret.metadata["tags"] == ["billing"]
    assert secret.metadata["description"] == "main db"


def test_secret_type_defaults_to_generic(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "plain", data={"k": "v"})
    assert client.secrets.read(prefix + "plain").secret_type == "generic"


def test_read_a_specific_version(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "pw"
    client.secrets.write(path, data={"password": "one"})
    second = client.secrets.write(path, data={"password": "two"})
    assert second.version == 2
    assert client.secrets.read(path, version=1).data == {"password": "one"}
    assert client.secrets.read(path).data == {"password": "two"}
    assert client.secrets.read(path).version == 2


def test_read_metadata_describes_without_the_value(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "meta"
    client.secrets.write(path, data={"k": "v1"}, secret_type="api_key", metadata={"tags": ["a"]})
    client.secrets.write(path, data={"k": "v2"}, secret_type="api_key")
    meta = client.secrets.read_metadata(path)
    assert (meta.path, meta.secret_type, meta.current_version, meta.version_count) == (path, "api_key", 2, 2)
    assert [v.version for v in meta.versions] == [1, 2]
    assert meta.tags == ["a"]
    assert meta.deleted_at is None
    assert meta.rotation is not None and meta.rotation.status == "not_configured"
    assert not hasattr(meta, "data")


def test_update_metadata_replaces_tags_and_keeps_the_value(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "tagged"
    client.secrets.write(path, data={"k": "v"}, metadata={"tags": ["old"], "description": "d"})
    meta = client.secrets.update_metadata(path=path, metadata={"tags": ["new", "needs-rotation"]})
    assert sorted(meta.tags) == ["needs-rotation", "new"]
    assert meta.description == "d"
    assert meta.current_version == 1
    assert client.secrets.read(path).data == {"k": "v"}


def test_write_with_expiry_sets_expires_at(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "oauth"
    before = datetime.now(timezone.utc)
    written = client.secrets.write(path=path, data={"token": "t"}, options={"expires_in": "1h"})
    assert written.expires_at is not None
    assert timedelta(minutes=59) < written.expires_at - before < timedelta(minutes=61)
    read_back = client.secrets.read(path).expires_at
    assert read_back is not None and abs(read_back - written.expires_at) < timedelta(seconds=1)


def test_read_reports_the_timestamps_the_write_returned(client: SyncScaiVaultClient, prefix: str) -> None:
    written = client.secrets.write(prefix + "ts", data={"k": "v"}, options={"expires_in": "1h"})
    secret = client.secrets.read(prefix + "ts")
    assert (secret.created_at, secret.expires_at) == (written.created_at, written.expires_at)


def test_cas_zero_refuses_to_overwrite(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "cas"
    client.secrets.write(path, data={"k": "v"}, options={"cas": 0})
    with pytest.raises(ConflictError) as err:
        client.secrets.write(path, data={"k": "other"}, options={"cas": 0})
    assert err.value.code == "cas_mismatch"
    client.secrets.write(path, data={"k": "v2"}, options={"cas": 1})
    assert client.secrets.read(path).version == 2


def test_list_pages_and_iter_all_walks_every_page(client: SyncScaiVaultClient, prefix: str) -> None:
    paths = [f"{prefix}s{i}" for i in range(5)]
    for p in reversed(paths):
        client.secrets.write(p, data={"k": "v"}, metadata={"tags": ["x"]})

    first = client.secrets.list(prefix=prefix, limit=2)
    assert [item.path for item in first.data] == paths[:2]
    assert first.next_cursor
    second = client.secrets.list(prefix=prefix, limit=2, cursor=first.next_cursor)
    assert [item.path for item in second.data] == paths[2:4]

    pages = list(client.secrets.iter_pages(prefix=prefix, limit=2))
    assert [len(page) for page in pages] == [2, 2, 1]
    assert pages[-1].next_cursor is None
    items = list(client.secrets.iter_all(prefix=prefix, limit=2))
    assert [item.path for item in items] == paths
    assert all(item.tags == ["x"] and item.current_version == 1 for item in items)
    assert all(item.access_count_30d == 0 for item in items)


def test_list_with_metadata_adds_the_metadata_fields(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "m", data={"k": "v"}, metadata={"description": "hello"})
    (item,) = client.secrets.list(prefix=prefix, include_metadata=True).data
    assert item.description == "hello"
    assert item.version_count == 1
    assert item.created_at is not None


def test_access_count_counts_reads(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "read", data={"k": "v"})
    client.secrets.write(prefix + "unread", data={"k": "v"})
    client.secrets.read(prefix + "read")
    counts = {i.path: i.access_count_30d for i in client.secrets.iter_all(prefix=prefix)}
    assert counts == {prefix + "read": 1, prefix + "unread": 0}


def test_batch_read_reports_partial_success(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "a", data={"k": "a"})
    client.secrets.write(prefix + "b", data={"k": "b"})
    batch = client.secrets.batch_read([prefix + "a", prefix + "b", prefix + "missing"])
    assert {p: s.data for p, s in batch.secrets.items()} == {prefix + "a": {"k": "a"}, prefix + "b": {"k": "b"}}
    assert list(batch.errors) == [prefix + "missing"]
    assert batch.errors[prefix + "missing"].code == "secret_not_found"


def test_batch_read_splits_lists_longer_than_the_server_limit(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "first", data={"k": "1"})
    client.secrets.write(prefix + "last", data={"k": "2"})
    paths = [prefix + "first"] + [f"{prefix}none{i}" for i in range(148)] + [prefix + "last"]
    batch = client.secrets.batch_read(paths)
    assert sorted(batch.secrets) == [prefix + "first", prefix + "last"]
    assert len(batch.errors) == 148


def test_batch_read_of_nothing_sends_nothing(client: SyncScaiVaultClient) -> None:
    batch = client.secrets.batch_read([])
    assert batch.secrets == {} and batch.errors == {}


def test_soft_delete_then_restore(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "old"
    client.secrets.write(path, data={"k": "v"})
    client.secrets.delete(path)
    with pytest.raises(NotFoundError) as err:
        client.secrets.read(path)
    assert err.value.code == "secret_deleted"
    assert [i.path for i in client.secrets.iter_all(prefix=prefix)] == []
    deleted = list(client.secrets.iter_all(prefix=prefix, include_deleted=True, include_metadata=True))
    assert [i.path for i in deleted] == [path] and deleted[0].deleted_at is not None

    meta = client.secrets.restore(path)
    assert meta.deleted_at is None
    assert client.secrets.read(path).data == {"k": "v"}


def test_destroy_erases_every_version(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "gone"
    client.secrets.write(path, data={"k": "1"})
    client.secrets.write(path, data={"k": "2"})
    client.secrets.delete(path, destroy=True)
    for read in (lambda: client.secrets.read(path, version=1), lambda: client.secrets.read_metadata(path)):
        with pytest.raises(NotFoundError):
            read()


def test_versions_lists_every_version(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "v"
    for i in range(3):
        client.secrets.write(path, data={"i": i})
    versions = client.secrets.versions(path)
    assert [v.version for v in versions] == [1, 2, 3]
    assert all(v.created_by == "root" for v in versions)


def test_max_versions_drops_old_versions(client: SyncScaiVaultClient, prefix: str) -> None:
    path = prefix + "retained"
    for i in range(3):
        client.secrets.write(path, data={"i": i}, options={"max_versions": 2})
    with pytest.raises(NotFoundError) as err:
        client.secrets.read(path, version=1)
    assert err.value.code == "version_not_found"
    assert client.secrets.read(path, version=2).data == {"i": 1}
