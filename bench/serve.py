"""Serving throughput: aggregate generated tokens/s with 1, 4 and 8 concurrent clients, and
time to first token, against `tunelab serve` with the bundled model on 127.0.0.1.

Each client streams chat completions (temperature 0, max_tokens 48) one after another for a
fixed number of requests. Prints one JSON line.

    .venv/bin/python bench/serve.py [--requests 6]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

PROMPTS = ["Write one sentence about the sea.", "Name three fruits and say why they are healthy.",
           "Explain what a calendar is, briefly.", "Give a tip for learning to cook.",
           "What is the capital of France? Answer with a short sentence.", "Describe a cat in a few words."]


def one_request(url: str, prompt: str) -> tuple[float, int]:
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": prompt}], "max_tokens": 48,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    ttft, tokens = None, 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
            elif data["choices"] and data["choices"][0]["delta"].get("content") and ttft is None:
                ttft = time.perf_counter() - start
    return ttft or 0.0, tokens


def run_clients(url: str, clients: int, requests: int) -> dict:
    ttfts, tokens = [], [0]
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(requests):
            t, n = one_request(url, PROMPTS[(k + i) % len(PROMPTS)])
            with lock:
                ttfts.append(t)
                tokens[0] += n

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ttfts.sort()
    return {"clients": clients, "tokens": tokens[0], "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens[0] / seconds, 1),
            "ttft_p50_ms": round(1000 * ttfts[len(ttfts) // 2]), "ttft_p95_ms": round(1000 * ttfts[int(0.95 * (len(ttfts) - 1))])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6, help="requests per client")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(sys.executable).with_name("tunelab")
        server = subprocess.Popen([str(exe), "serve", "--port", str(port), "--db", str(Path(tmp) / "log.sqlite")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            one_request(url, PROMPTS[0])  # warm-up
            results = [run_clients(url, c, args.requests) for c in (1, 4, 8)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    base = results[0]["tokens_per_s"]
    print(json.dumps({"results": results, "speedup_4": round(results[1]["tokens_per_s"] / base, 2),
                      "speedup_8": round(results[2]["tokens_per_s"] / base, 2)}))


if __name__ == "__main__":
    main()
