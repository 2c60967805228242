"""The honest user's figures under a flood, against the same figures on a quiet device in the same run.

    python benchmarks/hostile.py [--json PATH] [--chats N] [--recharges R] [--junk J]

One real agent (``xephy-device run`` subprocess, tiny const GGUF) on its own relay subprocess and a chain
stand-in subprocess, built by the hostile-load suite's harness (tests/hostile/harness.py, whose README
describes the attacks):

* **honest chat p50 / p99 while 30 unfunded keys flood** 63 KB prompts, against the same ``--chats``
  sequential chats (4 tokens) on the quiet device; and the share of them answered 200 (target ≥ 99 %).
* **recharge announced p50 / p99 behind ``--junk`` junk Requests** (four junk kinds in turn, ``--recharges``
  real recharges spread among them): from publishing a real Request to its grant ``Transaction`` on the
  relay, against ``--recharges`` recharges on the quiet relay (target p99 ≤ 2 s).

Prints progress to stderr and one markdown table to stdout; with ``--json PATH`` also writes its rows as
JSON.  Writes nothing else (temporary directories are removed).
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

import _table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness lives in tests/ (not an installed package)

from solders.keypair import Keypair  # noqa: E402

from tests.faults.harness import LocalnetProcess  # noqa: E402
from tests.fixtures.floods import big_prompt, flood_relay, junk_requests  # noqa: E402
from tests.fixtures.model import TOKEN_M, write_tiny_gguf  # noqa: E402
from tests.hostile.harness import PRICE, Announcements, HostileDevice, percentile, pubkey  # noqa: E402

HONEST_BODY = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 4}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def honest_chats(device: HostileDevice, user: Keypair, count: int) -> list[tuple[int, float]]:
    """``count`` sequential chats: (status, seconds) each."""
    out = []
    async with device.http(limit=1) as http:
        token = device.token(user)
        for _ in range(count):
            answer = await device.chat(http, token, HONEST_BODY)
            out.append((answer.status, answer.seconds))
    return out


async def chats_under_flood(device: HostileDevice, user: Keypair, count: int) -> list[tuple[int, float]]:
    """The same chats while 30 unfunded keys send 63 KB prompts back to back."""
    stop = asyncio.Event()
    flood = big_prompt(65_536)

    async def attacker() -> None:
        token = device.token(Keypair())
        async with device.http(limit=1) as http:
            while not stop.is_set():
                await device.chat(http, token, flood)

    attackers = [asyncio.create_task(attacker()) for _ in range(30)]
    try:
        await asyncio.sleep(1.0)
        return await honest_chats(device, user, count)
    finally:
        stop.set()
        await asyncio.gather(*attackers)


async def recharges(device: HostileDevice, count: int, junk: list[str]) -> list[float]:
    """``count`` real recharges, each after its share of ``junk``: announce latencies (inf: never)."""
    users = await asyncio.gather(*(device.registered_user() for _ in range(count)))
    published: dict[str, float] = {}
    share = len(junk) // count if junk else 0
    async with Announcements(device.relay.url, device.machine) as announced:
        for i, user in enumerate(users):
            if share:
                await flood_relay(device.relay.url, junk[i * share : (i + 1) * share])
            event = device.request_event(user)
            published[pubkey(user)] = time.monotonic()
            await device.publish(event)
            if not share:
                await announced.wait_granted([pubkey(user)], within=30.0)  # quiet: one at a time
        await announced.wait_granted(list(published), within=30.0)
    return [announced.granted_at.get(u, float("inf")) - t for u, t in published.items()]


async def measure(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    chain = LocalnetProcess(tmp / "localnet.json", tmp)
    chain.start()
    model = write_tiny_gguf(tmp / "tiny-const-m.gguf", mode="const", const_token=TOKEN_M)
    device = await HostileDevice.create(tmp / "device", chain, model=model)
    try:
        await device.start()
        honest = await device.funded_user()
        say(f"quiet: {args.chats} honest chats")
        quiet_chats = await honest_chats(device, honest, args.chats)
        say(f"flood: {args.chats} honest chats while 30 unfunded keys flood")
        flood_chats = await chats_under_flood(device, honest, args.chats)
        say(f"quiet: {args.recharges} recharges")
        quiet_recharges = await recharges(device, args.recharges, [])
        say(f"flood: {args.recharges} recharges behind {args.junk} junk Requests")
        junk = [
            e
            for _, e in junk_requests(
                args.junk, machine=device.machine, amount=PRICE, namespace_id=device.namespace_id
            )
        ]
        flood_recharges = await recharges(device, args.recharges, junk)
    finally:
        await device.close()
        chain.stop()
    q_lat = [s for _, s in quiet_chats]
    f_lat = [s for _, s in flood_chats]
    served = sum(status == 200 for status, _ in flood_chats) / len(flood_chats)
    quiet_served = sum(status == 200 for status, _ in quiet_chats) / len(quiet_chats)
    flood_p99 = percentile(flood_recharges, 0.99)
    return [
        _table.row(
            "honest chats answered 200, unfunded flood",
            served * 100,
            "%",
            quiet_served * 100,
            "quiet",
            "≥ 99 %",
            served >= 0.99,
        ),
        _table.row(
            "honest chat p50, unfunded flood",
            statistics.median(f_lat) * 1000,
            "ms",
            statistics.median(q_lat) * 1000,
            "quiet p50",
            "-",
            None,
        ),
        _table.row(
            "honest chat p99, unfunded flood",
            percentile(f_lat, 0.99) * 1000,
            "ms",
            percentile(q_lat, 0.99) * 1000,
            "quiet p99",
            "-",
            None,
        ),
        _table.row(
            f"recharge announced p50, behind {args.junk} junk",
            statistics.median(flood_recharges) * 1000,
            "ms",
            statistics.median(quiet_recharges) * 1000,
            "quiet p50",
            "-",
            None,
        ),
        _table.row(
            f"recharge announced p99, behind {args.junk} junk",
            flood_p99 * 1000,
            "ms",
            percentile(quiet_recharges, 0.99) * 1000,
            "quiet p99",
            "≤ 2,000 ms",
            flood_p99 <= 2.0,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--chats", type=int, default=30)
    parser.add_argument("--recharges", type=int, default=10)
    parser.add_argument("--junk", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xephy-bench-hostile-") as tmp:
        rows = asyncio.run(measure(args, Path(tmp)))
    print(_table.markdown(rows, "under flood", digits=1))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
