#!/usr/bin/env python3
"""Webhook delivery: N webhooks on one receiver, M writes, and for each delivery the time
from the write's start to its receipt (p50/p99/max); then a burst of writes as fast as the
server takes them, and how long until every webhook has every delivery (deliveries per
second). Each delivery's Standard Webhooks signature is checked, so a fast wrong answer
does not count. Server RSS idle and at its peak.

No peer runs here: OpenBao has no webhooks and Vault's event notifications are an
Enterprise feature, so the numbers stand alone. Standard library only.

  SCAIVAULT_BIN=target/release/scaivault-server python3 bench/webhooks/webhooks.py
  env: WEBHOOKS (20), WEBHOOK_WRITES (200), WEBHOOK_WRITES_PER_SECOND (20),
       WEBHOOK_BURST (500), WEBHOOK_OUT (bench/results/webhooks.json)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stream"))
from stream import free_port, percentile, rss_mib, run_bench, start_dev_server, write  # noqa: E402

WEBHOOKS = int(os.environ.get("WEBHOOKS", "20"))
WRITES = int(os.environ.get("WEBHOOK_WRITES", "200"))
RATE = float(os.environ.get("WEBHOOK_WRITES_PER_SECOND", "20"))
BURST = int(os.environ.get("WEBHOOK_BURST", "500"))
OUT = Path(os.environ.get("WEBHOOK_OUT", Path(__file__).resolve().parent.parent / "results" / "webhooks.json"))
SECRET_BYTES = secrets.token_bytes(32)
SECRET = "whsec_" + base64.b64encode(SECRET_BYTES).decode()


class Receiver:
    """A minimal HTTP/1.1 server: reads each request, checks its signature, answers 200."""

    def __init__(self) -> None:
        self.receipts: dict[int, list[float]] = {}
        self.bad_signatures = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode().split("\r\n")[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                now = time.perf_counter()
                message = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
                expected = "v1," + base64.b64encode(hmac.new(SECRET_BYTES, message, hashlib.sha256).digest()).decode()
                if expected not in headers.get("webhook-signature", "").split(" "):
                    self.bad_signatures += 1
                path = json.loads(body)["data"].get("path") or ""
                if path.startswith("stream/"):
                    self.receipts.setdefault(int(path.split("/")[1]), []).append(now)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def received(self) -> int:
        return sum(len(v) for v in self.receipts.values())


def call(port: int, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


async def wait_for(receiver: Receiver, count: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and receiver.received() < count:
        await asyncio.sleep(0.02)


def summary(latencies: list[float]) -> dict:
    return {
        "p50": round(percentile(latencies, 50), 2),
        "p99": round(percentile(latencies, 99), 2),
        "max": round(max(latencies), 2),
        "mean": round(statistics.fmean(latencies), 2),
    }


async def run(binary: str) -> dict:
    port, token = free_port(), "svt_hooks_" + secrets.token_hex(16)
    work = Path(tempfile.mkdtemp(prefix="scaivault-webhooks-"))
    server = start_dev_server(binary, port, token, work)
    receiver = Receiver()
    listener = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    hook_url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/hook"
    try:
        idle = rss_mib(server.pid)
        for i in range(WEBHOOKS):
            call(port, token, "POST", "/v1/webhooks", {
                "name": f"bench-{i}", "url": hook_url, "secret": SECRET,
                "events": ["secret.created"], "filters": {"path_prefix": "stream/"},
            })

        # Steady: writes at a rate, each delivered to every webhook.
        sent: dict[int, float] = {}
        started = time.perf_counter()
        for n in range(WRITES):
            await asyncio.sleep(max(0.0, started + n / RATE - time.perf_counter()))
            sent[n] = time.perf_counter()
            await write(port, token, n)
        await wait_for(receiver, WEBHOOKS * WRITES, 60)
        steady = [(t - sent[n]) * 1000 for n, times in receiver.receipts.items() if n in sent for t in times]
        steady_received = len(steady)

        # Burst: writes as fast as they are taken, then the time to deliver them all.
        burst_start = time.perf_counter()
        for n in range(WRITES, WRITES + BURST):
            sent[n] = time.perf_counter()
            await write(port, token, n)
        writes_done = time.perf_counter()
        await wait_for(receiver, WEBHOOKS * (WRITES + BURST), 300)
        drained = time.perf_counter()
        burst_received = receiver.received() - steady_received
        burst = [(t - sent[n]) * 1000 for n, times in receiver.receipts.items() if n >= WRITES for t in times]
        peak = rss_mib(server.pid, "VmHWM")
        return {
            "webhooks": WEBHOOKS,
            "steady": {
                "writes": WRITES,
                "writes_per_second": RATE,
                "deliveries_expected": WEBHOOKS * WRITES,
                "deliveries_received": steady_received,
                "write_to_receipt_ms": summary(steady),
            },
            "burst": {
                "writes": BURST,
                "write_seconds": round(writes_done - burst_start, 2),
                "deliveries_expected": WEBHOOKS * BURST,
                "deliveries_received": burst_received,
                "drain_seconds": round(drained - burst_start, 2),
                "deliveries_per_second": round(burst_received / (drained - burst_start), 1),
                "write_to_receipt_ms": summary(burst),
            },
            "bad_signatures": receiver.bad_signatures,
            "server_rss_mib": {"idle": round(idle, 1), "peak": round(peak, 1)},
            "machine": {"cores": os.cpu_count(), "load_at_end": os.getloadavg()},
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
    finally:
        listener.close()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def complete(result: dict) -> bool:
    delivered = all(result[k]["deliveries_received"] == result[k]["deliveries_expected"] for k in ("steady", "burst"))
    return delivered and result["bad_signatures"] == 0


def main() -> int:
    return run_bench(run, OUT, complete)


if __name__ == "__main__":
    sys.exit(main())
