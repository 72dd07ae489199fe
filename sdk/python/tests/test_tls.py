"""TLS verification is on by default; ``ca_cert`` trusts a private CA.

The dev server speaks plain HTTP, so the test puts a TLS-terminating TCP relay (with a
self-signed certificate made by ``openssl``) in front of the real server.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scaivault_sdk import ScaiVaultClient, SyncScaiVaultClient
from scaivault_sdk.errors import ConfigurationError, TransportError
from scaivault_sdk.testing import DevServer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def tls_address(server: DevServer, certificate: tuple[Path, Path]) -> Iterator[str]:
    upstream = urlsplit(server.address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()  # the client refused our certificate: that is the point
                continue
            backend = socket.create_connection((upstream.hostname, upstream.port))
            threading.Thread(target=_pump, args=(tls, backend), daemon=True).start()
            threading.Thread(target=_pump, args=(backend, tls), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{port}"
    listener.close()


def test_unknown_ca_is_refused_by_default(server: DevServer, tls_address: str) -> None:
    with SyncScaiVaultClient(address=tls_address, token=server.root_token) as c:
        with pytest.raises(TransportError) as err:
            c.auth.whoami()
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_ca_cert_trusts_the_private_ca(
    server: DevServer, tls_address: str, certificate: tuple[Path, Path]
) -> None:
    with SyncScaiVaultClient(address=tls_address, token=server.root_token, ca_cert=certificate[0]) as c:
        assert c.auth.whoami().identity_id == "root"


async def test_async_client_uses_the_ca_too(
    server: DevServer, tls_address: str, certificate: tuple[Path, Path]
) -> None:
    async with ScaiVaultClient(address=tls_address, token=server.root_token, ca_cert=certificate[0]) as c:
        assert (await c.auth.whoami()).identity_id == "root"


def test_ca_cert_from_the_environment(
    server: DevServer, tls_address: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCAIVAULT_CACERT", str(certificate[0]))
    with SyncScaiVaultClient(address=tls_address, token=server.root_token) as c:
        assert c.health().status == "ok"


def test_verify_false_skips_verification(server: DevServer, tls_address: str) -> None:
    with SyncScaiVaultClient(address=tls_address, token=server.root_token, verify=False) as c:
        assert c.health().status == "ok"


def test_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        SyncScaiVaultClient(address="https://127.0.0.1:1", token="svt_x", ca_cert=tmp_path / "none.pem")
