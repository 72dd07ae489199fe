#!/usr/bin/env python3
"""Admission latency of the injector, through the real kube-apiserver of e2e/.

`scaivault-injector` runs as a local process (release build, self-managed TLS: its CA is
written into the caBundle of its MutatingWebhookConfiguration), registered by URL with the
MutatingWebhookConfiguration of examples/injector.yaml: only `clientConfig` swapped for
`https://127.0.0.1:<port>/mutate` and the namespace selector narrowed to the bench's
namespace, as injector/tests/injector_e2e.rs registers it. No node runs: pods stay Pending.

Every create is one `POST /api/v1/namespaces/<ns>/pods` on a keep-alive HTTPS connection as
the environment's admin, timed in the driver from send to the whole answer read. All pods
carry the same annotations (`scaivault.io/secret-db`); opted-in pods also carry the label
`scaivault.io/inject: "true"`. Three phases, opted-in and plain creates alternating:

  1. no-webhook: no MutatingWebhookConfiguration (the apiserver alone: the baseline);
  2. webhook: the configuration registered and the injector up (opted-in pods are mutated);
  3. injector-stopped: the injector stopped, the configuration still registered: plain
     pods only (they never reach the webhook), and a few opted-in ones, which are refused
     (failurePolicy: Fail).

Between 2 and 3, the same number of AdmissionReviews of opted-in pods is posted to the
injector directly (what the apiserver sends it): the injector's own share of the cost.

Peer: vault-k8s (Vault's injector) is not on this machine's package registries, so the
comparison is the apiserver without the webhook, in the same run.

  SCAIVAULT_INJECTOR_BIN=.../scaivault-injector python3 bench/agent/admission.py
                                                            (make bench-admission)
  env: ADMISSION_PODS (200 per kind and phase), ADMISSION_WARMUP (20),
       ADMISSION_OUT (bench/results/admission.json), BENCH_KEEP_WORK (0),
       ADMISSION_KUBE (testenv | none: no apiserver, only the injector's own answers)
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from common import (REPO, KubeEnv, Proc, env_int, harness, log, machine, memory_mib,
                    ratio, run_ms, stop_all, stop_on_signals, summary_ms, tls_files, wait_for)

PODS = env_int("ADMISSION_PODS", 200)
WARMUP = env_int("ADMISSION_WARMUP", 20)
REFUSED_PROBES = 5
OUT = Path(os.environ.get("ADMISSION_OUT", "") or REPO / "bench" / "results" / "admission.json")
KEEP = os.environ.get("BENCH_KEEP_WORK", "0") not in ("0", "", "false", "no")
# testenv: the real kube-apiserver of e2e/ (every phase); none: no apiserver, only the
# injector's own answer to AdmissionReviews posted to it directly (machines without the
# e2e/ binaries).
KUBE = os.environ.get("ADMISSION_KUBE", "").strip() or "testenv"
NAMESPACE = "bench-admission"
WEBHOOK_CONFIG = "bench-injector"
WEBHOOK = "inject.scaivault.io"
ANNOTATIONS = {"scaivault.io/secret-db": "apps/web/db"}
OPT_IN = {"scaivault.io/inject": "true"}


def pod(name: str, opted_in: bool) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(OPT_IN) if opted_in else {"app": "web"},
                     "annotations": dict(ANNOTATIONS)},
        "spec": {
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }


def injected(created: dict) -> bool:
    inits = created.get("spec", {}).get("initContainers") or []
    return any(c.get("name") == "scaivault-agent" for c in inits)


def webhook_config(port: int) -> dict:
    docs = list(yaml.safe_load_all((REPO / "examples" / "injector.yaml").read_text()))
    config = copy.deepcopy(next(d for d in docs if d and d.get("kind") == "MutatingWebhookConfiguration"))
    config["metadata"]["name"] = WEBHOOK_CONFIG
    webhook = config["webhooks"][0]
    webhook["clientConfig"] = {"url": f"https://127.0.0.1:{port}/mutate"}
    webhook["namespaceSelector"]["matchExpressions"].append(
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [NAMESPACE]})
    return config


class Creator:
    """Creates pods one at a time and keeps each create's latency."""

    def __init__(self, kube: KubeEnv) -> None:
        self.api = kube.connection()
        self.n = 0

    def create(self, phase: str, opted_in: bool) -> tuple[float, int, dict | str]:
        self.n += 1
        name = f"{phase}-{'in' if opted_in else 'plain'}-{self.n}"
        t0 = time.perf_counter()
        status, body = self.api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod(name, opted_in))
        return time.perf_counter() - t0, status, body

    def phase(self, phase: str, kinds: list[bool], count: int) -> dict[str, list[float]]:
        """`count` creates of each kind in `kinds`, alternating; every one must be admitted,
        and mutated exactly when it opted in and the webhook is on."""
        out: dict[str, list[float]] = {"opted_in": [], "plain": []}
        for k in range(count):
            for opted_in in kinds:
                seconds, status, body = self.create(phase, opted_in)
                if status != 201:
                    raise RuntimeError(f"{phase}: create answered {status}: {body}")
                want = opted_in and phase == "webhook"
                if injected(body) != want:
                    raise RuntimeError(f"{phase}: pod {'not ' if want else ''}injected: "
                                       f"{json.dumps(body)[:500]}")
                out["opted_in" if opted_in else "plain"].append(seconds)
        return out


