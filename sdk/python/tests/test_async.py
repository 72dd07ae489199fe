"""The asyncio client against the real server: same API, awaited."""

from __future__ import annotations

import asyncio

import pytest

from scaivault_sdk import ScaiVaultClient
from scaivault_sdk.errors import AuthenticationError, ConflictError, NotFoundError
from scaivault_sdk.testing import DevServer


async def test_write_read_versions_and_metadata(async_client: ScaiVaultClient, prefix: str) -> None:
    path = prefix + "db"
    await async_client.secrets.write(path, data={"url": "one"}, secret_type="database", metadata={"tags": ["t"]})
    await async_client.secrets.write(path, data={"url": "two"}, secret_type="database")
    secret = await async_client.secrets.read(path)
    assert (secret.data, secret.version, secret.secret_type) == ({"url": "two"}, 2, "database")
    assert (await async_client.secrets.read(path, version=1)).data == {"url": "one"}
    meta = await async_client.secrets.read_metadata(path)
    assert (meta.current_version, meta.tags) == (2, ["t"])
    meta = await async_client.secrets.update_metadata(path, {"tags": ["u"]})
    assert meta.tags == ["u"]
    assert [v.version for v in await async_client.secrets.versions(path)] == [1, 2]


async def test_list_pages_and_iter_all(async_client: ScaiVaultClient, prefix: str) -> None:
    paths = [f"{prefix}{i}" for i in range(5)]
    await asyncio.gather(*(async_client.secrets.write(p, data={"k": "v"}) for p in paths))
    page = await async_client.secrets.list(prefix=prefix, limit=3)
    assert [i.path for i in page] == paths[:3] and page.next_cursor
    assert [i.path async for i in async_client.secrets.iter_all(prefix=prefix, limit=2)] == paths
    assert len([p async for p in async_client.secrets.iter_pages(prefix=prefix, limit=2)]) == 3


async def test_batch_delete_restore_destroy(async_client: ScaiVaultClient, prefix: str) -> None:
    await async_client.secrets.write(prefix + "a", data={"k": "a"})
    batch = await async_client.secrets.batch_read([prefix + "a", prefix + "b"])
    assert batch.secrets[prefix + "a"].data == {"k": "a"}
    assert batch.errors[prefix + "b"].code == "secret_not_found"

    await async_client.secrets.delete(prefix + "a")
    with pytest.raises(NotFoundError) as err:
        await async_client.secrets.read(prefix + "a")
    assert err.value.code == "secret_deleted"
    assert (await async_client.secrets.restore(prefix + "a")).deleted_at is None
    with pytest.raises(ConflictError):
        await async_client.secrets.restore(prefix + "a")
    await async_client.secrets.delete(prefix + "a", destroy=True)
    with pytest.raises(NotFoundError):
        await async_client.secrets.read_metadata(prefix + "a")


async def test_auth_tokens_sys_and_health(server: DevServer, async_client: ScaiVaultClient) -> None:
    assert (await async_client.auth.whoami()).identity_id == "root"
    created = await async_client.auth.create_token("user:alice@acme.example", ttl="10m")
    assert created.identity_type == "user"
    assert created.accessor in {t.accessor for t in await async_client.auth.list_tokens()}
    await async_client.auth.revoke_token(created.accessor)
    async with server.async_client(token=created.token) as revoked:
        with pytest.raises(AuthenticationError):
            await revoked.auth.whoami()

    rotated = await async_client.sys.rotate_keys()
    assert (await async_client.sys.keys()).active_key_id == rotated.key_id
    assert (await async_client.health()).status == "ok"
    assert (await async_client.health_detailed()).components["storage"].status == "ok"


async def test_concurrent_requests_share_one_client(async_client: ScaiVaultClient, prefix: str) -> None:
    await async_client.secrets.write(prefix + "c", data={"k": "v"})
    results = await asyncio.gather(*(async_client.secrets.read(prefix + "c") for _ in range(20)))
    assert {r.version for r in results} == {1}
