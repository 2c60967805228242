"""The relay flooded with junk Requests: real recharges behind them, and what the junk costs on disk.

Rows: ``recharge behind junk`` (goal: each real recharge's grant announced on the relay within 2 s,
p99) and ``ledger bytes`` (junk Requests + chats; goal: junk leaves nothing behind on disk beyond a few
bytes each, a chat costs at most :data:`CHAT_BYTES`, both stated in the table).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections import Counter

from device.ledger import LEDGER_FILE
from tests.fixtures.floods import flood_relay, junk_requests
from tests.hostile.conftest import MakeDevice
from tests.hostile.harness import (
    PRICE,
    Announcements,
    HostileDevice,
    Row,
    percentile,
    pubkey,
    record,
    scaled,
)

ANNOUNCE_P99 = 2.0
JUNK_BYTES = 64  # per junk Request, on average: nothing of it is kept (the issue saw ≈ 2 KB each)
CHAT_BYTES = 1_536  # per chat: its debit op and signed Transaction (the issue saw ≈ 1.1 KB)
QUIET_WITHIN = 60.0


async def test_recharges_behind_junk_and_the_ledger_stays_small(make_device: MakeDevice) -> None:
    device = await make_device()
    baseline_bytes = device.ledger_bytes()
    problems = [_recharge_row(await _recharges_behind_junk(device))]
    problems.append(await _ledger_row(device, baseline_bytes))
    failed = [p for p in problems if p]
    assert not failed, "\n".join(failed) + "\n" + device.logs()


async def _recharges_behind_junk(device: HostileDevice) -> tuple[list[float], int, int, Counter[str], float]:
    """Publish ``junk`` Requests in slices, a real Request after each; the announce latencies."""
    started = time.monotonic()
    junk_count, real_count = 10_000, scaled(10, 20)
    users = await asyncio.gather(*(device.registered_user() for _ in range(real_count)))
    junk = list(junk_requests(junk_count, machine=device.machine, amount=PRICE))
    kinds = Counter(kind for kind, _ in junk)
    events = [event for _, event in junk]
    published: dict[str, float] = {}
    accepted = 0
    async with Announcements(device.relay.url, device.machine) as announced:
        for i, user in enumerate(users):
            accepted += await flood_relay(device.relay.url, _slice(events, i, real_count))
            await device.publish(device.request_event(user))
            published[pubkey(user)] = time.monotonic()
        await announced.wait_granted(list(published), within=30.0)
    latencies = [
        announced.granted_at[u] - t if u in announced.granted_at else math.inf for u, t in published.items()
    ]
    return latencies, junk_count, accepted, kinds, time.monotonic() - started


def _recharge_row(measured: tuple[list[float], int, int, Counter[str], float]) -> str:
    latencies, junk_count, accepted, kinds, seconds = measured
    p99 = percentile(latencies, 0.99)
    missing = sum(math.isinf(x) for x in latencies)
    row = record(
        Row(
            "recharge behind junk",
            f"{junk_count} junk Requests ({accepted} stored by the relay; "
            + ", ".join(f"{k} {n}" for k, n in kinds.items())
            + f"), {len(latencies)} real recharges among them",
            f"announced p50 {percentile(latencies, 0.5):.2f} s, p99 {p99:.2f} s"
            + (f"; {missing} not announced within 30 s" if missing else ""),
            f"p99 ≤ {ANNOUNCE_P99:g} s",
            p99 <= ANNOUNCE_P99,
            seconds,
        )
    )
    return "" if row.ok else f"{row.name}: {row.measured}"


async def _ledger_row(device: HostileDevice, baseline: int) -> str:
    """More junk up to ``junk_total``, then ``chats`` chats; the ledger's bytes after each, once quiet."""
    started = time.monotonic()
    junk_total, chats = scaled(20_000, 100_000), scaled(1_000, 10_000)
    more = [e for _, e in junk_requests(junk_total - 10_000, machine=device.machine, amount=PRICE, seed=1)]
    for start in range(0, len(more), 10_000):  # a fresh connection per 10,000 (the relay's rate limit)
        await flood_relay(device.relay.url, more[start : start + 10_000])
    quiet_after_junk = await _quiet(device)
    after_junk = device.ledger_bytes()
    honest = await device.funded_user()
    answers = await _chat_many(device, honest, chats)
    quiet_after_chats = await _quiet(device)
    after_chats = device.ledger_bytes()
    per_junk = max(0, after_junk - baseline) / junk_total
    per_chat = max(0, after_chats - after_junk) / max(1, answers["200"])
    unsettled = [w for w, quiet in (("junk", quiet_after_junk), ("chats", quiet_after_chats)) if not quiet]
    row = record(
        Row(
            "ledger bytes",
            f"{junk_total} junk Requests, then {chats} chats ({_codes(answers)})",
            f"{baseline // 1024} KiB -> {after_junk // 1024} KiB after junk ({per_junk:.0f} B each) -> "
            f"{after_chats // 1024} KiB after chats ({per_chat:.0f} B each)"
            + (f"; outbox not drained after {', '.join(unsettled)}" if unsettled else ""),
            f"≤ {JUNK_BYTES} B/junk, ≤ {CHAT_BYTES} B/chat",
            per_junk <= JUNK_BYTES and per_chat <= CHAT_BYTES and answers["200"] == chats,
            time.monotonic() - started,
        )
    )
    return "" if row.ok else f"{row.name}: {row.measured}"


async def _chat_many(device: HostileDevice, user: object, count: int, concurrency: int = 4) -> Counter[str]:
    token = device.token(user)  # type: ignore[arg-type]
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    answers: Counter[str] = Counter()
    queue = iter(range(count))

    async def worker() -> None:
        async with device.http(limit=1) as http:
            for _ in queue:
                answer = await device.chat(http, token, body)
                answers[answer.code or str(answer.status)] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answers


async def _quiet(device: HostileDevice) -> bool:
    """Wait (≤ :data:`QUIET_WITHIN`) until the agent has handled what the relay holds for it: a sentinel
    recharge published last is granted and no reply waits in the outbox."""
    sentinel = await device.registered_user()
    await device.publish(device.request_event(sentinel))
    deadline = time.monotonic() + QUIET_WITHIN
    while time.monotonic() < deadline:
        if await device.balance(sentinel) >= PRICE and _outbox_pending(device) == 0:
            return True
        await asyncio.sleep(0.2)
    return False


def _outbox_pending(device: HostileDevice) -> int:
    """Replies no relay has acknowledged yet (-1 when the ledger cannot be read right now)."""
    try:
        conn = sqlite3.connect(f"file:{device.state_dir / LEDGER_FILE}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT count(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return -1


def _slice(events: list[str], i: int, parts: int) -> list[str]:
    size = len(events) // parts
    return events[i * size : (i + 1) * size if i < parts - 1 else len(events)]


def _codes(answers: Counter[str]) -> str:
    return ", ".join(f"{code} {n}" for code, n in answers.most_common())
