"""Client configuration from the environment, connection reuse, and what repr() reveals."""

from __future__ import annotations

import pytest

from scaivault_sdk import SyncScaiVaultClient
from scaivault_sdk.errors import ConfigurationError
from scaivault_sdk.testing import DevServer

VALUE = "hunter2-very-secret-value"


def test_address_and_token_default_from_the_environment(
    server: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCAIVAULT_ADDR", server.address)
    monkeypatch.setenv("SCAIVAULT_TOKEN", server.root_token)
    with SyncScaiVaultClient() as c:
        assert c.auth.whoami().identity_id == "root"


def test_without_an_address_the_client_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCAIVAULT_ADDR", raising=False)
    with pytest.raises(ConfigurationError, match="SCAIVAULT_ADDR"):
        SyncScaiVaultClient(token="svt_x")


def test_one_connection_serves_many_requests(client: SyncScaiVaultClient, prefix: str) -> None:
    # Connection reuse, observed from the client side: the pool holds one connection.
    client.secrets.write(prefix + "a", data={"k": "v"})
    for _ in range(5):
        client.secrets.read(prefix + "a")
    pool = client._transport._http._transport._pool  # type: ignore[attr-defined]
    assert len(pool.connections) == 1


def test_repr_of_a_secret_shows_keys_not_values(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "s", data={"password": VALUE, "user": "svc"})
    secret = client.secrets.read(prefix + "s")
    text = repr(secret)
    assert VALUE not in text and "svc" not in text
    assert "password" in text and "user" in text
    assert VALUE not in str(secret)


def test_repr_of_a_batch_hides_values(client: SyncScaiVaultClient, prefix: str) -> None:
    client.secrets.write(prefix + "s", data={"password": VALUE})
    batch = client.secrets.batch_read([prefix + "s"])
    assert VALUE not in repr(batch)
    assert VALUE not in repr(batch.secrets)


def test_repr_of_a_new_token_hides_it(client: SyncScaiVaultClient) -> None:
    created = client.auth.create_token("sa:repr-check", ttl="5m")
    assert created.token not in repr(created)
    assert created.accessor in repr(created)


def test_repr_of_clients_and_dev_server_hide_tokens(server: DevServer, client: SyncScaiVaultClient) -> None:
    assert server.root_token not in repr(client)
    assert server.root_token not in repr(server)
    assert server.address in repr(client)
