#!/usr/bin/env python3
"""The ScaiVault agent next to OpenBao's `bao agent`, rendering the same secrets into files.

Both vaults run as `make bench` runs them (bench/bench.py's ScaiVault and OpenBao classes:
release `scaivault-server dev` on SQLite with its audit log; the real `bao server` on
integrated raft with a file audit device, init + unseal, kv-v2 at `secret/`). ScaiVault
also gets `--kubernetes-kubeconfig` of a real kube-apiserver (e2e/testenv.sh), because its
agent logs in the way a pod's does: a TokenRequest token of a ServiceAccount in a file,
`POST /v1/auth/kubernetes/login`, checked by the vault with a TokenReview. `bao agent` logs
in with auto_auth `token_file` (a token of a read-only policy), as the brief allows.

The same N secrets (100-byte values) go into both; each agent renders every one into a
file of its own with the value as the content:
  - `scaivault-agent run` (sidecar mode), files `{"format": {"raw": "value"}}`; it is told
    of changes by the vault's event stream (push).
  - `bao agent -config=...`, one `template` stanza per secret,
    `{{ with secret "secret/data/agent/sNN" }}{{ .Data.data.value }}{{ end }}`. kv-v2 values
    have no lease, so bao agent re-reads them every `static_secret_render_interval`
    (default 5 m); here AGENT_BAO_RENDER_INTERVAL, default 1s, the smallest sensible value
    (polling).

Measured for each agent: time from spawn to every file rendered; VmRSS/VmHWM/RssAnon after
the first render, after an idle window and after the updates; CPU seconds (utime+stime of
/proc/<pid>/stat) over the idle window and over the update phase; and write-to-file
latency over M updates: from the vault's write call returning (and from its start) to the
file holding the new value, seen with inotify (no spinning). Updates are one at a time,
a random pause of 0..AGENT_UPDATE_GAP s before each (the same pauses for both), so a
write lands at a random point of bao agent's polling period.

  SCAIVAULT_BIN=.../scaivault-server SCAIVAULT_AGENT_BIN=.../scaivault-agent \\
    python3 bench/agent/agent.py          (make bench-agent)
  env: AGENT_SECRETS (10), AGENT_VALUE_BYTES (100), AGENT_UPDATES (50), AGENT_IDLE_SECONDS (30),
       AGENT_SETTLE_SECONDS (3), AGENT_UPDATE_GAP (1.0), AGENT_BAO_RENDER_INTERVAL (1s),
       AGENT_OUT (bench/results/agent.json), BAO_BIN, BENCH_KEEP_WORK (0)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (REPO, DirWatch, KubeEnv, Proc, cpu_seconds, env_float, env_int, harness,
                    log, machine, memory_mib, ratio, run_ms, stop_all, stop_on_signals, summary_ms, threads, wait_for)

SECRETS = env_int("AGENT_SECRETS", 10)
VALUE_BYTES = env_int("AGENT_VALUE_BYTES", 100)
UPDATES = env_int("AGENT_UPDATES", 50)
IDLE_SECONDS = env_float("AGENT_IDLE_SECONDS", 30)
SETTLE_SECONDS = env_float("AGENT_SETTLE_SECONDS", 3)
UPDATE_GAP = env_float("AGENT_UPDATE_GAP", 1.0)
BAO_INTERVAL = os.environ.get("AGENT_BAO_RENDER_INTERVAL", "").strip() or "1s"
OUT = Path(os.environ.get("AGENT_OUT", "") or REPO / "bench" / "results" / "agent.json")
KEEP = os.environ.get("BENCH_KEEP_WORK", "0") not in ("0", "", "false", "no")
SEED = 14
NAMESPACE, SERVICE_ACCOUNT, AUDIENCE = "bench-agent", "app", "scaivault"


def seconds_of(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix) and duration[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(duration[: -len(suffix)]) * units[suffix]
    raise SystemExit(f"AGENT_BAO_RENDER_INTERVAL: {duration!r} is not like 1s, 500ms or 5m")


def name_of(i: int) -> str:
    return f"s{i:02d}"


def path_of(i: int) -> str:
    return f"agent/{name_of(i)}"


def clean_env(drop: tuple[str, ...]) -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def expect(status_body, what: str, ok=(200, 201, 204)):
    status, body = status_body
    if status not in ok:
        raise RuntimeError(f"{what}: HTTP {status} {body}")
    return body


# ----------------------------------------------------------------------------- the two agents


class Agent:
    kind = ""
    label = ""

    def __init__(self, work: Path, server) -> None:
        self.server = server
        self.dir = work / f"{self.kind}-agent"
        self.files = self.dir / "secrets"
        self.files.mkdir(parents=True)
        self.proc: Proc | None = None

    def start(self) -> None:
        raise NotImplementedError

    def settings(self) -> dict:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rendered(self, values: dict[int, str]) -> bool:
        for i, want in values.items():
            try:
                if (self.files / name_of(i)).read_text() != want:
                    return False
            except (OSError, UnicodeDecodeError):
                return False
        return True


class ScaiVaultAgent(Agent):
    kind = "scaivault"
    label = "ScaiVault agent"

    def __init__(self, work: Path, server, jwt: str, kube_label: str, binary: str) -> None:
        super().__init__(work, server)
        self.binary = binary
        self.kube_label = kube_label
        self.ready_port = harness.free_port()
        self.token_file = self.dir / "token"
        self.token_file.write_text(jwt)
        identity = f"k8s:{NAMESPACE}/{SERVICE_ACCOUNT}"
        h = server.auth_headers()
        policy = expect(harness.call(server.port, "POST", "/v1/policies", headers=h, body={
            "name": "bench-agent",
            "rules": [{"path_pattern": "agent/**", "permissions": ["read", "list"]}],
        }), "create policy")
        expect(harness.call(server.port, "POST", f"/v1/policies/{policy['id']}/bindings", headers=h,
                            body={"identity_type": "kubernetes", "identity_id": identity}), "bind policy")
        self.config = {
            "version": 1,
            "mode": "sidecar",
            "vaultAddr": f"http://127.0.0.1:{server.port}",
            "tokenPath": str(self.token_file),
            "secretsDir": str(self.files),
            "readyPort": self.ready_port,
            "files": [{"name": name_of(i), "path": path_of(i), "content": {"format": {"raw": "value"}},
                       "mode": 0o644} for i in range(SECRETS)],
            "onChange": "none",
            "containers": ["app"],
        }

    def start(self) -> None:
        env = clean_env(("SCAIVAULT_",))
        env["SCAIVAULT_AGENT_CONFIG"] = json.dumps(self.config)
        self.proc = Proc("scaivault-agent", [self.binary, "run"], self.dir / "agent.log", env=env)

    def metrics(self) -> dict:
        st, text = harness.call(self.ready_port, "GET", "/metrics", timeout=5)
        out = {}
        if st == 200 and isinstance(text, str):
            for line in text.splitlines():
                if line.startswith("scaivault_agent_") and " " in line:
                    name, value = line.rsplit(" ", 1)
                    try:
                        out[name.removeprefix("scaivault_agent_")] = float(value)
                    except ValueError:
                        pass
        return out

    def settings(self) -> dict:
        return {
            "command": f"{self.binary} run",
            "config": "SCAIVAULT_AGENT_CONFIG: sidecar, one file per secret, format raw:value, mode 0644",
            "login": f"Kubernetes login (POST /v1/auth/kubernetes/login), {self.kube_label}",
            "updates": "push: the vault's event stream (GET /v1/events/stream), re-read on an event",
            "log": "default (SCAIVAULT_LOG=info), to a file",
        }


class BaoAgent(Agent):
    kind = "openbao"
    label = "bao agent"

    def __init__(self, work: Path, server, binary: str) -> None:
        super().__init__(work, server)
        self.binary = binary
        h = server.auth_headers()
        expect(harness.call(server.port, "PUT", "/v1/sys/policies/acl/bench-agent", headers=h, body={
            "policy": 'path "secret/data/agent/*" { capabilities = ["read"] }',
        }), "bao policy")
        token = expect(harness.call(server.port, "POST", "/v1/auth/token/create", headers=h, body={
            "policies": ["bench-agent"], "ttl": "1h", "display_name": "bench-agent",
        }), "bao token create")["auth"]["client_token"]
        self.token_file = self.dir / "token"
        self.token_file.write_text(token)
        templates = "".join(f'''
template {{
  destination = "{self.files / name_of(i)}"
  contents    = "{{{{ with secret \\"secret/data/{path_of(i)}\\" }}}}{{{{ .Data.data.value }}}}{{{{ end }}}}"
  perms       = "0644"
}}
''' for i in range(SECRETS))
        self.config_file = self.dir / "agent.hcl"
        self.config_file.write_text(f'''pid_file = "{self.dir / 'pid'}"

vault {{
  address = "http://127.0.0.1:{server.port}"
}}

auto_auth {{
  method {{
    type = "token_file"
    config = {{
      token_file_path = "{self.token_file}"
    }}
  }}
}}

template_config {{
  static_secret_render_interval = "{BAO_INTERVAL}"
  exit_on_retry_failure         = true
}}
{templates}''')

    def start(self) -> None:
        env = clean_env(("BAO_", "VAULT_"))
        self.proc = Proc("bao agent", [self.binary, "agent", f"-config={self.config_file}"],
                         self.dir / "agent.log", env=env)

    def settings(self) -> dict:
        return {
            "command": f"{self.binary} agent -config=agent.hcl",
            "config": (f"auto_auth token_file (a token of a policy reading secret/data/agent/*); "
                       f"{SECRETS} template stanzas, contents {{{{ with secret \"secret/data/agent/sNN\" }}}}"
                       f"{{{{ .Data.data.value }}}}{{{{ end }}}}, perms 0644; template_config "
                       f"static_secret_render_interval = \"{BAO_INTERVAL}\" (default 5m), "
                       f"exit_on_retry_failure = true"),
            "login": "auto_auth token_file",
            "updates": f"polling: every template's secrets re-read every {BAO_INTERVAL} "
                       "(kv-v2 values have no lease to watch)",
            "log": "default (info), to a file",
        }


# ----------------------------------------------------------------------------- phases


def snapshot(agents: list[Agent], servers) -> dict:
    return {
        "agents": {a.kind: cpu_seconds(a.pid) for a in agents},
        "servers": {s.kind: cpu_seconds(s.pid) for s in servers},
        "agents_run_ms": {a.kind: run_ms(a.pid) for a in agents},
        "servers_run_ms": {s.kind: run_ms(s.pid) for s in servers},
        "t": time.perf_counter(),
    }


def cpu_between(before: dict, after: dict, group: str, kind: str) -> dict:
    seconds = after[group][kind] - before[group][kind]
    ms = after[f"{group}_run_ms"][kind] - before[f"{group}_run_ms"][kind]
    window = after["t"] - before["t"]
    return {"seconds": round(seconds, 3), "window_s": round(window, 2),
            "share_of_one_core_pct": round(100 * seconds / window, 3) if window > 0 else None,
            "schedstat_ms": round(ms, 2)}


def updates(agent: Agent, gaps: list[float], timeout: float) -> dict:
    """UPDATES new values, one at a time, each timed until its file holds it."""
    server = agent.server
    watch = DirWatch(agent.files)
    from_return, from_start, missed = [], [], []
    conn = harness.http_client_conn(server.port, 30)
    cpu0, scpu0, t0 = cpu_seconds(agent.pid), cpu_seconds(server.pid), time.perf_counter()
    run0 = run_ms(agent.pid)
    try:
        for k in range(UPDATES):
            time.sleep(gaps[k])
            i = k % SECRETS
            value = harness.value_of(VALUE_BYTES, f"u{k}-{agent.kind}-{name_of(i)}")
            watch.drain()
            start = time.perf_counter()
            status = server.write(path_of(i), value, conn=conn)
            returned = time.perf_counter()
            if status not in (200, 204):
                raise RuntimeError(f"{server.kind} write {path_of(i)}: HTTP {status}")
            seen = watch.wait_content(agent.files / name_of(i), value, timeout)
            if seen is None:
                missed.append(k)
                continue
            from_return.append(max(0.0, seen - returned))
            from_start.append(seen - start)
    finally:
        conn.close()
        watch.close()
    t1 = time.perf_counter()
    cpu = cpu_seconds(agent.pid) - cpu0
    run = run_ms(agent.pid) - run0
    return {
        "updates": UPDATES,
        "seen": len(from_return),
        "missed": missed,
        "write_return_to_file_ms": summary_ms(from_return),
        "write_start_to_file_ms": summary_ms(from_start),
        "phase_seconds": round(t1 - t0, 2),
        "agent_cpu_seconds": round(cpu, 3),
        "agent_cpu_ms_per_update": round(1000 * cpu / UPDATES, 3) if UPDATES else None,
        "agent_schedstat_ms": round(run, 2),
        "server_cpu_seconds": round(cpu_seconds(server.pid) - scpu0, 3),
    }


def run(work: Path) -> dict:
    sv_agent_bin = os.environ.get("SCAIVAULT_AGENT_BIN", "")
    if not os.environ.get("SCAIVAULT_BIN") or not sv_agent_bin:
        raise SystemExit("set SCAIVAULT_BIN (scaivault-server) and SCAIVAULT_AGENT_BIN (scaivault-agent)")
    bao_interval_s = seconds_of(BAO_INTERVAL)
    update_timeout = max(10.0, 2 * bao_interval_s + 10)
    cleanup = []
    try:
        log("starting kube-apiserver + etcd (e2e/testenv.sh)")
        kube = KubeEnv(work / "k8s")
        cleanup.append(kube.close)
        api = kube.connection()
        api.namespace(NAMESPACE)
        api.service_account(NAMESPACE, SERVICE_ACCOUNT)
        jwt = api.token(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE)
        api.close()
        kube_label = ("a TokenRequest token of a real kube-apiserver (e2e/testenv.sh), which the vault "
                      "reviews (TokenReview)")
        cfg = harness.Config()
        shutil.rmtree(cfg.work, ignore_errors=True)  # Config made a work dir of its own
        cfg.work = work
        cfg.sv_extra_args = (cfg.sv_extra_args + f" --kubernetes-kubeconfig {kube.kubeconfig}").strip()
        sv, bao = harness.ScaiVault(cfg, work), harness.OpenBao(cfg, work)
        for server in (sv, bao):
            log(f"starting {server.kind}")
            cleanup.append(server.stop)
            server.first_start()
        sv_agent = ScaiVaultAgent(work, sv, jwt, kube_label, sv_agent_bin)
        bao_agent = BaoAgent(work, bao, bao.bin)
        agents = [sv_agent, bao_agent]
        values = {i: harness.value_of(VALUE_BYTES, f"v0-{name_of(i)}") for i in range(SECRETS)}
        for server in (sv, bao):
            for i, value in values.items():
                if server.write(path_of(i), value) not in (200, 204):
                    raise RuntimeError(f"{server.kind}: writing {path_of(i)} failed")
        log(f"{SECRETS} secrets of {VALUE_BYTES} bytes written to both")

        result: dict = {k.kind: {"agent": k.label, "settings": k.settings()} for k in agents}
        for agent in agents:
            t0 = time.perf_counter()
            agent.start()
            cleanup.append(agent.proc.stop)
            wait_for(f"{agent.label}: first render of {SECRETS} files", lambda: agent.rendered(values),
                     timeout=60, interval=0.005, proc=agent.proc)
            result[agent.kind]["first_render"] = {
                "spawn_to_all_files_ms": round(1000 * (time.perf_counter() - t0), 1),
                "agent_cpu_seconds": round(cpu_seconds(agent.pid), 3),
            }
            log(f"{agent.label}: {SECRETS} files rendered in "
                f"{result[agent.kind]['first_render']['spawn_to_all_files_ms']} ms")
        time.sleep(SETTLE_SECONDS)
        for agent in agents:
            result[agent.kind]["memory_mib"] = {"after_first_render": memory_mib(agent.pid)}
            result[agent.kind]["threads"] = threads(agent.pid)

        log(f"idle window: {IDLE_SECONDS:g} s, nothing written")
        before = snapshot(agents, (sv, bao))
        time.sleep(IDLE_SECONDS)
        after = snapshot(agents, (sv, bao))
        for agent in agents:
            result[agent.kind]["idle"] = {
                "agent_cpu": cpu_between(before, after, "agents", agent.kind),
                "server_cpu": cpu_between(before, after, "servers", agent.server.kind),
            }
            result[agent.kind]["memory_mib"]["after_idle"] = memory_mib(agent.pid)

        rng = random.Random(SEED)
        gaps = [rng.uniform(0, UPDATE_GAP) for _ in range(UPDATES)]
        for agent in agents:
            log(f"{agent.label}: {UPDATES} updates")
            result[agent.kind]["updates"] = updates(agent, gaps, update_timeout)
            u = result[agent.kind]["updates"]
            log(f"{agent.label}: write return to file p50 {u['write_return_to_file_ms'].get('p50')} ms, "
                f"p99 {u['write_return_to_file_ms'].get('p99')} ms, missed {len(u['missed'])}")
        for agent in agents:
            r = result[agent.kind]
            r["memory_mib"]["after_updates"] = memory_mib(agent.pid)
            # What the updates cost beyond the idle rate (for bao agent, its polling goes on).
            idle_rate = r["idle"]["agent_cpu"]["schedstat_ms"] / max(r["idle"]["agent_cpu"]["window_s"], 1e-9)
            u = r["updates"]
            beyond = u["agent_schedstat_ms"] - idle_rate * u["phase_seconds"]
            u["agent_schedstat_ms_per_update_beyond_idle"] = round(beyond / UPDATES, 3) if UPDATES else None
        result["scaivault"]["agent_metrics"] = sv_agent.metrics()
        for agent in agents:
            if not agent.proc.alive():
                raise RuntimeError(f"{agent.label} exited:\n{agent.proc.tail()}")
            result[agent.kind]["exit_status_on_sigterm"] = agent.proc.stop()

        s, o = result["scaivault"], result["openbao"]

        def mem(side, when, field):
            return side["memory_mib"][when].get(field)

        result["ratios_scaivault_over_openbao"] = {
            "vmrss_after_first_render": ratio(mem(s, "after_first_render", "VmRSS"),
                                              mem(o, "after_first_render", "VmRSS")),
            "vmrss_after_updates": ratio(mem(s, "after_updates", "VmRSS"), mem(o, "after_updates", "VmRSS")),
            "vmhwm_after_updates": ratio(mem(s, "after_updates", "VmHWM"), mem(o, "after_updates", "VmHWM")),
            "rssanon_after_updates": ratio(mem(s, "after_updates", "RssAnon"),
                                           mem(o, "after_updates", "RssAnon")),
            "idle_cpu_seconds": ratio(s["idle"]["agent_cpu"]["seconds"], o["idle"]["agent_cpu"]["seconds"]),
            "idle_cpu_schedstat": ratio(s["idle"]["agent_cpu"]["schedstat_ms"], o["idle"]["agent_cpu"]["schedstat_ms"]),
            "update_phase_cpu_seconds": ratio(s["updates"]["agent_cpu_seconds"], o["updates"]["agent_cpu_seconds"]),
            "update_phase_cpu_schedstat": ratio(s["updates"]["agent_schedstat_ms"], o["updates"]["agent_schedstat_ms"]),
            "write_to_file_p50": ratio(s["updates"]["write_return_to_file_ms"].get("p50"),
                                       o["updates"]["write_return_to_file_ms"].get("p50")),
            "write_to_file_p99": ratio(s["updates"]["write_return_to_file_ms"].get("p99"),
                                       o["updates"]["write_return_to_file_ms"].get("p99")),
            "first_render": ratio(s["first_render"]["spawn_to_all_files_ms"],
                                  o["first_render"]["spawn_to_all_files_ms"]),
        }
        git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        return {
            "bench": "agent",
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "git": git,
            "settings": {
                "secrets": SECRETS, "value_bytes": VALUE_BYTES, "updates": UPDATES,
                "idle_seconds": IDLE_SECONDS, "settle_seconds": SETTLE_SECONDS,
                "update_gap_max_s": UPDATE_GAP, "update_gap_seed": SEED,
                "bao_static_secret_render_interval": BAO_INTERVAL,
                "update_timeout_s": update_timeout,
                "kubernetes": "testenv",
                "latency": "from the write call's return (and from its start) to the file holding the new "
                           "value, seen by inotify in the driver",
            },
            "versions": {"scaivault": sv.version(), "openbao": bao.version()},
            "servers": {"scaivault": sv.settings(), "openbao": bao.settings()},
            "machine": machine(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            **result,
        }
    finally:
        stop_all(cleanup)


def main() -> int:
    stop_on_signals()
    work = Path(tempfile.mkdtemp(prefix="scaivault-bench-agent-"))
    try:
        result = run(work)
    finally:
        if KEEP:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ratios_scaivault_over_openbao",)}, indent=2))
    log(f"wrote {OUT}")
    complete = all(not result[k]["updates"]["missed"] for k in ("scaivault", "openbao"))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
