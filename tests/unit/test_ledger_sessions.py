"""The ledger's session state machine: a landed lock opens a session with its budget in one transaction;
closing debits exactly the unused budget and fixes ``ceil(used / rate)``; settling is recorded once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from device import ledger as ledger_module
from device.ledger import Ledger, LedgerError, OutboxEvent, RechargeState, SessionState, session_price

REQ = "ab" * 32
AUTHOR = "cd" * 32
ALICE = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
PAYLOAD = '{"user":"AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9","nonce":4,"recover_info":"{}"}'
LOCKED, RATE = 1_000, 3
BUDGET = LOCKED * RATE


def event(event_id: str) -> OutboxEvent:
    return OutboxEvent(event_id, json.dumps({"id": event_id, "kind": 1573}))


@pytest.fixture
def ledger(state_dir: Path) -> Iterator[Ledger]:
    with Ledger.open(state_dir / "ledger.db") as opened:
        yield opened


def locked(ledger: Ledger, request_id: str = REQ, *, user: str = ALICE) -> None:
    """A lock recharge whose transaction landed (submitted), not yet granted."""
    ledger.begin_recharge(
        request_id,
        author=AUTHOR,
        user=user,
        nonce=4,
        amount_lamports=LOCKED,
        tokens=BUDGET,
        payload=PAYLOAD,
        charge="lock",
    )
    ledger.record_submission(request_id, f"sig-{request_id[:4]}", 150, b"tx")


def opened(ledger: Ledger) -> None:
    locked(ledger)
    assert ledger.complete_lock(
        REQ, tokens_per_lamport=RATE, event_id="e1", outbox=[event("e0"), event("e1")]
    )


def spend(ledger: Ledger, used: int, key: str = "chat") -> None:
    ledger.commit(ledger.reserve(ALICE, used, key=key), used)


def test_session_price_is_the_ceiling_of_used_over_rate() -> None:
    assert [session_price(used, 3) for used in (0, 1, 3, 4, 357)] == [0, 1, 1, 2, 119]
    assert session_price(BUDGET, RATE) == LOCKED


def test_a_landed_lock_opens_a_session_grants_the_budget_and_queues_its_events(ledger: Ledger) -> None:
    opened(ledger)

    session = ledger.session(REQ)
    assert session is not None
    assert (session.state, session.user, session.nonce, session.locked_lamports, session.budget_tokens) == (
        SessionState.OPEN,
        ALICE,
        4,
        LOCKED,
        BUDGET,
    )
    assert ledger.balance(ALICE).total == BUDGET
    row = ledger.recharge(REQ)
    assert row is not None and row.state is RechargeState.GRANTED and row.charge == "lock"
    assert [e.event_id for e in ledger.pending_outbox()] == ["e0", "e1"]
    assert ledger.open_session(ALICE) == session
    assert not ledger.complete_lock(REQ, tokens_per_lamport=RATE, event_id="e1", outbox=[])  # once


def test_complete_lock_refuses_a_pay_row_and_an_unsubmitted_lock(ledger: Ledger) -> None:
    ledger.begin_recharge(
        REQ, author=AUTHOR, user=ALICE, nonce=0, amount_lamports=5, tokens=15, payload=PAYLOAD
    )
    with pytest.raises(LedgerError) as info:
        ledger.complete_lock(REQ, tokens_per_lamport=RATE, event_id=None, outbox=[])
    assert info.value.code == "recharge_state_invalid"
    ledger.record_submission(REQ, "sig", 150, b"tx")
    with pytest.raises(LedgerError) as info:
        ledger.complete_lock(REQ, tokens_per_lamport=RATE, event_id=None, outbox=[])
    assert info.value.code == "recharge_state_invalid"
    assert ledger.balance(ALICE).total == 0


def test_an_unknown_charge_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError) as info:
        ledger.begin_recharge(
            REQ, author=AUTHOR, user=ALICE, nonce=0, amount_lamports=5, tokens=15, payload="{}", charge="gift"
        )
    assert info.value.code == "argument_invalid"


def test_a_user_has_at_most_one_open_session(ledger: Ledger) -> None:
    opened(ledger)
    second = "ef" * 32
    locked(ledger, second)
    with pytest.raises(LedgerError) as info:
        ledger.complete_lock(second, tokens_per_lamport=RATE, event_id=None, outbox=[])
    assert info.value.code == "idempotency_conflict"
    assert ledger.balance(ALICE).total == BUDGET  # nothing of the second grant was written


def test_closing_debits_the_unused_budget_and_fixes_the_price(ledger: Ledger) -> None:
    opened(ledger)
    spend(ledger, 100)
    unused = ledger.unused_budget(ledger.session(REQ))  # type: ignore[arg-type]
    assert unused == BUDGET - 100

    closed = ledger.close_session(REQ, reason="user_stop", unused=unused, outbox=[event("close")])

    assert (closed.state, closed.used_tokens, closed.settle_lamports, closed.stop_reason) == (
        SessionState.CLOSING,
        100,
        34,
        "user_stop",
    )
    assert ledger.balance(ALICE).total == 0
    assert ledger.open_session(ALICE) is None
    again = ledger.close_session(REQ, reason="idle", unused=0, outbox=[event("other")])
    assert again == closed  # closing twice changes nothing
    assert "other" not in [e.event_id for e in ledger.pending_outbox()]


def test_closing_waits_for_chats_in_flight_and_rereads_the_unused_budget(ledger: Ledger) -> None:
    opened(ledger)
    held = ledger.reserve(ALICE, 50, key="in-flight")
    with pytest.raises(LedgerError) as info:
        ledger.close_session(REQ, reason="user_stop", unused=BUDGET, outbox=[])
    assert info.value.code == "session_busy"
    ledger.commit(held, 20)
    with pytest.raises(LedgerError) as info:
        ledger.close_session(REQ, reason="user_stop", unused=BUDGET, outbox=[])
    assert info.value.code == "idempotency_conflict"
    session = ledger.session(REQ)
    assert session is not None and session.state is SessionState.OPEN


def test_a_stop_is_remembered_and_its_reason_kept_at_close(ledger: Ledger) -> None:
    opened(ledger)
    assert ledger.request_stop(REQ, "user_stop")
    assert not ledger.request_stop(REQ, "agent_stop")  # the first reason stands
    closed = ledger.close_session(REQ, reason="idle", unused=BUDGET, outbox=[])
    assert closed.stop_reason == "user_stop"


def test_prepaid_tokens_held_before_the_session_are_spent_first(ledger: Ledger) -> None:
    ledger.grant("prepaid", ALICE, 40)
    opened(ledger)
    spend(ledger, 70)
    session = ledger.session(REQ)
    assert session is not None
    assert ledger.unused_budget(session) == BUDGET - 30


def test_settlement_is_recorded_before_sending_and_finished_once(ledger: Ledger) -> None:
    opened(ledger)
    ledger.close_session(REQ, reason="idle", unused=BUDGET, outbox=[])

    submitted = ledger.record_settle_submission(REQ, "settle-1", 300, b"settle")
    assert (submitted.state, submitted.signature) == (SessionState.SUBMITTED, "settle-1")
    assert ledger.record_settle_submission(REQ, "settle-1", 300, b"settle") == submitted
    with pytest.raises(LedgerError) as info:
        ledger.record_settle_submission(REQ, "settle-2", 300, b"other")
    assert info.value.code == "idempotency_conflict"

    reopened = ledger.retry_settle(REQ)  # the chain proved settle-1 never landed
    assert (reopened.state, reopened.signature) == (SessionState.CLOSING, None)
    ledger.record_settle_submission(REQ, "settle-2", 400, b"other")

    assert ledger.finish_session(REQ, outbox=[event("available")])
    assert not ledger.finish_session(REQ, outbox=[event("again")])
    session = ledger.session(REQ)
    assert (
        session is not None and session.state is SessionState.SETTLED and session.returned_lamports == LOCKED
    )
    assert ledger.unsettled_sessions() == []


def test_an_open_session_cannot_be_finished(ledger: Ledger) -> None:
    opened(ledger)
    with pytest.raises(LedgerError) as info:
        ledger.finish_session(REQ, outbox=[])
    assert info.value.code == "recharge_state_invalid"


def test_a_schema_2_ledger_gains_sessions_and_keeps_its_recharges_as_pay(state_dir: Path) -> None:
    path = state_dir / "old.db"
    conn = sqlite3.connect(path)
    for migration in ledger_module._MIGRATIONS[:2]:
        for statement in migration:
            conn.execute(statement)
    conn.execute(
        "INSERT INTO recharges (request_id, author, state, created_at, updated_at, error_code)"
        " VALUES (?, ?, 'failed', 1, 1, 'x')",
        (REQ, AUTHOR),
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()

    with Ledger.open(path) as ledger:
        row = ledger.recharge(REQ)
        assert row is not None and row.charge == "pay"
        assert ledger.unsettled_sessions() == []
