"""kill -9 of the real agent at each step of a pay-as-you-go session, then a restart: one lock, one settle,
settled = the tokens the chats used (``pricing.mode: session``)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import pytest

from tests.faults.harness import FaultRig
from tests.faults.sessions import chat, chat_in_thread, open_session, stop, verify_session, wait_session

SessionRig = Callable[..., Awaitable[FaultRig]]


@pytest.mark.parametrize("point", ["before_pay", "after_submit", "after_landed", "after_grant"])
async def test_killed_while_locking_opens_one_session_and_settles_it_once(
    rig_factory: SessionRig, point: str
) -> None:
    rig = await rig_factory(pricing_mode="session")
    user = await rig.add_user()
    crashing = await rig.start_agent(fault=point)
    start = await open_session(rig, user)
    assert await crashing.wait_exit(30) == -signal.SIGKILL
    rig.faults += 1

    await rig.start_agent()
    await wait_session(rig, start.id().to_hex(), "open")
    await chat_in_thread(rig, user, "hello")
    await stop(rig, start)
    await verify_session(rig, user, start)


async def test_killed_mid_chat_settles_only_the_chats_that_were_booked(rig_factory: SessionRig) -> None:
    rig = await rig_factory(pricing_mode="session")
    user = await rig.add_user()
    agent = await rig.start_agent()
    start = await open_session(rig, user)
    await wait_session(rig, start.id().to_hex(), "open")
    await chat_in_thread(rig, user, "hello")
    await asyncio.to_thread(chat, rig, user, "tell me a long story", stop_after_first=True)
    await agent.kill()  # while the second answer streams
    rig.faults += 1

    await rig.start_agent()
    await stop(rig, start)
    await verify_session(rig, user, start)


@pytest.mark.parametrize("point", ["before_settle", "after_settle_submit", "after_settle_landed"])
async def test_killed_while_settling_settles_once_after_restart(rig_factory: SessionRig, point: str) -> None:
    rig = await rig_factory(pricing_mode="session")
    user = await rig.add_user()
    crashing = await rig.start_agent(fault=point)
    start = await open_session(rig, user)
    await wait_session(rig, start.id().to_hex(), "open")
    await chat_in_thread(rig, user, "hello")
    await stop(rig, start)
    assert await crashing.wait_exit(30) == -signal.SIGKILL
    rig.faults += 1

    await rig.start_agent()
    await verify_session(rig, user, start)
