"""RPC outages, timeouts and "landed but the response was lost": resumed by signature, charged once."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.harness import DEPOSIT, PRICE, FaultRig
from tests.fixtures.processes import LocalnetProcess


@pytest.mark.parametrize("loss", ["reset", "timeout"])
async def test_a_pay_that_landed_but_whose_response_was_lost_is_granted_once(
    rig: FaultRig, loss: str
) -> None:
    """The proxy forwards ``sendTransaction`` (the chain executes it) and then resets the connection or
    never answers (the client's 10 s RPC timeout); the agent must find the transaction, not pay again."""
    user = await rig.add_user()
    assert rig.proxy is not None
    rig.proxy.lose_sends = 1
    rig.proxy.lose_by_silence = loss == "timeout"
    rig.faults += 1
    await rig.start_agent()
    request_id = await rig.recharge(user)
    await rig.verify(expect_granted=1)
    assert rig.proxy.responses_lost == 1
    assert rig.row_state(request_id) == "granted"


async def test_requests_arriving_while_the_rpc_is_down_are_settled_once_it_returns(rig: FaultRig) -> None:
    users = [await rig.add_user() for _ in range(2)]
    await rig.start_agent()
    assert rig.proxy is not None
    rig.proxy.down = True
    rig.faults += 1
    ids = [await rig.recharge(u) for u in users]
    for request_id in ids:
        await rig.wait_state(request_id, "pending", "submitted")
    await asyncio.sleep(1.5)
    for user in users:
        assert await rig.vault(user.pubkey()) == DEPOSIT  # nothing charged while the RPC is unreachable
    rig.proxy.down = False
    await rig.verify(expect_granted=2)


async def test_chain_process_killed_and_restarted_from_its_state_file_mid_stream(
    rig: FaultRig, localnet: LocalnetProcess
) -> None:
    users = [await rig.add_user() for _ in range(2)]
    await rig.start_agent()
    await rig.recharge(users[0])
    await rig.wait_settled()
    await asyncio.to_thread(localnet.kill)
    rig.faults += 1
    try:
        request_id = await rig.recharge(users[1], nonce=0)  # the chain cannot be asked
        await rig.wait_state(request_id, "pending", "submitted")
        await asyncio.sleep(1.0)
    finally:
        await asyncio.to_thread(localnet.start)
    assert await rig.vault(users[0].pubkey()) == DEPOSIT - PRICE  # the state file kept the first charge
    await rig.verify(expect_granted=2)
