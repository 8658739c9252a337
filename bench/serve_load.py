"""Bounded load on a real `tunelab serve` (bundled model, 127.0.0.1): many concurrent clients
sending a mix of valid, invalid and oversized requests, streamed and not, for a fixed time.

Valid requests ask for 8 tokens. Reports requests/s, p50/p99 latency (all and by kind), the
count of 5xx answers (must be 0), the share of 429 (load shedding) and the server's peak RSS.
Prints one JSON line.

    .venv/bin/python bench/serve_load.py [--clients 64] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

MODEL = "smollm2-135m-instruct"
KEY = "load-test-key-0001"
BODY_LIMIT = 1 << 20
QUESTIONS = ["Name a fruit.", "Say hello in French.", "What is 2 + 2?", "Give one word for happy.",
             "Turn this note into a calendar entry.\n\nlunch with Ana Friday 1pm"]


def request_mix(rng: random.Random) -> tuple[str, str, dict | bytes, bool]:
    """(kind, path, body, streamed) for one request; kinds: valid, invalid, oversized."""
    roll = rng.random()
    question = rng.choice(QUESTIONS)
    if roll < 0.55:
        stream = rng.random() < 0.5
        if rng.random() < 0.5:
            body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 8,
                    "temperature": rng.choice([0, 0.7]), "stream": stream}
            return "valid", "/v1/chat/completions", body, stream
        body = {"model": MODEL, "prompt": question, "max_tokens": 8, "temperature": 0, "stream": stream}
        return "valid", "/v1/completions", body, stream
    if roll < 0.9:
        bad = rng.choice([{"seed": 2**70}, {"temperature": -1}, {"top_p": 2}, {"n": 5}, {"max_tokens": -1},
                          {"messages": []}, {"tools": [{"type": "function", "function": {"name": "f"}}]},
                          {"model": "no-such-model"}, {"messages": [{"role": "user", "content": [
                              {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}])
        body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 8, **bad}
        return "invalid", "/v1/chat/completions", body, False
    return "oversized", "/v1/chat/completions", b"{" + b" " * (BODY_LIMIT + 1024) + b"}", False


async def one(client: httpx.AsyncClient, rng: random.Random) -> tuple[str, int, float]:
    kind, path, body, stream = request_mix(rng)
    start = time.perf_counter()
    try:
        if isinstance(body, bytes):
            r = await client.post(path, content=body, headers={"Content-Type": "application/json"})
            status = r.status_code
        elif stream:
            async with client.stream("POST", path, json=body) as r:
                status = r.status_code
                async for line in r.aiter_lines():
                    if line.startswith("data: {\"error\""):
                        status = 599  # an error inside a stream counts as a server error
        else:
            status = (await client.post(path, json=body)).status_code
    except httpx.HTTPError:
        status = 0  # the connection failed: counted apart
    return kind, status, time.perf_counter() - start


async def run_clients(url: str, clients: int, seconds: float) -> tuple[list[tuple[str, int, float]], int]:
    """Each client sends one request after another until ``seconds`` have passed; requests
    still in flight then are abandoned (the clients disconnect) and counted as unfinished."""
    results: list[tuple[str, int, float]] = []
    in_flight = [0]

    async def client_loop(k: int) -> None:
        rng = random.Random(k)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"},
                                     timeout=seconds + 30) as client:
            while True:
                in_flight[0] += 1
                outcome = await one(client, rng)
                in_flight[0] -= 1
                results.append(outcome)

    tasks = [asyncio.ensure_future(client_loop(k)) for k in range(clients)]
    await asyncio.wait(tasks, timeout=seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return results, in_flight[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else 0.0


def watch_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], proc.memory_info().rss)
        except psutil.Error:
            return
        stop.wait(0.2)


def start_server(port: int, folder: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("tunelab")
    server = subprocess.Popen([str(exe), "serve", "--model", MODEL, "--port", str(port), "--db",
                               str(Path(folder) / "log.sqlite")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env={**os.environ, "TUNELAB_API_KEY": KEY})
    for _ in range(900):
        if server.poll() is not None:
            raise SystemExit(f"tunelab serve exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("tunelab serve did not start")


def summarise(results: list[tuple[str, int, float]], seconds: float, peak_rss: int, idle_rss: int) -> dict:
    latency = {kind: {"p50": round(1000 * percentile([lat for k, s, lat in results if k == kind], 0.5)),
                      "p99": round(1000 * percentile([lat for k, s, lat in results if k == kind], 0.99))}
               for kind in ("valid", "invalid", "oversized")}
    statuses = [s for _, s, _ in results]
    by_kind: dict[str, dict[str, int]] = {}
    for kind, status, _ in results:
        counts = by_kind.setdefault(kind, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
    ok = [lat for _, s, lat in results if s == 200]
    return {
        "requests": len(results), "seconds": round(seconds, 1), "requests_per_s": round(len(results) / seconds, 1),
        "ok_per_s": round(len(ok) / seconds, 2),
        "latency_ms": {"p50": round(1000 * percentile([lat for *_, lat in results], 0.5)),
                       "p99": round(1000 * percentile([lat for *_, lat in results], 0.99))},
        "latency_ms_by_kind": latency,
        "status_5xx": sum(1 for s in statuses if s >= 500), "connection_errors": statuses.count(0),
        "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "share_429": round(statuses.count(429) / max(len(statuses), 1), 3),
        "by_kind": by_kind, "idle_rss_mb": round(idle_rss / 2**20), "peak_rss_mb": round(peak_rss / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(port, tmp)
        stop, peak = threading.Event(), [0]
        try:
            idle_rss = psutil.Process(server.pid).memory_info().rss
            watcher = threading.Thread(target=watch_rss, args=(server.pid, stop, peak), daemon=True)
            watcher.start()
            start = time.perf_counter()
            results, unfinished = asyncio.run(run_clients(f"http://127.0.0.1:{port}", args.clients, args.seconds))
            seconds = time.perf_counter() - start
        finally:
            stop.set()
            server.terminate()
            server.wait(timeout=60)
    report = summarise(results, seconds, peak[0], idle_rss)
    report.update(unfinished=unfinished, clients=args.clients, server_exit_code=server.returncode)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
