"""The relay flooded with junk Requests: real recharges behind them, and what the junk costs on disk.

Rows: ``recharge behind junk`` (goal: each real recharge's grant announced on the relay within 2 s,
p99 -- a speed goal, shown in the table and enforced by benchmarks/hostile.py; asserted here: every one
is announced) and ``ledger bytes`` (goal: a Request failing the cheap checks leaves nothing on disk, a refused
forged one and a chat cost at most :data:`REFUSAL_BYTES` / :data:`CHAT_BYTES`; the figures are stated in
the table; what retention prunes later is not visible within the run).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections import Counter

from solders.keypair import Keypair

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
CHEAP = ("undecodable", "wrong_shape", "junk_payload_8k")
FORGED = ("forged_authorization",)
CHEAP_BYTES = 16  # per Request failing the cheap checks: nothing is stored (the issue saw ≈ 2 KB each)
REFUSAL_BYTES = 1_536  # per forged Request: its refusal row and reply, never its payload
CHAT_BYTES = 1_536  # per chat: its debit op and signed Transaction (the issue saw ≈ 1.1 KB)
QUIET_WITHIN = 60.0
CHATTERS = 4  # honest users chatting at once (one chat at a time each)


async def test_recharges_behind_junk_and_the_ledger_stays_small(make_device: MakeDevice) -> None:
    device = await make_device()
    problems = [_recharge_row(await _recharges_behind_junk(device))]
    problems.append(await _ledger_row(device))
    failed = [p for p in problems if p]
    assert not failed, "\n".join(failed) + "\n" + device.logs()


async def _recharges_behind_junk(device: HostileDevice) -> tuple[list[float], int, int, Counter[str], float]:
    """Publish ``junk`` Requests in slices, a real Request after each; the announce latencies."""
    started = time.monotonic()
    junk_count, real_count = 10_000, scaled(10, 20)
    users = await asyncio.gather(*(device.registered_user() for _ in range(real_count)))
    junk = list(
        junk_requests(junk_count, machine=device.machine, amount=PRICE, namespace_id=device.namespace_id)
    )
    kinds = Counter(kind for kind, _ in junk)
    events = [event for _, event in junk]
    published: dict[str, float] = {}
    accepted = 0
    async with Announcements(device.relay.url, device.machine) as announced:
        for i, user in enumerate(users):
            accepted += await flood_relay(device.relay.url, _slice(events, i, real_count))
            event = device.request_event(user)
            published[pubkey(user)] = time.monotonic()  # the clock runs from before the publish
            await device.publish(event)
        await announced.wait_granted(list(published), within=30.0)
    latencies = [
        announced.granted_at[u] - t if u in announced.granted_at else math.inf for u, t in published.items()
    ]
    return latencies, junk_count, accepted, kinds, time.monotonic() - started


def _recharge_row(measured: tuple[list[float], int, int, Counter[str], float]) -> str:
    """Every real recharge must be announced (within 30 s); the p99 goal is a speed goal (shown only)."""
    latencies, junk_count, accepted, kinds, seconds = measured
    p99 = percentile(latencies, 0.99)
    missing = sum(math.isinf(x) for x in latencies)
    record(
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
            timing=True,
        )
    )
    return f"recharge behind junk: {missing} real recharge(s) never announced" if missing else ""


async def _ledger_row(device: HostileDevice) -> str:
    """Junk that fails the cheap checks, then junk with forged authorizations, then chats: the ledger's
    bytes once the agent is quiet after each phase, per item."""
    started = time.monotonic()
    cheap_count, forged_count, chats = scaled(3_000, 75_000), scaled(1_000, 25_000), scaled(300, 10_000)
    quiet = [await _quiet(device)]  # after the previous row's junk
    baseline = device.ledger_in_use()
    cheap = [
        e
        for _, e in junk_requests(
            cheap_count,
            machine=device.machine,
            amount=PRICE,
            namespace_id=device.namespace_id,
            kinds=CHEAP,
            seed=1,
        )
    ]
    await _flood(device, cheap)
    quiet.append(await _quiet(device))
    after_cheap = device.ledger_in_use()
    forged = [
        e
        for _, e in junk_requests(
            forged_count, machine=device.machine, amount=PRICE, namespace_id=device.namespace_id, kinds=FORGED
        )
    ]
    await _flood(device, forged)
    quiet.append(await _quiet(device))
    after_forged = device.ledger_in_use()
    honest = await asyncio.gather(*(device.funded_user() for _ in range(CHATTERS)))
    answers = await _chat_many(device, honest, chats)
    quiet.append(await _quiet(device))
    after_chats = device.ledger_in_use()
    files = device.ledger_files()
    per_cheap = max(0, after_cheap - baseline) / cheap_count
    per_forged = max(0, after_forged - after_cheap) / forged_count
    per_chat = max(0, after_chats - after_forged) / max(1, answers["200"])
    phases = ("the previous row", "cheap junk", "forged", "chats")
    unsettled = [w for w, q in zip(phases, quiet, strict=True) if not q]
    row = record(
        Row(
            "ledger bytes",
            f"{cheap_count} junk Requests failing the cheap checks ({', '.join(CHEAP)}), {forged_count} "
            f"with forged authorizations, {chats} chats ({_codes(answers)})",
            f"{_kib(baseline)} -> {_kib(after_cheap)} ({per_cheap:.0f} B each) -> {_kib(after_forged)} "
            f"({per_forged:.0f} B each) -> {_kib(after_chats)} ({per_chat:.0f} B per chat) in use; "
            f"files {_kib(files)} with the WAL"
            + (f"; not quiet within {QUIET_WITHIN:g} s after {', '.join(unsettled)}" if unsettled else ""),
            f"≤ {CHEAP_BYTES} B/cheap junk, ≤ {REFUSAL_BYTES} B/forged, ≤ {CHAT_BYTES} B/chat",
            per_cheap <= CHEAP_BYTES
            and per_forged <= REFUSAL_BYTES
            and per_chat <= CHAT_BYTES
            and answers["200"] == chats,
            time.monotonic() - started,
        )
    )
    return "" if row.ok else f"{row.name}: {row.measured}"


async def _flood(device: HostileDevice, events: list[str]) -> None:
    for start in range(0, len(events), 10_000):  # a fresh connection per 10,000 (the relay's rate limit)
        await flood_relay(device.relay.url, events[start : start + 10_000])


def _kib(n: int) -> str:
    return f"{n / 1024:.0f} KiB"


async def _chat_many(device: HostileDevice, users: list[Keypair], count: int) -> Counter[str]:
    """``count`` one-token chats, one at a time per user, all users at once."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    answers: Counter[str] = Counter()
    queue = iter(range(count))

    async def worker(user: Keypair) -> None:
        token = device.token(user)
        async with device.http(limit=1) as http:
            for _ in queue:
                answer = await device.chat(http, token, body)
                answers[answer.code or str(answer.status)] += 1

    await asyncio.gather(*(worker(user) for user in users))
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
