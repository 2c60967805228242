"""Metering on a real ledger file: durable holds, settling after a crash, a ledger that cannot write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nostr_sdk import Keys

from device.ledger import Ledger
from device.metering import Meter, MeteringError
from device.nostr_events import EventSigner, parse_signed_event
from device.protocol import Transaction, decode_message
from device.state import StateHub
from tests.fixtures.ledger_lock import LedgerLockHolder

ALICE = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"


@pytest.fixture
def path(state_dir: Path) -> Path:
    return state_dir / "ledger.sqlite3"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger.open(path, busy_timeout_s=0.2) as opened:
        opened.grant("req-1", ALICE, 1_000)
        yield opened


def make_meter(ledger: Ledger) -> Meter:
    keys = Keys.generate()
    signer = EventSigner(keys, session="test", machine_pubkey=str(keys.public_key().to_hex()))
    return Meter(ledger, signer, StateHub(), lambda: None, retry_first_s=0.05, retry_max_s=0.2)


@pytest.fixture
async def meter(ledger: Ledger) -> AsyncIterator[Meter]:
    made = make_meter(ledger)
    yield made
    await made.aclose()


def debits(ledger: Ledger) -> list[int]:
    out = []
    for row in ledger.pending_outbox(1_000):
        message = decode_message(parse_signed_event(row.event_json).content())
        if isinstance(message, Transaction) and message.tokens < 0:
            out.append(message.tokens)
    return out


async def test_a_hold_is_on_disk_before_anything_is_generated(path: Path, meter: Meter) -> None:
    hold = await meter.hold(ALICE, prompt_tokens=10, max_tokens=50, n_ctx=512)
    with Ledger.open(path) as reader:  # what a crash right now would leave
        (left,) = reader.open_holds()
    assert (left.reservation.key, left.reservation.amount, left.used) == (hold.key, 60, 0)


async def test_a_hold_left_by_a_crash_is_debited_at_its_last_checkpoint_exactly_once(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.grant("req-1", ALICE, 1_000)
        crashed = make_meter(ledger)
        hold = await crashed.hold(ALICE, prompt_tokens=10, max_tokens=50, n_ctx=512)
        await crashed.checkpoint(hold, 10 + 32)
        await crashed.aclose()  # the process dies here: no settle
    for run in range(2):  # two restarts: the second finds nothing left to settle
        with Ledger.open(path) as ledger:
            restarted = make_meter(ledger)
            assert await restarted.settle_open_holds() == (1 if run == 0 else 0)
            await restarted.aclose()
            assert ledger.balance(ALICE).total == 1_000 - 42
            assert ledger.balance(ALICE).reserved == 0
            assert debits(ledger) == [-42]


async def test_a_hold_without_a_checkpoint_is_released_after_a_crash(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.grant("req-1", ALICE, 1_000)
        crashed = make_meter(ledger)
        await crashed.hold(ALICE, prompt_tokens=10, max_tokens=50, n_ctx=512)
        await crashed.aclose()
    with Ledger.open(path) as ledger:
        restarted = make_meter(ledger)
        assert await restarted.settle_open_holds() == 1
        await restarted.aclose()
        assert (ledger.balance(ALICE).total, ledger.balance(ALICE).reserved, debits(ledger)) == (1_000, 0, [])


async def test_a_debit_the_ledger_cannot_write_is_kept_and_retried_while_new_chats_are_refused(
    path: Path, ledger: Ledger, meter: Meter
) -> None:
    hold = await meter.hold(ALICE, prompt_tokens=10, max_tokens=50, n_ctx=512)
    holder = LedgerLockHolder(path)
    try:
        holder.lock()
        settlement = await meter.settle(hold, 25)
        assert settlement.deferred and not meter.writable
        assert settlement.balance.total == 1_000 - 25
        with pytest.raises(MeteringError) as refused:
            await meter.hold(ALICE, prompt_tokens=10, max_tokens=50, n_ctx=512)
        assert refused.value.code == "ledger_unavailable"
        assert ledger.balance(ALICE).reserved == 60  # the hold stays until its debit is written
        holder.unlock()
        for _ in range(100):
            if meter.writable:
                break
            await asyncio.sleep(0.05)
        assert meter.writable
        assert ledger.balance(ALICE).total == 1_000 - 25
        assert ledger.balance(ALICE).reserved == 0
        assert debits(ledger) == [-25]
        assert ledger.open_holds() == []
    finally:
        holder.close()


async def test_a_hold_the_ledger_cannot_write_is_refused_without_holding_anything(
    path: Path, ledger: Ledger, meter: Meter
) -> None:
    holder = LedgerLockHolder(path)
    try:
        holder.lock()
        with pytest.raises(MeteringError) as refused:
            await meter.hold(ALICE, prompt_tokens=10, max_tokens=50, n_ctx=512)
        assert refused.value.code == "ledger_unavailable"
        assert ledger.balance(ALICE).reserved == 0
    finally:
        holder.close()
    assert (await meter.hold(ALICE, prompt_tokens=10, max_tokens=50, n_ctx=512)).reservation.amount == 60
