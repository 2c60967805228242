"""Duplicated and reordered delivery: the same Request from two relays or again after a restart, old
events after new ones, a later nonce before an earlier one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tests.faults.harness import FaultRig


async def test_the_same_request_from_two_relays_and_again_later_is_charged_once(
    rig_factory: Callable[..., Awaitable[FaultRig]],
) -> None:
    rig = await rig_factory(relays=2)
    user = await rig.add_user()
    await rig.start_agent()
    event = await rig.request_event(user)
    await asyncio.gather(rig.publish(event, [rig.relays[0]]), rig.publish(event, [rig.relays[1]]))
    rig.faults += 1
    await rig.wait_settled()
    await rig.publish(event)  # delivered yet again, long after the grant
    rig.faults += 1
    await asyncio.sleep(1.0)
    await rig.verify(expect_granted=1)


async def test_a_request_delivered_again_after_a_restart_is_not_charged_again(rig: FaultRig) -> None:
    user = await rig.add_user()
    await rig.start_agent()
    event = await rig.request_event(user)
    await rig.publish(event)
    await rig.wait_settled()
    before = {e.id().to_hex() for e in await rig.device_events()}
    assert await rig.agent.stop() == 0
    await rig.start_agent()  # catch-up from cursor - overlap hands the request over again
    await rig.publish(event)
    rig.faults += 2
    await asyncio.sleep(1.5)
    after = {e.id().to_hex() for e in await rig.device_events()}
    assert after == before  # no new reply: the second delivery did nothing
    await rig.verify(expect_granted=1)


async def test_requests_delivered_out_of_order_are_each_charged_at_most_once(rig: FaultRig) -> None:
    early, live = await rig.add_user(), await rig.add_user()
    now = int(time.time())
    # caught up while the agent is down: published newest first, older created_at second
    second = await rig.request_event(early, nonce=1, created_at=now)
    first = await rig.request_event(early, nonce=0, created_at=now - 60)
    await rig.publish(second)
    await rig.publish(first)
    await rig.start_agent()
    await rig.wait_settled()
    # live: the later nonce arrives first and cannot land (the chain's nonce is still 0)
    late = await rig.request_event(live, nonce=1)
    await rig.publish(late)
    await rig.wait_state(late.id().to_hex(), "failed")
    await rig.recharge(live, nonce=0)
    rig.faults += 2
    await rig.verify(expect_granted=3, expect_refused=1)