def admission_review(n: int) -> dict:
    """The AdmissionReview the apiserver sends for an opted-in pod's CREATE."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"00000000-0000-4000-8000-{n:012d}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": f"direct-{n}",
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
            "object": pod(f"direct-{n}", True),
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def direct(port: int, count: int) -> list[float]:
    """`count` AdmissionReviews of opted-in pods posted to the injector itself, one at a
    time on one keep-alive HTTPS connection (as the apiserver keeps one): the injector's own
    part of the webhook's cost. Each answer must allow the pod with a JSON patch."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    out = []
    try:
        for n in range(count):
            body = json.dumps(admission_review(n)).encode()
            t0 = time.perf_counter()
            conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            out.append(time.perf_counter() - t0)
            answer = json.loads(raw).get("response", {})
            if resp.status != 200 or not answer.get("allowed") or answer.get("patchType") != "JSONPatch":
                raise RuntimeError(f"direct AdmissionReview: HTTP {resp.status} {raw[:300]!r}")
    finally:
        conn.close()
    return out


def webhook_histogram(kube: KubeEnv) -> dict:
    """The apiserver's own view of the webhook call: count and sum of
    apiserver_admission_webhook_admission_duration_seconds for inject.scaivault.io."""
    api = kube.connection()
    try:
        text = api.metrics()
    finally:
        api.close()
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_admission_webhook_admission_duration_seconds_") and f'name="{WEBHOOK}"' in line:
            value = float(line.rsplit(" ", 1)[1])
            if line.startswith("apiserver_admission_webhook_admission_duration_seconds_count"):
                count += value
            elif line.startswith("apiserver_admission_webhook_admission_duration_seconds_sum"):
                total += value
    return {"count": count, "sum_s": total}


def injector_ready(port: int) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=2) as r:
        return r.status == 200


def injector_argv(binary: str, port: int) -> list[str]:
    return [binary, "--listen", f"127.0.0.1:{port}",
            "--agent-image", "scaivault.local/agent:bench",
            "--vault-addr", "https://scaivault.scaivault-system.svc:8200"]


def git_commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def injector_binary() -> str:
    binary = os.environ.get("SCAIVAULT_INJECTOR_BIN", "")
    if not binary:
        raise SystemExit("set SCAIVAULT_INJECTOR_BIN to a scaivault-injector binary")
    return binary


def injector_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("SCAIVAULT_")}


def measure_direct(port: int, injector: Proc) -> tuple[list[float], float, dict]:
    """AdmissionReviews posted to the injector itself (after a warm-up): their latencies,
    the injector's CPU milliseconds over them, its memory after."""
    log(f"direct: {WARMUP} warm-up + {PODS} AdmissionReviews posted to the injector")
    direct(port, WARMUP)
    cpu0 = run_ms(injector.pid)
    latencies = direct(port, PODS)
    return latencies, run_ms(injector.pid) - cpu0, memory_mib(injector.pid)


