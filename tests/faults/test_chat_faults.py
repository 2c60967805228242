"""Chat under faults: the ledger full, locked or read-only mid-answer, and kill -9 mid-stream.

Every row: no token delivered unbilled (at most one checkpoint, 32 tokens, after a kill -9), no chat
debited twice, every debit announced (the relay's Transaction events rebuild the same balances).  The
agent serves the const test model (one ``" m"`` per token) so the client counts tokens exactly.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession, UnixConnector
from solders.keypair import Keypair

from tests.faults.harness import ChatTally, FaultRig
from tests.fixtures.ledger_lock import LedgerLockHolder
from tests.fixtures.processes import TmpfsHolder, fill_disk

#: Tokens that may go unbilled after a kill -9: one checkpoint interval.
CHECKPOINT_TOKENS = 32


async def funded_chat_rig(
    rig_factory: object, model: Path, *, disk_kib: int | None = None
) -> tuple[FaultRig, Keypair, ChatTally]:
    """A running agent serving ``model``, one user granted one recharge and one short chat done."""
    rig: FaultRig = await rig_factory(model=model, disk_kib=disk_kib)  # type: ignore[operator]
    user = await rig.add_user()
    await rig.start_agent()
    await rig.recharge(user)
    await rig.wait_settled()
    status, body = await rig.chat(user, max_tokens=1)
    assert status == 200, body
    tally = ChatTally(
        str(user.pubkey()),
        prompt_tokens=body["usage"]["prompt_tokens"],
        chats=1,
        delivered=body["usage"]["completion_tokens"],
    )
    return rig, user, tally


async def healthz_seconds(rig: FaultRig) -> float:
    async with ClientSession(connector=UnixConnector(path=str(rig.chat_socket))) as http:
        started = time.monotonic()
        resp = await http.get("http://device/healthz")
        await resp.read()
        assert resp.status == 200
        return time.monotonic() - started


def needs_tmpfs() -> None:
    why = TmpfsHolder.available()
    if why is not None:
        pytest.skip(f"{why}; a ledger that cannot be written is covered by tests/unit/test_metering.py")


async def test_kill_9_mid_stream_leaves_at_most_one_checkpoint_unbilled(
    rig_factory: object, tiny_model: Path
) -> None:
    rig, user, tally = await funded_chat_rig(rig_factory, tiny_model)

    async def kill_at_100(n: int) -> None:
        if n == 100:
            await rig.agent.kill()

    await rig.stream_chat(user, tally, kill_at_100)
    rig.faults += 1
    tally.tolerated = CHECKPOINT_TOKENS
    assert tally.delivered >= 100
    await rig.start_agent()  # settles the open hold at its last checkpoint
    await rig.verify(expect_granted=1, chats=tally)


async def test_ledger_locked_mid_stream_serves_no_free_token(rig_factory: object, tiny_model: Path) -> None:
    rig, user, tally = await funded_chat_rig(rig_factory, tiny_model)
    holder = LedgerLockHolder(rig.ledger_path)
    health: list[float] = []
    try:

        async def lock_at_50(n: int) -> None:
            if n == 50:
                await asyncio.to_thread(holder.lock)
                rig.faults += 1
                health.extend([await healthz_seconds(rig) for _ in range(5)])

        await rig.stream_chat(user, tally, lock_at_50)
        assert tally.refused == {"ledger_unavailable": 1}  # the answer stopped at a refused checkpoint
        await rig.stream_chat(user, tally)  # while the debit waits, new chats are refused
        assert tally.refused["ledger_unavailable"] == 2
        health.extend([await healthz_seconds(rig) for _ in range(5)])
    finally:
        await asyncio.to_thread(holder.close)
    await rig.verify(expect_granted=1, chats=tally)
    assert max(health) < 0.1, f"/healthz took {max(health):.3f} s while the ledger was locked"


async def test_disk_full_mid_stream_serves_no_free_token(rig_factory: object, tiny_model: Path) -> None:
    needs_tmpfs()
    rig, user, tally = await funded_chat_rig(rig_factory, tiny_model, disk_kib=8192)

    async def fill_at_50(n: int) -> None:
        if n == 50:
            await asyncio.to_thread(fill_disk, rig.ledger_path.parent)
            rig.faults += 1

    await rig.stream_chat(user, tally, fill_at_50)
    await rig.stream_chat(user, tally)  # while the debit waits for space, new chats are refused
    assert tally.refused == {"ledger_unavailable": 2}
    (rig.ledger_path.parent / "filler").unlink()
    await rig.verify(expect_granted=1, chats=tally)


async def test_ledger_read_only_after_a_crash_serves_nothing_until_it_writes(
    rig_factory: object, tiny_model: Path
) -> None:
    needs_tmpfs()
    rig, user, tally = await funded_chat_rig(rig_factory, tiny_model, disk_kib=8192)

    async def kill_at_100(n: int) -> None:
        if n == 100:
            await rig.agent.kill()

    await rig.stream_chat(user, tally, kill_at_100)
    tally.tolerated = CHECKPOINT_TOKENS
    assert rig.holder is not None
    rig.holder.remount(read_only=True)  # the card came back read-only
    rig.faults += 2
    agent = await rig.start_agent()  # serves, but its open hold cannot be settled
    await rig.stream_chat(user, tally)
    assert tally.refused == {"ledger_unavailable": 1}
    assert await agent.stop() == 0
    rig.holder.remount(read_only=False)
    await rig.start_agent()
    await rig.verify(expect_granted=1, chats=tally)
