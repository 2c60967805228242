"""kill -9 on the money path: a processor in a child process SIGKILLs itself at a named fault point
(``XEPHY_DEVICE_FAULT``); a fresh processor on the same state dir then resumes, and the user ends up with
exactly one charge on chain, one grant in the ledger and one ``Transaction`` in the outbox.

Run as a script (``python -m tests.integration.test_recharge_crash JOB``) this module is the child: it
loads the device keys and ledger from the job's state dir and handles one event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from device.config import Config, PricingConfig, SolanaConfig
from device.keys import KeyStore
from device.ledger import Ledger, RechargeState
from device.localnet import LocalnetServer
from device.nostr_events import EventSigner
from device.protocol import DEFAULT_SESSION
from device.recharge import FAULT_ENV, FaultPoints, RechargeProcessor
from device.relay import IncomingEvent
from device.solana.program import ProgramRef, ProgramVersion
from device.state import StateHub
from tests.fixtures.recharge import (
    MAX_RECHARGE,
    PRICE,
    TOKENS_PER_LAMPORT,
    Rig,
    close_rig,
    make_rig,
)
from tests.fixtures.settlement import settlement_client

ROOT = Path(__file__).resolve().parents[2]


async def child(job: dict[str, Any]) -> None:
    """Handle the job's event with a processor built from the state dir (the fault hook comes from env)."""
    state_dir = Path(job["state_dir"])
    keys = KeyStore(state_dir).load()
    version = ProgramVersion(job["version"])
    config = Config(
        solana=SolanaConfig(program=job["version"], namespace_id=job["namespace_id"]),
        pricing=PricingConfig(
            recharge_lamports=PRICE, tokens_per_lamport=TOKENS_PER_LAMPORT, max_recharge_lamports=MAX_RECHARGE
        ),
    )
    settlement = settlement_client(
        job["rpc_url"], program=ProgramRef.default(version), namespace_id=job["namespace_id"], bot=keys.bot
    )
    with Ledger.open(state_dir / "ledger.sqlite3") as ledger:
        processor = RechargeProcessor(
            ledger,
            settlement,
            EventSigner(keys.nostr, session=DEFAULT_SESSION, machine_pubkey=keys.nostr_pubkey_hex),
            config,
            StateHub(),
            notify_outbox=lambda: None,
            faults=FaultPoints.from_env(os.environ),
        )
        await processor.handle(
            IncomingEvent(**{**job["event"], "tags": tuple(map(tuple, job["event"]["tags"]))})
        )
        await processor.aclose()
    await settlement.close()


async def run_child(rig: Rig, event: IncomingEvent, fault: str) -> int:
    job = rig.state_dir.parent / "job.json"
    job.write_text(
        json.dumps(
            {
                "state_dir": str(rig.state_dir),
                "rpc_url": rig.server.url,
                "version": str(rig.version),
                "namespace_id": rig.namespace_id,
                "event": dataclasses.asdict(event),
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.test_recharge_crash",
        str(job),
        cwd=ROOT,
        env={**os.environ, FAULT_ENV: fault},
    )
    return await asyncio.wait_for(proc.wait(), timeout=120)


@pytest.fixture
async def rig(state_dir: Path) -> AsyncIterator[Rig]:
    async with LocalnetServer() as server:
        made = await make_rig(server, ProgramVersion.V2, state_dir)
        try:
            yield made
        finally:
            await close_rig(made)


def transactions(rig: Rig) -> list[dict[str, object]]:
    return [r["Transaction"] for r in rig.replies() if "Transaction" in r]


@pytest.mark.parametrize("fault", ["before_pay", "after_submit", "after_landed", "after_grant"])
async def test_a_kill_at_any_step_ends_with_exactly_one_charge_and_one_grant(rig: Rig, fault: str) -> None:
    event = rig.request()
    before = rig.chain_state()

    assert await run_child(rig, event, fault) == -signal.SIGKILL
    await rig.processor().resume_unfinished()
    await rig.processor().handle(event)  # the relay delivers it again after the restart

    after = rig.chain_state()
    assert (after["vault"], after["treasury"]) == (before["vault"] - PRICE, before["treasury"] + PRICE)
    row = rig.ledger.recharge(event.event_id)
    assert row is not None and row.state is RechargeState.GRANTED
    assert rig.ledger.balance(str(rig.user.pubkey())).total == PRICE * TOKENS_PER_LAMPORT
    assert transactions(rig) == [{"user": str(rig.user.pubkey()), "tokens": PRICE * TOKENS_PER_LAMPORT}]
    assert len(rig.outbox()) == 3


async def test_the_state_a_kill_after_submit_leaves_is_submitted_with_the_signature(rig: Rig) -> None:
    event = rig.request()

    assert await run_child(rig, event, "after_submit") == -signal.SIGKILL

    row = rig.ledger.recharge(event.event_id)
    assert row is not None and row.state is RechargeState.SUBMITTED
    assert row.signature and row.tx_bytes and row.last_valid_block_height
    assert rig.outbox() == []


if __name__ == "__main__":
    asyncio.run(child(json.loads(Path(sys.argv[1]).read_text())))
