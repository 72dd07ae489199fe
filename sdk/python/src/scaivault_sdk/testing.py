"""Run a throwaway ``scaivault-server dev`` (and moto, for S3 exports) for tests.

    with dev_server() as server:
        client = server.client()

    with moto_server(workdir) as moto:
        ...  # an S3 API at ``moto.endpoint``

The server listens on a free port of 127.0.0.1, keeps its data in a temporary
directory and is stopped (and the directory removed) on exit. The binary is
``SCAIVAULT_SERVER_BIN``, else ``$CARGO_TARGET_DIR/debug/scaivault-server``, else
``scaivault-server`` on ``PATH``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .client import ScaiVaultClient, SyncScaiVaultClient

_ADDRESS = re.compile(r"Address:\s+(https?://\S+)")
_ROOT_TOKEN = re.compile(r"Root token:\s+(svt_\S+)")


def find_server_binary() -> Path:
    explicit = os.environ.get("SCAIVAULT_SERVER_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR")
    if target and (Path(target) / "debug" / "scaivault-server").exists():
        return Path(target) / "debug" / "scaivault-server"
    on_path = shutil.which("scaivault-server")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError(
        "scaivault-server not found: set SCAIVAULT_SERVER_BIN or CARGO_TARGET_DIR, or build it"
    )


@dataclass
class DevServer:
    address: str
    root_token: str = field(repr=False)
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def client(self, token: str | None = None, **kwargs: Any) -> SyncScaiVaultClient:
        return SyncScaiVaultClient(address=self.address, token=token or self.root_token, **kwargs)

    def async_client(self, token: str | None = None, **kwargs: Any) -> ScaiVaultClient:
        return ScaiVaultClient(address=self.address, token=token or self.root_token, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def dev_server(
    binary: str | os.PathLike[str] | None = None,
    *,
    rate_limit_per_minute: int | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[DevServer]:
    """Start a server; ``extra_args`` go to ``scaivault-server dev``, ``env`` adds variables."""
    exe = Path(binary) if binary else find_server_binary()
    if not exe.exists():
        raise FileNotFoundError(f"server binary {exe} does not exist: build it first")
    workdir = Path(tempfile.mkdtemp(prefix="scaivault-dev-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    log_path = workdir / "server.log"
    token = f"svt_test_{secrets.token_hex(16)}"
    args = [str(exe), "dev", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--root-token", token]
    if rate_limit_per_minute is not None:
        args += ["--rate-limit-per-minute", str(rate_limit_per_minute)]
    args += list(extra_args)
    # Output goes to a file, not a pipe: nobody drains a pipe after start-up, and a
    # full pipe would block the server mid-test.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None,
        )
    try:
        address, root_token = _wait_until_listening(process, log_path, startup_timeout)
        yield DevServer(address, root_token, data_dir, log_path, process)
    finally:
        _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_listening(
    process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        address, token = _ADDRESS.search(text), _ROOT_TOKEN.search(text)
        if address and token:
            return address.group(1), token.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"scaivault-server exited with {process.returncode}:\n{text[-4000:]}")
        time.sleep(0.05)
    raise TimeoutError(
        f"scaivault-server printed no Address/Root token line in {timeout}s:\n"
        + log_path.read_text(errors="replace")[-4000:]
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def find_moto_server() -> Path | None:
    """``moto_server`` beside this Python (the SDK venv), else on ``PATH``."""
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return beside
    found = shutil.which("moto_server")
    return Path(found) if found else None


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes] = field(repr=False)


@contextmanager
def moto_server(workdir: Path, startup_timeout: float = 30.0) -> Iterator[MotoServer]:
    """A real S3 API (``moto_server``) on a free loopback port, stopped on exit.

    Its log is ``workdir / "moto.log"``. Raises ``FileNotFoundError`` when moto is not
    installed (``pip install 'moto[server]'``; ``make sdk-venv`` does).
    """
    exe = find_moto_server()
    if exe is None:
        raise FileNotFoundError("moto_server not found: `pip install 'moto[server]'` (make sdk-venv does)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = workdir / "moto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # Ready once it answers HTTP: poll with a deadline, failing early if it exits.
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                httpx.get(endpoint + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start:\n" + log_path.read_text()[-2000:]) from None
                time.sleep(0.1)
        yield MotoServer(endpoint, process)
    finally:
        _stop(process)
