"""Soak (``XEPHY_FAULTS_LONG=1``): many rounds of randomly chosen faults on one device, checked at the end.

The seed is ``XEPHY_FAULTS_SEED`` (default: the time) and is printed, so a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import pytest

from tests.faults.conftest import LONG
from tests.faults.harness import LEFT_BEHIND, FaultRig

ROUNDS = int(os.environ.get("XEPHY_FAULTS_ROUNDS", "30"))
FAULTS = ("kill", "relay", "rpc_lost", "rpc_down", "duplicate")


@pytest.mark.skipif(not LONG, reason="soak mode: set XEPHY_FAULTS_LONG=1")
async def test_random_faults_over_many_rounds_lose_nothing_and_charge_nothing_twice(rig: FaultRig) -> None:
    seed = int(os.environ.get("XEPHY_FAULTS_SEED", str(int(time.time()))))
    print(f"soak seed {seed}, {ROUNDS} rounds")
    rng = random.Random(seed)
    assert rig.proxy is not None
    await rig.start_agent()
    for _ in range(ROUNDS):
        user = await rig.add_user()
        fault = rng.choice(FAULTS)
        rig.faults += 1
        if fault == "kill":
            assert await rig.agent.stop() == 0
            crashing = await rig.start_agent(fault=rng.choice(list(LEFT_BEHIND)), ready=False)
            await crashing.ready_or_exit()  # it may die resuming an earlier round's request
            await rig.recharge(user)
            assert await crashing.wait_exit(30) == -signal.SIGKILL
            await rig.start_agent()
        elif fault == "relay":
            await rig.recharge(user)
            await asyncio.sleep(rng.uniform(0, 0.5))
            await rig.relays[0].kill()
            await asyncio.sleep(rng.uniform(0, 1))
            await rig.relays[0].start()
        elif fault == "rpc_lost":
            rig.proxy.lose_sends = 1
            await rig.recharge(user)
        elif fault == "rpc_down":
            rig.proxy.down = True
            await rig.recharge(user)
            await asyncio.sleep(rng.uniform(0.2, 2))
            rig.proxy.down = False
        else:
            event = await rig.request_event(user)
            await rig.publish(event)
            await rig.publish(event)
        if rng.random() < 0.3:
            await rig.wait_settled()
    await rig.verify(expect_granted=len(rig.requests))
