"""What bench/agent/agent.py and bench/agent/admission.py share: the real kube-apiserver of
e2e/ (started and stopped with e2e/testenv.sh), a small Kubernetes REST client (the
environment's admin token over TLS, keep-alive), process figures from /proc, an inotify
wait for a file's content, and percentiles. Standard library only.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
import bench as harness  # noqa: E402  (bench/bench.py: the servers, /proc readers)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{Path(sys.argv[0]).stem} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def env_int(name: str, default: int) -> int:
    return harness.env_int(name, default)


def env_float(name: str, default: float) -> float:
    return harness.env_float(name, default)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank on the sorted values (the same rule as bench/stream/stream.py)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p90": round(percentile(ms, 90), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
        "mean": round(sum(ms) / len(ms), 2),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


# ----------------------------------------------------------------------------- /proc


def memory_kib(pid: int) -> dict:
    """VmRSS, VmHWM, RssAnon and RssFile of `pid` in KiB (missing when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def memory_mib(pid: int) -> dict:
    return {k: round(v / 1024, 2) for k, v in memory_kib(pid).items()}


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads)."""
    return harness.proc_cpu_seconds(pid)


def run_ms(pid: int) -> float:
    """Time on a CPU of every live thread of `pid`, in ms, from /proc/<pid>/task/*/schedstat
    (nanoseconds: finer than the 10 ms ticks of utime+stime, which round a nearly idle
    process to 0; a thread that has exited is no longer counted)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    return total / 1e6


def threads(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine() -> dict:
    """bench.py's machine record (cores, CPU model, memory, kernel, load), less wrk."""
    info = harness.machine_info()
    info.pop("wrk", None)
    return info


# ----------------------------------------------------------------------------- processes


class Proc:
    """A process in a session of its own, its output in a file; stop() signals the group."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.logf = open(log_path, "wb")
        self.popen = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                      cwd=cwd)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=5)
        self.logf.close()
        return self.popen.returncode

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def stop_on_signals() -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C does, so every `finally` stops what it started."""
    def raise_exit(signum, _frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, raise_exit)


def stop_all(cleanup: list) -> None:
    """Calls each stop function, last started first; one failing does not keep the rest
    from running."""
    for stop in reversed(cleanup):
        try:
            stop()
        except Exception as e:  # noqa: BLE001 - keep stopping the rest
            log(f"cleanup: {e}")


def wait_for(what: str, pred, timeout: float = 60, interval: float = 0.05, proc: Proc | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (status {proc.popen.returncode}) while waiting for "
                               f"{what}:\n{proc.tail()}")
        try:
            r = pred()
            if r:
                return r
        except (OSError, http.client.HTTPException, ValueError) as e:
            last = e
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} ({last})"
                       + (f"\n{proc.tail()}" if proc else ""))


# ----------------------------------------------------------------------------- inotify

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100


class DirWatch:
    """inotify on one directory (writes in place and renames into it), so the driver sleeps
    in select() instead of spinning a core the agents need."""

    def __init__(self, directory: Path) -> None:
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
        if self.libc.inotify_add_watch(self.fd, str(directory).encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")

    def drain(self) -> None:
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except BlockingIOError:
                return

    def wait_content(self, path: Path, want: str, timeout: float) -> float | None:
        """perf_counter() when `path` first holds exactly `want`, or None after `timeout`."""
        deadline = time.perf_counter() + timeout
        while True:
            try:
                if path.read_text() == want:
                    return time.perf_counter()
            except (OSError, UnicodeDecodeError):
                pass
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                self.drain()

    def close(self) -> None:
        os.close(self.fd)


# ----------------------------------------------------------------------------- Kubernetes


def e2e_env() -> dict:
    env = dict(os.environ)
    env.setdefault("E2E_BIN_DIR", str(REPO / "e2e" / ".bin"))
    return env


class KubeEnv:
    """`e2e/testenv.sh start DIR` (a real kube-apiserver + etcd), stopped by close()."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.env_file = directory / "env"
        t0 = time.perf_counter()
        out = subprocess.run(["bash", str(REPO / "e2e" / "testenv.sh"), "start", str(directory)],
                             env=e2e_env(), capture_output=True, text=True)
        if out.returncode != 0:
            subprocess.run(["bash", str(REPO / "e2e" / "testenv.sh"), "stop", str(directory)],
                           env=e2e_env(), capture_output=True)
            raise RuntimeError(f"e2e/testenv.sh start failed:\n{out.stdout}\n{out.stderr}")
        self.start_seconds = time.perf_counter() - t0
        values = dict(line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line)
        self.port = int(values["TESTENV_APISERVER_PORT"])
        self.apiserver_pid = int(values["TESTENV_APISERVER_PID"])
        self.etcd_pid = int(values["TESTENV_ETCD_PID"])
        self.ca_file = values["TESTENV_CA_FILE"]
        self.kubeconfig = values["KUBECONFIG"]
        self.token = Path(values["TESTENV_ADMIN_TOKEN_FILE"]).read_text().strip()
        self.ctx = ssl.create_default_context(cafile=self.ca_file)

    def close(self) -> None:
        subprocess.run(["bash", str(REPO / "e2e" / "testenv.sh"), "stop", str(self.dir)],
                       env=e2e_env(), capture_output=True)

    def connection(self) -> "Kube":
        return Kube(self)


class Kube:
    """One keep-alive HTTPS connection to the apiserver as the environment's admin."""

    def __init__(self, env: KubeEnv) -> None:
        self.env = env
        self.conn = http.client.HTTPSConnection("127.0.0.1", env.port, context=env.ctx, timeout=30)

    def request(self, method: str, path: str, body=None) -> tuple[int, dict | str]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.env.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed: one new connection, once.
                self.conn.close()
                if attempt == 2:
                    raise
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def create(self, path: str, body: dict, ok=(200, 201)) -> dict:
        st, out = self.request("POST", path, body)
        if st not in ok:
            raise RuntimeError(f"POST {path}: HTTP {st} {out}")
        return out

    def namespace(self, name: str) -> None:
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def service_account(self, ns: str, name: str) -> None:
        self.create(f"/api/v1/namespaces/{ns}/serviceaccounts",
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})

    def token(self, ns: str, sa: str, audience: str, seconds: int = 3600) -> str:
        out = self.create(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": seconds},
        })
        return out["status"]["token"]

    def metrics(self) -> str:
        st, out = self.request("GET", "/metrics")
        if st != 200 or not isinstance(out, str):
            raise RuntimeError(f"GET /metrics: HTTP {st}")
        return out

    def close(self) -> None:
        self.conn.close()


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a serving certificate for 127.0.0.1 signed by it (the openssl command;
    webpki refuses a CA certificate as a server's own): (ca.crt, tls.crt, tls.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "tls.crt", directory / "tls.key", directory / "tls.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for argv in (
        ["req", "-x509", *ec, "-days", "1", "-subj", "/CN=bench CA", "-keyout", ca_key, "-out", ca_cert],
        ["req", "-new", *ec, "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
         "-extfile", "/dev/stdin", "-out", cert],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True,
                       input=b"subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    return ca_cert, cert, key


