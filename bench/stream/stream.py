#!/usr/bin/env python3
"""The event stream at scale: N subscribers on `GET /v1/events/stream`, M writes, the time
from each write's start to its event's receipt at every subscriber (p50/p99/max), and the
server's RSS idle, with the subscribers connected, and at its peak.

No peer runs here: Vault's event subscriptions are an Enterprise feature and OpenBao has
none, so the numbers stand alone. Standard library only (asyncio sockets), so the load
generator costs little next to the server on the same 2 cores.

  SCAIVAULT_BIN=target/release/scaivault-server python3 bench/stream/stream.py
  env: STREAM_SUBSCRIBERS (1000), STREAM_WRITES (200), STREAM_WRITES_PER_SECOND (20),
       STREAM_OUT (bench/results/stream.json)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SUBSCRIBERS = int(os.environ.get("STREAM_SUBSCRIBERS", "1000"))
WRITES = int(os.environ.get("STREAM_WRITES", "200"))
RATE = float(os.environ.get("STREAM_WRITES_PER_SECOND", "20"))
OUT = Path(os.environ.get("STREAM_OUT", Path(__file__).resolve().parent.parent / "results" / "stream.json"))
EVENT = re.compile(rb'"path":"stream/(\d+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, SUBSCRIBERS * 2 + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def subscribe(port: int, token: str, receipts: dict[int, list[float]], connected: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            "GET /v1/events/stream?path_prefix=stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"stream refused: {head[:200]!r}")
    connected[0] += 1
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        now = time.perf_counter()
        buffer += chunk
        # Whole lines only; a line cut by the read waits for its end.
        end = buffer.rfind(b"\n") + 1
        for match in EVENT.finditer(buffer, 0, end):
            receipts.setdefault(int(match.group(1)), []).append(now)
        buffer = buffer[end:]


async def write(port: int, token: str, n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"data": {"n": n}}).encode()
    writer.write(
        (
            f"PUT /v1/secrets/stream/{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
    )
    await writer.drain()
    status = await reader.readline()
    writer.close()
    if b" 200 " not in status:
        raise RuntimeError(f"write {n}: {status!r}")


def start_dev_server(binary: str, port: int, token: str, work: Path) -> subprocess.Popen:
    """`scaivault-server dev` on `port` with root token `token`, data in `work`, no rate
    limit; returns once it answers `/v1/health`."""
    env = dict(os.environ, SCAIVAULT_DEV_ROOT_TOKEN=token, SCAIVAULT_LOG="warn")
    server = subprocess.Popen(
        [binary, "dev", "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "data"), "--rate-limit-per-minute", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "wb"),
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return server


def run_bench(run, out: Path, complete) -> int:
    """Runs `run(binary)` on `$SCAIVAULT_BIN`, writes its result to `out` and prints it;
    exit status 0 when `complete(result)`."""
    binary = os.environ.get("SCAIVAULT_BIN")
    if not binary:
        print("set SCAIVAULT_BIN to a scaivault-server binary", file=sys.stderr)
        return 2
    result = asyncio.run(run(binary))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if complete(result) else 1


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def run(binary: str) -> dict:
    raise_fd_limit()
    port, token = free_port(), "svt_stream_" + secrets.token_hex(16)
    work = Path(tempfile.mkdtemp(prefix="scaivault-stream-"))
    server = start_dev_server(binary, port, token, work)
    try:
        idle = rss_mib(server.pid)
        receipts: dict[int, list[float]] = {}
        connected = [0]
        tasks = [asyncio.create_task(subscribe(port, token, receipts, connected)) for _ in range(SUBSCRIBERS)]
        while connected[0] < SUBSCRIBERS:
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                raise RuntimeError(f"a subscriber failed: {failed[0].exception()}")
            await asyncio.sleep(0.05)
        with_subscribers = rss_mib(server.pid)
        sent: dict[int, float] = {}
        started = time.perf_counter()
        for n in range(WRITES):
            target = started + n / RATE
            await asyncio.sleep(max(0.0, target - time.perf_counter()))
            sent[n] = time.perf_counter()
            await write(port, token, n)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and sum(len(v) for v in receipts.values()) < SUBSCRIBERS * WRITES:
            await asyncio.sleep(0.1)
        latencies = [(t - sent[n]) * 1000 for n, times in receipts.items() if n in sent for t in times]
        peak = rss_mib(server.pid, "VmHWM")
        for t in tasks:
            t.cancel()
        return {
            "subscribers": SUBSCRIBERS,
            "writes": WRITES,
            "writes_per_second": RATE,
            "deliveries_expected": SUBSCRIBERS * WRITES,
            "deliveries_received": len(latencies),
            "write_to_receipt_ms": {
                "p50": round(percentile(latencies, 50), 2),
                "p99": round(percentile(latencies, 99), 2),
                "max": round(max(latencies), 2),
                "mean": round(statistics.fmean(latencies), 2),
            },
            "server_rss_mib": {
                "idle": round(idle, 1),
                "with_subscribers": round(with_subscribers, 1),
                "peak": round(peak, 1),
            },
            "machine": {"cores": os.cpu_count(), "load_at_end": os.getloadavg()},
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    return run_bench(run, OUT, lambda r: r["deliveries_received"] == r["deliveries_expected"])


if __name__ == "__main__":
    sys.exit(main())
