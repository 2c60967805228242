"""Pay-as-you-go sessions end to end: real signed Requests → lock on the localnet stand-in → chats debit
the budget → the session ends (user stop, budget used up, idle, agent stop) → one settle of the exact usage.

Both program versions.  Chats are booked on the ledger exactly as the chat server books them (reserve,
commit with the signed debit); the chat server itself is covered by the system test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from solders.signature import Signature

from device.ledger import RechargeState, SessionState, session_price
from device.recharge import FaultPoints
from device.recharge.sessions import SessionKeeper
from device.solana import program as prog
from device.solana.program import LockAccountV1, LockAccountV2
from tests.fixtures.proxy import FlakyProxy
from tests.fixtures.recharge import PRICE, TOKENS_PER_LAMPORT, Rig, both, grant_tokens, rig, server
from tests.fixtures.sessions import (
    IDLE_SECONDS,
    SimulatedCrash,
    chat,
    crash,
    device_signer,
    session_parts,
    stop_request,
)

__all__ = ["both", "rig", "server"]  # fixtures used by name below

BUDGET = grant_tokens()


def user_account(rig: Rig) -> prog.UserAccount:
    raw = rig.server.chain.account(prog.user_pda(rig.program.program_id, rig.user.pubkey()))
    assert raw is not None
    return prog.UserAccount.decode(bytes(raw.data))


def lock_exists(rig: Rig, nonce: int = 0) -> bool:
    return (
        rig.server.chain.account(prog.lock_pda(rig.program.program_id, rig.user.pubkey(), nonce)) is not None
    )


def contents(rig: Rig) -> list[dict[str, Any]]:
    return rig.replies()


def closing_summary(rig: Rig, request_id: str) -> dict[str, Any]:
    (status,) = [
        r["Status"]
        for r in contents(rig)
        if "Status" in r
        and r["Status"]["status"] == "Available"
        and r["Status"]["initial_request"] == request_id
    ]
    assert status["reason"] == "UserBehaviour"
    summary: dict[str, Any] = json.loads(status["payload"])["session"]
    return summary


# --------------------------------------------------------------------------------------------------- lock


async def test_a_session_recharge_locks_the_amount_and_grants_a_budget(both: Rig) -> None:
    rig = both
    parts = session_parts(rig)
    before = rig.chain_state()
    start = rig.request()

    await parts.processor.handle(start)

    after = rig.chain_state()
    assert (after["vault"], after["treasury"], after["nonce"]) == (before["vault"], before["treasury"], 1)
    assert user_account(rig).locked_amount == PRICE
    lock = rig.server.chain.account(prog.lock_pda(rig.program.program_id, rig.user.pubkey(), 0))
    assert lock is not None
    layout = LockAccountV2 if rig.version.value == "v2" else LockAccountV1
    assert layout.decode(bytes(lock.data)).amount == PRICE
    row = rig.ledger.recharge(start.event_id)
    assert row is not None and row.state is RechargeState.GRANTED and row.charge == "lock"
    session = rig.ledger.session(start.event_id)
    assert session is not None and session.state is SessionState.OPEN and session.budget_tokens == BUDGET
    assert rig.ledger.balance(str(rig.user.pubkey())).total == BUDGET
    # Working and the budget's Transaction; no Available until the session is settled.
    assert [next(iter(r)) for r in contents(rig)] == ["Status", "Transaction"]
    assert contents(rig)[0]["Status"]["status"] == "Working"
    assert contents(rig)[1]["Transaction"] == {"user": str(rig.user.pubkey()), "tokens": BUDGET}


async def test_a_second_session_of_the_same_user_is_refused_while_one_is_open(rig: Rig) -> None:
    parts = session_parts(rig)
    await parts.processor.handle(rig.request())
    second = rig.request(rig.payload(nonce=1))

    await parts.processor.handle(second)

    row = rig.ledger.recharge(second.event_id)
    assert row is not None and row.state is RechargeState.FAILED and row.error_code == "session_open"
    assert user_account(rig).nonce == 1 and user_account(rig).locked_amount == PRICE


# ------------------------------------------------------------------------------------------- settlement


async def test_user_stop_settles_the_exact_usage_and_returns_the_rest(both: Rig) -> None:
    rig = both
    parts = session_parts(rig)
    user = str(rig.user.pubkey())
    start = rig.request()
    await parts.processor.handle(start)
    before = rig.chain_state()
    signer = device_signer(rig)
    for i, used in enumerate((100, 250, 7)):
        chat(rig.ledger, signer, user, used, key=f"chat-{i}")
    used = 357

    await parts.processor.handle(stop_request(rig, start))
    await parts.keeper.run_once()

    settled = session_price(used, TOKENS_PER_LAMPORT)
    assert settled == -(-357 // 3) == 119
    after = rig.chain_state()
    assert after["treasury"] == before["treasury"] + settled
    assert after["vault"] == before["vault"] - settled
    assert user_account(rig).locked_amount == 0 and not lock_exists(rig)
    assert rig.ledger.balance(user).total == 0
    session = rig.ledger.session(start.event_id)
    assert session is not None and session.state is SessionState.SETTLED
    assert closing_summary(rig, start.event_id) == {
        "locked_lamports": PRICE,
        "settled_lamports": settled,
        "returned_lamports": PRICE - settled,
        "tokens_used": used,
        "reason": "user_stop",
    }
    closing = [r["Transaction"] for r in contents(rig) if "Transaction" in r][-1]
    assert closing == {"user": user, "tokens": -(BUDGET - used)}


async def test_a_stop_naming_no_open_session_is_refused(rig: Rig) -> None:
    parts = session_parts(rig)
    start = rig.request()  # never handled: no session

    stop = stop_request(rig, start)
    await parts.processor.handle(stop)

    assert rig.refusal()["payload"]["error"]["code"] == "session_not_found"


async def test_an_idle_session_is_settled_after_the_timeout_and_not_before(rig: Rig) -> None:
    parts = session_parts(rig)
    start = rig.request()
    await parts.processor.handle(start)
    chat(rig.ledger, device_signer(rig), str(rig.user.pubkey()), 30, key="chat")

    parts.clock.shift = IDLE_SECONDS - 5
    await parts.keeper.run_once()
    assert lock_exists(rig)

    parts.clock.shift = IDLE_SECONDS + 1
    await parts.keeper.run_once()
    assert not lock_exists(rig)
    assert closing_summary(rig, start.event_id)["reason"] == "idle"
    assert closing_summary(rig, start.event_id)["settled_lamports"] == 10


async def test_a_used_up_budget_settles_the_whole_lock(rig: Rig) -> None:
    parts = session_parts(rig)
    start = rig.request()
    await parts.processor.handle(start)
    before = rig.chain_state()
    chat(rig.ledger, device_signer(rig), str(rig.user.pubkey()), BUDGET, key="chat")

    await parts.keeper.run_once()

    assert rig.chain_state()["treasury"] == before["treasury"] + PRICE
    assert closing_summary(rig, start.event_id)["reason"] == "budget_used"
    assert closing_summary(rig, start.event_id)["returned_lamports"] == 0


async def test_a_session_is_not_closed_while_a_chat_is_in_flight(rig: Rig) -> None:
    parts = session_parts(rig)
    start = rig.request()
    await parts.processor.handle(start)
    user = str(rig.user.pubkey())
    held = rig.ledger.reserve(user, 100, key="in-flight")
    await parts.processor.handle(stop_request(rig, start))

    await parts.keeper.run_once()
    assert lock_exists(rig)

    rig.ledger.commit(held, 40)
    await parts.keeper.run_once()
    assert not lock_exists(rig)
    assert closing_summary(rig, start.event_id)["tokens_used"] == 40


async def test_stopping_the_agent_settles_open_sessions(rig: Rig) -> None:
    parts = session_parts(rig)
    start = rig.request()
    await parts.processor.handle(start)

    await parts.keeper.aclose()

    assert not lock_exists(rig)
    assert closing_summary(rig, start.event_id) == {
        "locked_lamports": PRICE,
        "settled_lamports": 0,
        "returned_lamports": PRICE,
        "tokens_used": 0,
        "reason": "agent_stop",
    }


async def test_tokens_held_before_the_session_are_spent_first(rig: Rig) -> None:
    parts = session_parts(rig)
    user = str(rig.user.pubkey())
    rig.ledger.grant("earlier-prepaid", user, 50)
    start = rig.request()
    await parts.processor.handle(start)
    chat(rig.ledger, device_signer(rig), user, 80, key="chat")

    await parts.processor.handle(stop_request(rig, start))
    await parts.keeper.run_once()

    assert closing_summary(rig, start.event_id)["tokens_used"] == 30
    assert rig.ledger.balance(user).total == 0


# ------------------------------------------------------------------------------------- crash and resume


@pytest.mark.parametrize("point", ["before_settle", "after_settle_submit", "after_settle_landed"])
async def test_a_crash_at_each_settle_step_settles_once_after_restart(rig: Rig, point: str) -> None:
    parts = session_parts(rig, faults=FaultPoints([point], kill=crash))
    start = rig.request()
    await parts.processor.handle(start)
    chat(rig.ledger, device_signer(rig), str(rig.user.pubkey()), 600, key="chat")
    await parts.processor.handle(stop_request(rig, start))
    before = rig.chain_state()

    with pytest.raises(SimulatedCrash):
        await parts.keeper.run_once()
    assert lock_exists(rig) == (point != "after_settle_landed")

    restarted: SessionKeeper = session_parts(rig, clock=parts.clock).keeper
    await restarted.run_once()
    await restarted.run_once()  # nothing left to do: no second settle

    assert rig.chain_state()["treasury"] == before["treasury"] + 200
    assert not lock_exists(rig)
    assert closing_summary(rig, start.event_id)["settled_lamports"] == 200
    debits = [
        r["Transaction"]["tokens"]
        for r in contents(rig)
        if "Transaction" in r and r["Transaction"]["tokens"] < 0
    ]
    assert debits == [-600, -(BUDGET - 600)]


@pytest.mark.parametrize("point", ["before_pay", "after_submit", "after_landed"])
async def test_a_crash_at_each_lock_step_locks_once_after_restart(rig: Rig, point: str) -> None:
    parts = session_parts(rig, faults=FaultPoints([point], kill=crash))
    start = rig.request()
    with pytest.raises(SimulatedCrash):
        await parts.processor.handle(start)

    restarted = session_parts(rig, clock=parts.clock)
    await restarted.processor.resume_unfinished()

    assert user_account(rig).nonce == 1 and user_account(rig).locked_amount == PRICE
    session = rig.ledger.session(start.event_id)
    assert session is not None and session.state is SessionState.OPEN
    assert rig.ledger.balance(str(rig.user.pubkey())).total == BUDGET


async def test_a_session_idle_while_the_agent_was_down_is_settled_at_start(rig: Rig) -> None:
    parts = session_parts(rig)
    start = rig.request()
    await parts.processor.handle(start)

    parts.clock.shift = IDLE_SECONDS + 60  # the agent was down that long
    restarted = session_parts(rig, clock=parts.clock).keeper
    await restarted.start()
    await restarted.aclose(settle_open=False)

    assert not lock_exists(rig)
    assert closing_summary(rig, start.event_id)["reason"] == "idle"


async def test_no_second_lock_while_another_lock_of_the_user_has_an_unknown_outcome(rig: Rig) -> None:
    parts = session_parts(rig)
    user = str(rig.user.pubkey())
    unknown = "ee" * 32  # a lock recorded and maybe sent before a crash; resumed later
    rig.ledger.begin_recharge(
        unknown,
        author="ab" * 32,
        user=user,
        nonce=0,
        amount_lamports=PRICE,
        tokens=BUDGET,
        payload="{}",
        charge="lock",
    )
    rig.ledger.record_submission(unknown, "1" * 64, 10**9, b"tx")
    second = rig.request(rig.payload(nonce=0))

    await parts.processor.handle(second)

    row = rig.ledger.recharge(second.event_id)
    assert row is not None and row.error_code == "session_open"
    assert user_account(rig).nonce == 0


async def test_a_settle_whose_answer_was_lost_is_recognized_by_the_closed_lock(rig: Rig) -> None:
    parts = session_parts(rig, faults=FaultPoints(["before_settle"], kill=crash))
    start = rig.request()
    await parts.processor.handle(start)
    chat(rig.ledger, device_signer(rig), str(rig.user.pubkey()), 50, key="chat")
    await parts.processor.handle(stop_request(rig, start))
    with pytest.raises(SimulatedCrash):
        await parts.keeper.run_once()  # closed: 50 tokens used, 17 lamports to settle
    before = rig.chain_state()
    # An earlier copy of the settle landed; the device only knows a signature the node never saw.
    landed = await parts.client.submit(await parts.client.prepare_settle(rig.user.pubkey(), 0, 17))
    assert landed.ok
    rig.ledger.record_settle_submission(start.event_id, str(Signature.default()), 0, b"lost")

    restarted = session_parts(rig, clock=parts.clock).keeper
    await restarted.run_once()

    assert rig.chain_state()["treasury"] == before["treasury"] + 17  # settled once
    session = rig.ledger.session(start.event_id)
    assert session is not None and session.state is SessionState.SETTLED
    assert closing_summary(rig, start.event_id)["settled_lamports"] == 17


async def test_a_settle_that_never_landed_is_signed_again_once_its_blockhash_expired(rig: Rig) -> None:
    parts = session_parts(rig, faults=FaultPoints(["before_settle"], kill=crash))
    start = rig.request()
    await parts.processor.handle(start)
    await parts.processor.handle(stop_request(rig, start))
    with pytest.raises(SimulatedCrash):
        await parts.keeper.run_once()
    rig.ledger.record_settle_submission(start.event_id, str(Signature.default()), 0, b"never sent")

    restarted = session_parts(rig, clock=parts.clock).keeper
    await restarted.run_once()  # expired, the lock still exists: back to closing
    assert lock_exists(rig)
    await restarted.run_once()

    assert not lock_exists(rig)
    session = rig.ledger.session(start.event_id)
    assert session is not None and session.state is SessionState.SETTLED
    assert session.signature != str(Signature.default())


async def test_an_unreachable_chain_is_retried_with_backoff_then_settled(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = FlakyProxy(rig.server.port)
    await proxy.start()
    try:
        parts = session_parts(rig, url=proxy.url)
        start = rig.request()
        await parts.processor.handle(start)
        await parts.processor.handle(stop_request(rig, start))
        proxy.cut()

        await parts.keeper.run_once(force=False)
        await parts.keeper.run_once(force=False)  # within the backoff: not tried again
        assert [getattr(r, "code", None) for r in caplog.records if "retrying in" in r.getMessage()] == [
            "rpc_unreachable"
        ]
        assert lock_exists(rig)

        proxy.down = False
        await parts.keeper.run_once()
        assert not lock_exists(rig)
    finally:
        await proxy.stop()
