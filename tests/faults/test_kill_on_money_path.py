"""kill -9 of the real agent at each step of the money path, then a restart: charged once, granted once."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import pytest

from tests.faults.harness import DEPOSIT, LEFT_BEHIND, PRICE, FaultRig


@pytest.mark.parametrize("point", list(LEFT_BEHIND))
async def test_agent_killed_at_a_money_path_step_charges_and_grants_exactly_once_after_restart(
    rig: FaultRig, point: str
) -> None:
    user = await rig.add_user()
    crashing = await rig.start_agent(fault=point)
    request_id = await rig.recharge(user)
    assert await crashing.wait_exit(30) == -signal.SIGKILL
    rig.faults += 1
    state, charged = LEFT_BEHIND[point]
    assert rig.row_state(request_id) == state
    assert await rig.vault(user.pubkey()) == DEPOSIT - (PRICE if charged else 0)
    if point == "after_grant":
        assert rig.outbox_pending() > 0  # the replies go out after the restart, not before

    await rig.start_agent()
    await rig.verify(expect_granted=1)


async def test_agent_killed_again_while_recovering_still_grants_each_request_once(
    rig_factory: Callable[..., Awaitable[FaultRig]],
) -> None:
    """One request per user; the agent is started with each point armed in turn, so it may die while it
    resumes the previous crash's request (before ``ready``) as well as on the new one."""
    rig = await rig_factory()
    users = [await rig.add_user() for _ in LEFT_BEHIND]
    for user, point in zip(users, LEFT_BEHIND, strict=True):
        crashing = await rig.start_agent(fault=point, ready=False)
        await crashing.ready_or_exit()  # it may already have died resuming the previous request
        await rig.recharge(user)  # if so, published while the agent is down: caught up at the next start
        assert await crashing.wait_exit(30) == -signal.SIGKILL
        rig.faults += 1
    await rig.start_agent()
    await rig.verify(expect_granted=len(users))
