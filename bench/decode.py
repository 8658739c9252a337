"""Decoding speed of the bundled model on this CPU, beside the bound that memory bandwidth sets.

In process (tunelab's DecodeBatch, greedy, one row): milliseconds per decode step, for each
dtype and thread count asked, interleaved (A B A B ...) so the shared machine's load hits every
variant alike. The bound: every decode step reads every weight once, so tokens/s cannot beat
(measured copy bandwidth) / (bytes of weights). Through the real server (`tunelab serve` on
127.0.0.1, streamed chat completions): time to first token p50 for one client at a time, one
client's tokens/s, and 8 concurrent clients' aggregate tokens/s; beside it, the in-process
split of a first token (chat template + tokenising, prefill). Prints one JSON line.

    .venv/bin/python bench/decode.py [--steps 32] [--repeats 2] [--dtypes float32,bfloat16]
                                     [--threads 1,2] [--no-server]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _whole_process import loadavg  # noqa: E402

MODEL = "smollm2-135m-instruct"
KEY = "decode-bench-key-0001"
QUESTION = "Write a short paragraph about why the sky is blue."


def copy_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Best bytes copied per second (GB/s) of a large tensor copy: what streaming weights can reach."""
    import torch

    src = torch.ones(megabytes << 18)  # float32: 4 bytes each
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return round(src.numel() * 4 / best / 1e9, 2)


def weight_bytes(model) -> int:
    """Bytes of distinct weights (a tied embedding counted once: as the LM head it is read whole)."""
    seen = {p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}
    return sum(seen.values())


def step_ms(model, prompt: list[int], pad: int, steps: int) -> float:
    """Median milliseconds of one greedy decode step for one row after its prefill."""
    from tunelab.inference.generate import DecodeBatch

    batch = DecodeBatch(model, pad).prefill([prompt])
    times = []
    for _ in range(steps):
        token = batch.logits.argmax(-1)
        start = time.perf_counter()
        batch.advance(token)
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 2)


def first_token_split(model, tok, repeats: int = 5) -> dict:
    """Where a first token's time goes before any serving: the chat template and tokenising,
    and the prefill forward that yields the first token's logits (medians, milliseconds). The
    server's time to first token minus these is HTTP, queueing and streaming."""
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import DecodeBatch

    encode, prefill = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        prompt = encode_prompt(tok, [{"role": "user", "content": QUESTION}])
        encode.append(time.perf_counter() - start)
        start = time.perf_counter()
        DecodeBatch(model, tok.pad_token_id).prefill([prompt]).logits.argmax(-1)
        prefill.append(time.perf_counter() - start)
    return {"encode_ms": round(1000 * statistics.median(encode), 1),
            "prefill_ms": round(1000 * statistics.median(prefill), 1)}


def in_process(dtypes: list[str], threads: list[int], steps: int, repeats: int) -> dict:
    import torch

    from tunelab.data.tokens import encode_prompt
    from tunelab.models.load import load_model, load_tokenizer, resolve

    ref = resolve(MODEL)
    tok = load_tokenizer(ref)
    prompt = encode_prompt(tok, [{"role": "user", "content": QUESTION}])
    models = {d: load_model(ref, d).eval() for d in dtypes}
    results: dict[str, list[float]] = {}
    for _ in range(repeats):
        for d in dtypes:
            for n in threads:
                torch.set_num_threads(n)
                step_ms(models[d], prompt, tok.pad_token_id, 3)  # warm up this shape
                results.setdefault(f"{d}/threads={n}", []).append(step_ms(models[d], prompt, tok.pad_token_id, steps))
    best = {k: min(v) for k, v in results.items()}
    bandwidth = copy_bandwidth_gbs()  # at the last thread count asked, as before
    torch.set_num_threads(os.cpu_count() or 1)  # as the server runs
    split = first_token_split(models[dtypes[0]], tok)
    sizes = {d: weight_bytes(m) for d, m in models.items()}
    return {"step_ms": results, "tokens_per_s": {k: round(1000 / v, 1) for k, v in best.items()},
            "copy_gb_per_s": bandwidth, "weight_mb": {d: round(b / 1e6) for d, b in sizes.items()},
            "bound_tokens_per_s": {d: round(bandwidth * 1e9 / b, 1) for d, b in sizes.items()},
            "prompt_tokens": len(prompt), "torch_threads_default": os.cpu_count(),
            "first_token_split": {dtypes[0]: split}}


async def _stream(client, url: str, max_tokens: int) -> tuple[float, int, float]:
    """(seconds to the first content, content chunks, total seconds) of one streamed answer."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    start = time.perf_counter()
    first, chunks = None, 0
    async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as resp:
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {}).get("content")
            if delta:
                chunks += 1
                first = first if first is not None else time.perf_counter() - start
    return first or float("nan"), chunks, time.perf_counter() - start


async def _usage(client, url: str, max_tokens: int) -> int:
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": max_tokens,
            "temperature": 0}
    resp = await client.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=600)
    return resp.json()["usage"]["completion_tokens"]


async def _server_numbers(port: int, max_tokens: int) -> dict:
    import httpx

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=600) as client:
        await _usage(client, url, 4)  # warm up
        streams = [await _stream(client, url, max_tokens) for _ in range(5)]
        start = time.perf_counter()
        one = await _usage(client, url, max_tokens)
        one_s = time.perf_counter() - start
        start = time.perf_counter()
        many = await asyncio.gather(*[_usage(client, url, max_tokens) for _ in range(8)])
        many_s = time.perf_counter() - start
    return {"ttft_ms": [round(1000 * s[0]) for s in streams],
            "ttft_p50_ms": round(1000 * statistics.median(s[0] for s in streams)),
            "one_client_tokens_per_s": round(one / one_s, 1), "one_client_tokens": one,
            "eight_clients_tokens_per_s": round(sum(many) / many_s, 1), "eight_clients_tokens": sum(many),
            "eight_vs_one": round(sum(many) / many_s / (one / one_s), 2)}


def through_server(max_tokens: int) -> dict:
    import subprocess

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("tunelab")
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([str(exe), "serve", "--model", MODEL, "--port", str(port), "--db",
                                   str(Path(tmp) / "log.sqlite")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env={**os.environ, "TUNELAB_API_KEY": KEY})
        try:
            for _ in range(900):
                if server.poll() is not None:
                    raise SystemExit(f"tunelab serve exited: {server.stderr.read().decode()[-2000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            return asyncio.run(_server_numbers(port, max_tokens))
        finally:
            server.terminate()
            server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--no-server", action="store_true")
    args = parser.parse_args()
    from tunelab.device import cpu_has_bf16

    load = [loadavg()]
    result = {"bench": "decode", "model": MODEL, "cpu_native_bf16": cpu_has_bf16(), "cpus": os.cpu_count()}
    result["in_process"] = in_process(args.dtypes.split(","), [int(n) for n in args.threads.split(",")],
                                      args.steps, args.repeats)
    load.append(loadavg())
    if not args.no_server:
        result["server"] = through_server(args.max_tokens)
        load.append(loadavg())
    result["load"] = load
    print(json.dumps(result))


if __name__ == "__main__":
    main()
