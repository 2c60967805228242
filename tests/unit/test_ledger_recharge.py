"""The ledger's recharge state machine: one SQLite transaction per step, idempotent, never undoing a grant."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.ledger import Ledger, LedgerError, OutboxEvent, RechargeState, pay_grant_key

REQ = "ab" * 32
AUTHOR = "cd" * 32
ALICE = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
PAYLOAD = '{"user":"AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9","nonce":0,"recover_info":"{}"}'


def event(event_id: str) -> OutboxEvent:
    return OutboxEvent(event_id, json.dumps({"id": event_id, "kind": 1573}))


@pytest.fixture
def ledger(state_dir: Path) -> Iterator[Ledger]:
    with Ledger.open(state_dir / "ledger.db") as opened:
        yield opened


def begin(ledger: Ledger, request_id: str = REQ, *, tokens: int = 15) -> None:
    ledger.begin_recharge(
        request_id, author=AUTHOR, user=ALICE, nonce=0, amount_lamports=5, tokens=tokens, payload=PAYLOAD
    )


def submitted(ledger: Ledger) -> None:
    begin(ledger)
    ledger.record_submission(REQ, "sig1", 150, b"tx")


def test_begin_records_a_pending_row(ledger: Ledger) -> None:
    begin(ledger)
    row = ledger.recharge(REQ)
    assert row is not None
    assert (row.state, row.user, row.nonce, row.amount_lamports, row.tokens, row.payload, row.author) == (
        RechargeState.PENDING,
        ALICE,
        0,
        5,
        15,
        PAYLOAD,
        AUTHOR,
    )


def test_begin_of_a_known_request_returns_the_existing_row_unchanged(ledger: Ledger) -> None:
    submitted(ledger)
    again = ledger.begin_recharge(
        REQ, author="ef" * 32, user=ALICE, nonce=9, amount_lamports=7, tokens=21, payload="{}"
    )
    assert (again.state, again.nonce, again.author) == (RechargeState.SUBMITTED, 0, AUTHOR)


def test_record_submission_stores_signature_height_and_bytes(ledger: Ledger) -> None:
    submitted(ledger)
    row = ledger.recharge(REQ)
    assert row is not None
    assert (row.state, row.signature, row.last_valid_block_height, row.tx_bytes) == (
        RechargeState.SUBMITTED,
        "sig1",
        150,
        b"tx",
    )


def test_recording_the_same_signature_again_is_a_no_op(ledger: Ledger) -> None:
    submitted(ledger)
    assert ledger.record_submission(REQ, "sig1", 150, b"tx").signature == "sig1"


def test_a_second_signature_for_one_request_is_refused(ledger: Ledger) -> None:
    submitted(ledger)
    with pytest.raises(LedgerError) as err:
        ledger.record_submission(REQ, "sig2", 151, b"tx2")
    assert err.value.code == "idempotency_conflict"


def test_complete_grants_enqueues_and_finishes_in_one_step(ledger: Ledger) -> None:
    submitted(ledger)
    assert ledger.complete_recharge(
        REQ, grant_key=REQ, user=ALICE, tokens=15, event_id="e2", outbox=[event("e1"), event("e2")]
    )
    assert ledger.balance(ALICE).total == 15
    assert [e.event_id for e in ledger.pending_outbox()] == ["e1", "e2"]
    row = ledger.recharge(REQ)
    assert row is not None and row.state is RechargeState.GRANTED


def test_complete_twice_grants_once(ledger: Ledger) -> None:
    submitted(ledger)
    ledger.complete_recharge(REQ, grant_key=REQ, user=ALICE, tokens=15, event_id="e1", outbox=[event("e1")])
    assert not ledger.complete_recharge(
        REQ, grant_key=REQ, user=ALICE, tokens=15, event_id="e9", outbox=[event("e9")]
    )
    assert ledger.balance(ALICE).total == 15
    assert [e.event_id for e in ledger.pending_outbox()] == ["e1"]


def test_complete_of_a_pending_row_is_refused(ledger: Ledger) -> None:
    begin(ledger)
    with pytest.raises(LedgerError) as err:
        ledger.complete_recharge(REQ, grant_key=REQ, user=ALICE, tokens=15, event_id=None, outbox=[])
    assert err.value.code == "recharge_state_invalid"
    assert ledger.balance(ALICE).total == 0


def test_complete_with_other_tokens_is_refused(ledger: Ledger) -> None:
    submitted(ledger)
    with pytest.raises(LedgerError) as err:
        ledger.complete_recharge(REQ, grant_key=REQ, user=ALICE, tokens=16, event_id=None, outbox=[])
    assert err.value.code == "idempotency_conflict"


def test_a_failing_outbox_insert_rolls_the_whole_completion_back(ledger: Ledger) -> None:
    submitted(ledger)
    with pytest.raises(LedgerError):
        ledger.complete_recharge(
            REQ, grant_key=REQ, user=ALICE, tokens=15, event_id=None, outbox=[OutboxEvent("x", "{}")]
        )
    row = ledger.recharge(REQ)
    assert row is not None and row.state is RechargeState.SUBMITTED
    assert ledger.balance(ALICE).total == 0


def test_fail_marks_the_row_and_enqueues_the_reply(ledger: Ledger) -> None:
    submitted(ledger)
    assert ledger.fail_recharge(REQ, "blockhash_expired", "never landed", outbox=[event("r1")])
    row = ledger.recharge(REQ)
    assert row is not None
    assert (row.state, row.error_code, row.error_message) == (
        RechargeState.FAILED,
        "blockhash_expired",
        "never landed",
    )
    assert [e.event_id for e in ledger.pending_outbox()] == ["r1"]


def test_fail_of_an_unknown_request_records_a_failed_row(ledger: Ledger) -> None:
    assert ledger.fail_recharge(
        REQ, "malformed_json", "bad", outbox=[event("r1")], author=AUTHOR, payload=None
    )
    row = ledger.recharge(REQ)
    assert row is not None and row.state is RechargeState.FAILED and row.user is None


def test_fail_of_an_unknown_request_needs_its_author(ledger: Ledger) -> None:
    with pytest.raises(LedgerError) as err:
        ledger.fail_recharge(REQ, "malformed_json", "bad", outbox=[])
    assert err.value.code == "recharge_not_found"


def test_fail_never_undoes_a_grant(ledger: Ledger) -> None:
    submitted(ledger)
    ledger.complete_recharge(REQ, grant_key=REQ, user=ALICE, tokens=15, event_id=None, outbox=[])
    assert not ledger.fail_recharge(REQ, "x_code", "late", outbox=[event("r1")])
    row = ledger.recharge(REQ)
    assert row is not None and row.state is RechargeState.GRANTED
    assert ledger.pending_outbox() == []


def test_fail_twice_replies_once(ledger: Ledger) -> None:
    ledger.fail_recharge(REQ, "malformed_json", "bad", outbox=[event("r1")], author=AUTHOR)
    assert not ledger.fail_recharge(REQ, "malformed_json", "bad", outbox=[event("r2")], author=AUTHOR)
    assert [e.event_id for e in ledger.pending_outbox()] == ["r1"]


def test_answer_records_once(ledger: Ledger) -> None:
    assert ledger.answer_request(REQ, author=AUTHOR, payload="{}", outbox=[event("a1")])
    assert not ledger.answer_request(REQ, author=AUTHOR, payload="{}", outbox=[event("a2")])
    row = ledger.recharge(REQ)
    assert row is not None and row.state is RechargeState.ANSWERED
    assert [e.event_id for e in ledger.pending_outbox()] == ["a1"]


def test_unfinished_lists_pending_and_submitted_only(ledger: Ledger) -> None:
    submitted(ledger)
    begin(ledger, "01" * 32)
    begin(ledger, "02" * 32)
    ledger.fail_recharge("02" * 32, "x_code", "no", outbox=[])
    ledger.answer_request("03" * 32, author=AUTHOR, payload=None, outbox=[])
    assert [r.request_id for r in ledger.unfinished_recharges()] == [REQ, "01" * 32]


def test_recharge_rows_survive_reopening(state_dir: Path) -> None:
    with Ledger.open(state_dir / "ledger.db") as first:
        submitted(first)
    with Ledger.open(state_dir / "ledger.db") as second:
        row = second.recharge(REQ)
        assert row is not None and row.state is RechargeState.SUBMITTED and row.tx_bytes == b"tx"


@pytest.mark.parametrize("keyed_by", ["pay", "request"], ids=["pay signature", "request id (older)"])
def test_announced_pays_name_the_pay_behind_each_grant_event(ledger: Ledger, keyed_by: str) -> None:
    submitted(ledger)
    key = pay_grant_key("sig1") if keyed_by == "pay" else REQ
    ledger.complete_recharge(REQ, grant_key=key, user=ALICE, tokens=15, event_id="e2", outbox=[event("e2")])
    begin(ledger, "ef" * 32)  # still pending: nothing announced for it
    assert ledger.announced_pays() == {"e2": "sig1"}