def run_direct(work: Path) -> dict:
    """ADMISSION_KUBE=none: the injector alone (certificate files, no apiserver), timed on
    the AdmissionReviews the apiserver would send it."""
    binary = injector_binary()
    port = harness.free_port()
    _, cert, key = tls_files(work / "tls")
    argv = injector_argv(binary, port) + ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    injector = Proc("scaivault-injector", argv, work / "injector.log", env=injector_env())
    try:
        wait_for("the injector's /readyz", lambda: injector_ready(port), timeout=60, proc=injector)
        latencies, cpu, memory = measure_direct(port, injector)
    finally:
        status = injector.stop()
    return {
        "bench": "admission",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git": git_commit(),
        "settings": {
            "kubernetes": "none (ADMISSION_KUBE=none): no apiserver phases, the injector's own answers only",
            "reviews": PODS, "warmup": WARMUP,
            "client": "python http.client, one keep-alive HTTPS connection, POST /mutate one at a time",
            "injector": " ".join(argv[1:]).replace(str(work), "<work>"),
        },
        "machine": machine(),
        "phases_ms": {"direct_to_injector": {"opted_in": summary_ms(latencies)}},
        "injector": {
            "cpu_ms_per_review": round(cpu / PODS, 3),
            "memory_mib_after": memory,
            "exit_status_on_sigterm": status,
        },
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def run(work: Path) -> dict:
    binary = injector_binary()
    cleanup = []
    try:
        log("starting kube-apiserver + etcd (e2e/testenv.sh)")
        kube = KubeEnv(work / "k8s")
        cleanup.append(kube.close)
        api = kube.connection()
        api.namespace(NAMESPACE)
        creator = Creator(kube)
        cleanup.append(creator.api.close)
        apiserver = kube.apiserver_pid

        log(f"warm-up: {WARMUP} creates of each kind, no webhook")
        creator.phase("warmup", [True, False], WARMUP)
        log(f"no-webhook: {PODS} opted-in + {PODS} plain")
        a_cpu0 = run_ms(apiserver)
        no_webhook = creator.phase("none", [True, False], PODS)
        a_cpu_none = run_ms(apiserver) - a_cpu0

        port = harness.free_port()
        api.create("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", webhook_config(port))
        env = injector_env()
        argv = injector_argv(binary, port) + [
            "--kubeconfig", kube.kubeconfig,
            "--self-signed-service", "scaivault-injector.scaivault-system",
            "--self-signed-ip", "127.0.0.1",
            "--webhook-config-name", WEBHOOK_CONFIG]
        t0 = time.perf_counter()
        injector = Proc("scaivault-injector", argv, work / "injector.log", env=env)
        cleanup.append(injector.stop)
        wait_for("the injector's /readyz (caBundle published)", lambda: injector_ready(port),
                 timeout=60, proc=injector)

        def reachable():
            _, status, body = creator.create("probe", True)
            if status == 201 and injected(body):
                return True
            if status == 201:
                raise RuntimeError(f"an opted-in pod was admitted without injection: {body}")
            return False  # "failed calling webhook" until the apiserver has the caBundle

        wait_for("the apiserver to call the injector", reachable, timeout=60, interval=0.2, proc=injector)
        ready_s = time.perf_counter() - t0
        log(f"injector ready and called by the apiserver {ready_s:.2f} s after spawn; warm-up")
        creator.phase("webhook", [True, False], WARMUP)
        log(f"webhook: {PODS} opted-in + {PODS} plain")
        hist0 = webhook_histogram(kube)
        i_cpu0, a_cpu0 = run_ms(injector.pid), run_ms(apiserver)
        with_webhook = creator.phase("webhook", [True, False], PODS)
        i_cpu = run_ms(injector.pid) - i_cpu0
        a_cpu_webhook = run_ms(apiserver) - a_cpu0
        hist1 = webhook_histogram(kube)
        direct_latencies, d_cpu, injector_memory = measure_direct(port, injector)
        injector_status = injector.stop()

        log(f"injector stopped: {PODS} plain, {REFUSED_PROBES} opted-in (refused)")
        stopped = creator.phase("stopped", [False], PODS)
        refused = []
        for _ in range(REFUSED_PROBES):
            seconds, status, body = creator.create("refused", True)
            if status == 201:
                raise RuntimeError("an opted-in pod was admitted while the injector was down")
            refused.append({"status": status, "ms": round(1000 * seconds, 2),
                            "message": (body.get("message", "") if isinstance(body, dict) else str(body))[:300]})
        api.close()

        webhook_calls = hist1["count"] - hist0["count"]
        phases = {
            "no_webhook": {k: summary_ms(v) for k, v in no_webhook.items()},
            "webhook": {k: summary_ms(v) for k, v in with_webhook.items()},
            "injector_stopped": {"plain": summary_ms(stopped["plain"])},
            "direct_to_injector": {"opted_in": summary_ms(direct_latencies)},
        }
        p = lambda phase, kind, q: phases[phase][kind].get(q)  # noqa: E731
        return {
            "bench": "admission",
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "git": git_commit(),
            "settings": {
                "pods_per_kind_and_phase": PODS, "warmup_per_kind": WARMUP,
                "client": "python http.client, one keep-alive HTTPS connection, admin bearer token, "
                          "creates one at a time, send to whole answer read",
                "pod": "one container (busybox, not pulled: no node), annotation scaivault.io/secret-db; "
                       "opted-in: label scaivault.io/inject=true",
                "webhook": "examples/injector.yaml's MutatingWebhookConfiguration, clientConfig url "
                           "https://127.0.0.1:<port>/mutate, namespaceSelector narrowed to the bench's namespace",
                "injector": " ".join(argv[1:]).replace(kube.kubeconfig, "<kubeconfig>"),
                "apiserver": "e2e/testenv.sh (kube-apiserver v1.37.2, etcd 3.7.0 --unsafe-no-fsync)",
                "peer": "vault-k8s is not available here: the baseline is the same apiserver without the webhook",
            },
            "machine": machine(),
            "phases_ms": phases,
            "webhook_cost_ms": {
                "p50_opted_in_minus_plain": round(p("webhook", "opted_in", "p50") - p("webhook", "plain", "p50"), 2),
                "p99_opted_in_minus_plain": round(p("webhook", "opted_in", "p99") - p("webhook", "plain", "p99"), 2),
                "p50_opted_in_minus_no_webhook": round(p("webhook", "opted_in", "p50")
                                                       - p("no_webhook", "opted_in", "p50"), 2),
                "apiserver_webhook_duration_mean_ms": round(1000 * (hist1["sum_s"] - hist0["sum_s"]) / webhook_calls, 2)
                if webhook_calls else None,
                "apiserver_webhook_calls": webhook_calls,
            },
            "ratios": {
                "opted_in_with_webhook_over_no_webhook_p50": ratio(p("webhook", "opted_in", "p50"),
                                                                    p("no_webhook", "opted_in", "p50")),
                "opted_in_with_webhook_over_no_webhook_p99": ratio(p("webhook", "opted_in", "p99"),
                                                                    p("no_webhook", "opted_in", "p99")),
                "plain_with_webhook_over_no_webhook_p50": ratio(p("webhook", "plain", "p50"),
                                                                 p("no_webhook", "plain", "p50")),
                "plain_with_webhook_over_no_webhook_p99": ratio(p("webhook", "plain", "p99"),
                                                                 p("no_webhook", "plain", "p99")),
                "plain_injector_stopped_over_no_webhook_p50": ratio(p("injector_stopped", "plain", "p50"),
                                                                     p("no_webhook", "plain", "p50")),
                "plain_injector_stopped_over_no_webhook_p99": ratio(p("injector_stopped", "plain", "p99"),
                                                                     p("no_webhook", "plain", "p99")),
            },
            "refused_while_injector_down": refused,
            "injector": {
                "spawn_to_called_s": round(ready_s, 2),
                "cpu_ms_webhook_phase": round(i_cpu, 2),
                "cpu_ms_per_admission": round(i_cpu / PODS, 3),
                "cpu_ms_per_direct_review": round(d_cpu / PODS, 3),
                "memory_mib_after_webhook_phase": injector_memory,
                "exit_status_on_sigterm": injector_status,
            },
            "apiserver_cpu_ms_per_create": {
                "no_webhook": round(a_cpu_none / (2 * PODS), 3),
                "webhook": round(a_cpu_webhook / (2 * PODS), 3),
                "note": "threads' schedstat run time over each phase, divided by its creates",
            },
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        stop_all(cleanup)


def main() -> int:
    stop_on_signals()
    work = Path(tempfile.mkdtemp(prefix="scaivault-bench-admission-"))
    try:
        if KUBE not in ("testenv", "none"):
            raise SystemExit(f"ADMISSION_KUBE must be testenv or none, not {KUBE!r}")
        result = run(work) if KUBE == "testenv" else run_direct(work)
    finally:
        if KEEP:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("phases_ms", "webhook_cost_ms", "ratios", "injector") if k in result},
                     indent=2))
    log(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
