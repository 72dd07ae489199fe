"""Running one recipe against a live dev server, supplying only what a reader supplies.

A recipe of docs/cookbook.md is self-contained: a reader has ``SCAIVAULT_ADDR`` and
``SCAIVAULT_TOKEN`` exported (the CLI and the SDK read them) and pastes the recipe. The
kitchen gives it exactly that environment and nothing else.

A reader of the contract brings more: the host (here the dev server's address), shell
variables such as ``$TOKEN``, the client's constructor arguments in place of ``...``,
and the names a snippet leaves open (``path``, ``value``, ``apply_config``...). For its
recipes the kitchen supplies exactly those and runs the recipe text otherwise untouched.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import os
import queue
import shlex
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


from cookbook import Recipe

from scaivault_sdk import SyncScaiVaultClient
from scaivault_sdk.testing import DevServer, find_moto_server, moto_server

CONSTRUCTOR_PLACEHOLDER = "SyncScaiVaultClient(...)"

# Names the cookbook leaves to the reader and the brief allows the runner to define.
# Anything else a recipe needs is recorded in `supplied` and printed after the run.
READER_NAMES = frozenset({"apply_config", "run_query", "path", "value", "initial_value"})

# Recipe title -> what the runner had to supply beyond that; printed after the run.
SUPPLIED: dict[str, set[str]] = {}

# Commands the shell recipes call. When a recipe's own `$PATH` variable (a secret
# path) replaces the shell's PATH, these stay findable through bash's command hash.
RECIPE_COMMANDS = ("curl", "jq", "grep", "sed", "cat", "date", "scaivault")


def find_cli() -> Path | None:
    explicit = os.environ.get("SCAIVAULT_CLI_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR")
    if target and (Path(target) / "debug" / "scaivault").exists():
        return Path(target) / "debug" / "scaivault"
    found = shutil.which("scaivault")
    return Path(found) if found else None


@dataclass
class Kitchen:
    """One recipe's world: a fresh server, a seeding client, a working directory."""

    server: DevServer
    workdir: Path
    cli: Path | None
    # Set for recipes whose check moves the server's wall clock (``Expectation.clock``).
    clock: ShiftedClock | None = None
    client: SyncScaiVaultClient = field(init=False)
    env: dict[str, str] = field(init=False, repr=False)
    supplied: list[str] = field(default_factory=list)
    # What the last Python recipe printed.
    printed: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.client = self.server.client()
        self.env = self._environment()

    def close(self) -> None:
        self.client.close()

    # --- shell recipes (curl + jq, the scaivault CLI) -----------------------------------

    def shell(
        self,
        recipe: Recipe,
        timeout: float = 60,
        *,
        placeholders: dict[str, tuple[str, str]] | None = None,
        **variables: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run a bash recipe with ``variables`` set the way a reader would ``export`` them.

        ``placeholders`` maps text a contract recipe leaves for the reader to fill in (a
        ``whsec_...``, another service's host) to ``(what the runner puts there, what
        that is)``; each one used is reported as supplied. A self-contained recipe gets
        none of either: only ``SCAIVAULT_ADDR`` and ``SCAIVAULT_TOKEN``, which every
        recipe's environment has.
        """
        code = recipe.with_host(self.server.address)
        if recipe.self_contained:
            variables = {}
        else:
            variables.setdefault("TOKEN", self.server.root_token)
            for text, (value, what) in (placeholders or {}).items():
                if text in code:
                    code = code.replace(text, value)
                    self.supplied.append(f"{what} in place of `{text}`")
        script = self._shell_prelude(variables) + code
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The CLI reads its server and token from the environment, as documented.
        env["SCAIVAULT_ADDR"] = self.server.address
        env["SCAIVAULT_TOKEN"] = self.server.root_token
        if self.cli is not None:
            bindir = self.workdir.parent / "bin"
            bindir.mkdir(exist_ok=True)
            (bindir / "scaivault").symlink_to(self.cli)
            env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _shell_prelude(self, variables: dict[str, str]) -> str:
        lines = ["set -o pipefail"]
        for name, value in variables.items():
            if name == "PATH":
                lines += self._pinned_path(value)
            else:
                lines.append(f"export {name}={shlex.quote(value)}")
        return "\n".join(lines) + "\n"

    def _pinned_path(self, value: str) -> list[str]:
        """Set the recipe's ``$PATH`` (a secret path) without losing the commands.

        Assigning PATH empties bash's command hash, so the pins come after it:
        ``hash -p`` tells bash where each command lives, and lookups never consult
        PATH again. A reader who follows the recipe literally gets
        "curl: command not found"; see the report.
        """
        self.supplied.append("bash `hash -p` pins for the commands, since $PATH holds a secret path")
        pins = []
        for command in RECIPE_COMMANDS:
            where = shutil.which(command, path=self.env["PATH"])
            if where:
                pins.append(f"hash -p {shlex.quote(where)} {command}")
        return [f"PATH={shlex.quote(value)}", *pins]

    def file(self, recipe: Recipe, name: str, content: str) -> Path:
        """A file the recipe expects in its working directory (``./config.json``).

        Written only for a contract recipe: a self-contained one makes its own files.
        """
        target = self.workdir / name
        if not recipe.self_contained:
            self.supplied.append(f"the file ./{name} in the working directory")
            target.write_text(content)
        return target

    # --- Python recipes -------------------------------------------------------------------

    def python(self, recipe: Recipe, **names: Any) -> dict[str, Any]:
        """Exec a Python recipe; return its namespace so the test can look at the result.

        What it prints is kept in ``printed``. A self-contained recipe runs with the
        reader's environment only: ``names`` are ignored and its client reads
        ``SCAIVAULT_ADDR`` / ``SCAIVAULT_TOKEN``. For a contract recipe ``names`` are what
        the snippet leaves to the reader, and ``client`` is supplied unless the recipe
        builds its own, whose ``...`` becomes the dev server's address and token.
        """
        code = recipe.code
        namespace: dict[str, Any] = {"__name__": "__cookbook__"}
        if not recipe.self_contained:
            namespace.update(names)
            self.supplied += [f"Python name `{n}`" for n in sorted(set(names) - READER_NAMES)]
            if CONSTRUCTOR_PLACEHOLDER in code:
                arguments = f"address={self.server.address!r}, token={self.server.root_token!r}"
                code = code.replace(CONSTRUCTOR_PLACEHOLDER, f"SyncScaiVaultClient({arguments})")
            elif "client" in _free_names(code):
                namespace["client"] = self.client
                self.supplied.append("`client`, built as the cookbook's first recipe builds it")
        previous = Path.cwd()
        os.chdir(self.workdir)
        out = io.StringIO()
        try:
            with _environment(self.env, ("SCAIVAULT_ADDR", "SCAIVAULT_TOKEN")), redirect_stdout(out):
                exec(compile(code, f"<cookbook: {recipe.title}>", "exec"), namespace)
        finally:
            os.chdir(previous)
            self.printed = out.getvalue()
            recipe_client = namespace.get("client")
            if isinstance(recipe_client, SyncScaiVaultClient) and recipe_client is not self.client:
                recipe_client.close()
        return namespace


@contextmanager
def _environment(source: dict[str, str], keys: tuple[str, ...]) -> Iterator[None]:
    """``os.environ`` holds ``keys`` from ``source`` for the duration, as a reader's shell would."""
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update({key: source[key] for key in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def undefined_names(code: str) -> set[str]:
    """Names a snippet reads that neither it nor Python defines: a paste would raise NameError."""
    return _free_names(code) - set(dir(builtins))


def _free_names(code: str) -> set[str]:
    """Names a snippet reads without assigning or importing them."""
    tree = ast.parse(code)
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return used - bound


# --- the world around the server: a shifted wall clock, an S3 service -----------------------

CLOCKSHIFT_SOURCE = Path(__file__).with_name("clockshift.c")


class ShiftedClock:
    """The dev server's wall clock, movable while it runs (``clockshift.c`` preloaded).

    Recipes about "last month" need audit records from last month; the server stamps
    records with its own clock, so the runner moves that clock while seeding. Monotonic
    time is untouched.
    """

    def __init__(self, workdir: Path) -> None:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise RuntimeError("a C compiler (cc) is needed to build the clock shim")
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
        """From now on the server's clock reads ``when`` (and runs on from there)."""
        offset = round((when.timestamp() - time.time()) * 1e9)
        with self.file.open("r+b") as f:
            f.write(struct.pack("=q", offset))


@dataclass
class Delivery:
    """One POST a ``WebhookReceiver`` got: headers (names lower-cased) and the raw body."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP endpoint on loopback for recipes that create webhooks (the dev server may
    deliver to loopback); it answers every POST 200 and keeps what it got."""

    def __init__(self) -> None:
        self.got: queue.Queue[Delivery] = queue.Queue()
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                got.put(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[WebhookReceiver]:
        receiver = cls()
        try:
            yield receiver
        finally:
            receiver._http.shutdown()
            receiver._http.server_close()

    def wait_for(self, wanted: Any, timeout: float = 30) -> list[Delivery]:
        """Everything received until ``wanted(delivery)`` held for one (which is last)."""
        deadline = time.monotonic() + timeout
        seen: list[Delivery] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no wanted delivery within {timeout} s; got {[d.json() for d in seen]}")
            try:
                delivery = self.got.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(delivery)
            if wanted(delivery):
                return seen


@dataclass
class MotoS3:
    """A real S3 API (``moto_server``) on loopback, for recipes that export to S3."""

    endpoint: str
    process: subprocess.Popen[bytes] = field(repr=False)

    @classmethod
    @contextmanager
    def running(cls, workdir: Path) -> Iterator[MotoS3]:
        if find_moto_server() is None:
            raise RuntimeError("moto_server not found: `pip install 'moto[server]'` (make sdk-venv does)")
        with moto_server(workdir) as moto:
            yield cls(moto.endpoint, moto.process)

    def client(self) -> Any:
        import boto3  # moto[server] brings it

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="moto",
            aws_secret_access_key="moto",
            region_name="us-east-1",
        )
