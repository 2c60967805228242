"""Authorizations past their deadline, and a full disk under the ledger."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.harness import DEPOSIT, FaultRig
from tests.fixtures.processes import TmpfsHolder, fill_disk


async def test_authorizations_past_their_deadline_are_refused_without_a_charge(rig: FaultRig) -> None:
    user = await rig.add_user()
    await rig.start_agent()
    await rig.recharge(user, ttl=-120)  # the dApp's clock is two minutes behind the chain
    rig.faults += 1
    await rig.wait_settled()
    assert await rig.agent.stop() == 0
    await rig.recharge(user, ttl=2)  # valid when signed; the device only sees it after the deadline
    await asyncio.sleep(3.0)
    rig.faults += 1
    await rig.start_agent()
    await rig.verify(expect_granted=0, expect_refused=2)
    assert await rig.vault(user.pubkey()) == DEPOSIT
    assert (await rig.user_account(user.pubkey())).nonce == 0


async def test_a_full_disk_under_the_ledger_loses_no_request_and_charges_none_twice(
    rig_factory: object,
) -> None:
    why = TmpfsHolder.available()
    if why is not None:
        pytest.skip(f"{why}; the ledger under a full disk is covered by tests/unit/test_ledger_faults.py")
    rig: FaultRig = await rig_factory(disk_kib=8192)  # type: ignore[operator]
    users = [await rig.add_user() for _ in range(2)]
    await rig.start_agent()
    await rig.recharge(users[0])
    await rig.wait_settled()
    await asyncio.to_thread(fill_disk, rig.ledger_path.parent)
    rig.faults += 1
    await rig.recharge(users[1])
    await asyncio.sleep(2.0)  # the agent meets ENOSPC (SQLITE_FULL) on the Request
    (rig.ledger_path.parent / "filler").unlink()
    await rig.verify(expect_granted=2)
