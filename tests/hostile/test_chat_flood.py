"""Chat under attack: unfunded keys flooding expensive prompts, thousands of connections that stall.

Rows: ``unfunded flood`` (goal: the honest user's success rate ≥ 99 %) and ``stalled connections``
(goal: the honest chat is served within 30 s while 5,000 connections hold half a header).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from solders.keypair import Keypair

from tests.fixtures.floods import HALF_HEADER, StalledConnections, big_prompt
from tests.hostile.conftest import MakeDevice
from tests.hostile.harness import ChatAnswer, Row, percentile, raise_own_nofile, record, scaled, unit_nofile

HONEST_BODY = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 4}
MAX_BODY_BYTES = 65_536  # chat.max_body_bytes default
ATTACKERS = 30
STALLED = 5_000
SERVED_WITHIN = 30.0


async def test_honest_user_served_while_unfunded_keys_flood(make_device: MakeDevice) -> None:
    device = await make_device()
    honest = await device.funded_user()
    started = time.monotonic()
    flood = big_prompt(MAX_BODY_BYTES)
    stop = asyncio.Event()
    flood_answers: Counter[str] = Counter()

    async def attacker(key: Keypair) -> None:
        token = device.token(key)
        async with device.http(limit=1) as http:
            while not stop.is_set():
                answer = await device.chat(http, token, flood)
                flood_answers[answer.code or str(answer.status)] += 1

    attackers = [asyncio.create_task(attacker(Keypair())) for _ in range(ATTACKERS)]
    honest_answers: list[ChatAnswer] = []
    try:
        await asyncio.sleep(1.0)  # the flood is under way before the honest user starts
        token = device.token(honest)
        async with device.http(limit=1) as http:
            for _ in range(scaled(30, 100)):
                honest_answers.append(await device.chat(http, token, HONEST_BODY))
    finally:
        stop.set()
        await asyncio.gather(*attackers)
    served = sum(a.status == 200 for a in honest_answers)
    rate = served / len(honest_answers)
    refusals = Counter(a.code for a in honest_answers if a.status != 200)
    flood_sent = sum(flood_answers.values())
    row = record(
        Row(
            "unfunded flood",
            f"{ATTACKERS} unfunded keys, {len(flood['messages'][0]['content']) // 1024} KB prompts "
            f"({flood_sent} sent: {_top(flood_answers)})",
            f"honest {served}/{len(honest_answers)} = {rate:.1%}, p99 "
            f"{percentile([a.seconds for a in honest_answers], 0.99):.2f} s"
            + (f"; refused {dict(refusals)}" if refusals else ""),
            "≥ 99 %",
            rate >= 0.99,
            time.monotonic() - started,
        )
    )
    assert row.ok, f"{row.measured}\n{device.logs()}"


async def test_honest_chat_served_while_connections_stall(make_device: MakeDevice) -> None:
    device = await make_device()
    honest = await device.funded_user()
    started = time.monotonic()
    raise_own_nofile(STALLED + 1024)
    stalled = StalledConnections(device.chat_socket, STALLED)
    attempts: list[ChatAnswer] = []
    served_after: float | None = None
    try:
        opened = await asyncio.to_thread(stalled.open)
        flood_done = time.monotonic()
        token = device.token(honest)
        while time.monotonic() - flood_done < SERVED_WITHIN:
            async with device.http(limit=1, timeout=10) as http:  # a fresh connection per attempt
                answer = await device.chat(http, token, HONEST_BODY)
            attempts.append(answer)
            if answer.status == 200:
                served_after = time.monotonic() - flood_done
                break
            await asyncio.sleep(0.5)
        still_open = await asyncio.to_thread(stalled.still_open)
    finally:
        stalled.close()
    alive = device.agent is not None and device.agent.running
    failures = Counter(a.code for a in attempts if a.status != 200)
    measured = (
        f"served after {served_after:.1f} s, attempt {len(attempts)}"
        if served_after is not None
        else f"NOT served in {SERVED_WITHIN:g} s ({len(attempts)} attempts: {dict(failures)})"
    )
    row = record(
        Row(
            "stalled connections",
            f"{opened}/{STALLED} connections sent {len(HALF_HEADER)} B of a header and stalled "
            f"(agent nofile {unit_nofile()}; {still_open} still open at the end"
            + (f"; not connected: {stalled.failed}" if stalled.failed else "")
            + ")",
            measured + ("" if alive else "; the agent died"),
            f"served within {SERVED_WITHIN:g} s",
            served_after is not None and alive,
            time.monotonic() - started,
        )
    )
    assert row.ok, f"{row.measured}\n{device.logs()}"


def _top(counts: Counter[str], n: int = 3) -> str:
    return ", ".join(f"{code} {k}" for code, k in counts.most_common(n)) or "none answered"
