"""The relay dropped and restarted mid-stream: nothing is lost, replies written meanwhile go out later."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.faults.harness import FaultRig


async def test_requests_published_while_the_agent_is_disconnected_are_caught_up(rig: FaultRig) -> None:
    users = [await rig.add_user() for _ in range(3)]
    await rig.start_agent()
    relay = rig.relays[0]
    await relay.kill()  # the agent loses its only relay and backs off
    rig.faults += 1
    await asyncio.sleep(0.5)
    await relay.start()  # same port, same LMDB; published before the agent reconnects
    await rig.recharge(users[0])
    await rig.recharge(users[1])
    assert await rig.agent.stop() == 0  # now the agent is down while a request is published
    rig.faults += 1
    await rig.recharge(users[2])
    await rig.start_agent()
    await rig.verify(expect_granted=3)


async def test_replies_written_while_the_relay_is_down_are_published_once_it_returns(rig: FaultRig) -> None:
    user = await rig.add_user()
    await rig.start_agent()
    assert rig.proxy is not None
    rig.proxy.send_delay = 2.0  # settlement is slow enough to pull the relay out from under it
    request_id = await rig.recharge(user)
    await rig.wait_state(request_id, "pending", "submitted")
    await rig.relays[0].kill()
    rig.faults += 1
    await rig.wait_state(request_id, "granted")
    await asyncio.sleep(0.5)
    assert rig.outbox_pending() > 0  # Status/Transaction/Status wait in the outbox
    await rig.relays[0].start()
    await rig.verify(expect_granted=1)


async def test_a_request_sent_only_to_the_relay_that_stayed_up_is_granted_once(
    rig_factory: Callable[..., Awaitable[FaultRig]],
) -> None:
    rig = await rig_factory(relays=2)
    users = [await rig.add_user() for _ in range(2)]
    await rig.start_agent()
    down, up = rig.relays
    await down.kill()
    rig.faults += 1
    await rig.publish(await rig.request_event(users[0]), [up])
    await down.start()
    await rig.publish(await rig.request_event(users[1]), [down])  # and only to the one that came back
    await rig.verify(expect_granted=2)
