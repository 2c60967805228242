"""Unit tests for device.ledger: one behaviour each."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import device.ledger as ledger_module
from device.errors import DeviceError
from device.ledger import (
    SCHEMA_VERSION,
    Balance,
    InsufficientBalance,
    Ledger,
    LedgerError,
    OpenHold,
    OutboxEvent,
    RebuildReport,
    TransactionRecord,
)

ALICE = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
BOB = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"


def event(event_id: str, **extra: object) -> OutboxEvent:
    return OutboxEvent(event_id, json.dumps({"id": event_id, "kind": 1573, **extra}))


def ops(ledger: Ledger) -> list[tuple[str, str, int, str, str | None]]:
    conn = ledger._conn
    assert conn is not None
    return conn.execute("SELECT key, user, delta, kind, event_id FROM ops ORDER BY rowid").fetchall()


def outbox_ids(ledger: Ledger) -> list[str]:
    return [e.event_id for e in ledger.pending_outbox(1000)]


def fail_outbox_inserts(ledger: Ledger) -> None:
    """Make the next outbox insert fail inside the transaction (after the op row was written)."""
    conn = ledger._conn
    assert conn is not None
    conn.execute(
        "CREATE TEMP TRIGGER fail_outbox BEFORE INSERT ON main.outbox BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )


@pytest.fixture
def path(state_dir: Path) -> Path:
    return state_dir / "ledger.db"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger.open(path) as opened:
        yield opened


# ------------------------------------------------------------------------------------------- open / schema
def test_open_creates_parent_directory_and_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.db"
    with Ledger.open(path):
        assert path.is_file()


def test_open_sets_wal_full_sync_foreign_keys_and_schema_version(ledger: Ledger) -> None:
    conn = ledger._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopen_keeps_data(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.grant("req-1", ALICE, 100)
    with Ledger.open(path) as ledger:
        assert ledger.balance(ALICE).total == 100


def test_open_applies_new_migrations_to_an_existing_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Ledger.open(path) as ledger:
        ledger.grant("req-1", ALICE, 100)
    monkeypatch.setattr(
        ledger_module, "_MIGRATIONS", (*ledger_module._MIGRATIONS, ("CREATE TABLE extra (x)",))
    )
    monkeypatch.setattr(ledger_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Ledger.open(path) as ledger:
        conn = ledger._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert conn.execute("SELECT count(*) FROM extra").fetchone()[0] == 0
        assert ledger.balance(ALICE).total == 100


def test_a_failing_migration_leaves_the_file_as_it_was(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Ledger.open(path).close()
    broken = ("CREATE TABLE extra (x)", "THIS IS NOT SQL")
    monkeypatch.setattr(ledger_module, "_MIGRATIONS", (*ledger_module._MIGRATIONS, broken))
    monkeypatch.setattr(ledger_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(LedgerError):
        Ledger.open(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall() == []


def test_open_refuses_a_newer_schema(path: Path) -> None:
    Ledger.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError) as err:
        Ledger.open(path)
    assert err.value.code == "ledger_schema_too_new"


def test_open_reports_a_file_that_is_not_a_database(path: Path) -> None:
    path.write_bytes(b"not a database, just some bytes on a card" * 100)
    with pytest.raises(LedgerError) as err:
        Ledger.open(path)
    assert err.value.code == "ledger_corrupt"


def test_open_under_a_file_is_a_ledger_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(LedgerError) as err:
        Ledger.open(tmp_path / "not-a-dir" / "ledger.db")
    assert err.value.code == "ledger_error"


def test_closed_ledger_refuses_calls(ledger: Ledger) -> None:
    ledger.close()
    with pytest.raises(LedgerError) as err:
        ledger.balance(ALICE)
    assert err.value.code == "ledger_closed"


def test_errors_are_device_errors_with_codes() -> None:
    assert issubclass(LedgerError, DeviceError)
    assert issubclass(InsufficientBalance, LedgerError)
    assert LedgerError("x").code == "ledger_error"
    assert InsufficientBalance("x").code == "insufficient_balance"


# --------------------------------------------------------------------------------------------------- grant
def test_grant_credits_the_user(ledger: Ledger) -> None:
    assert ledger.grant("req-1", ALICE, 500) is True
    assert ledger.balance(ALICE) == Balance(total=500, reserved=0, available=500)


def test_balance_of_an_unknown_user_is_zero(ledger: Ledger) -> None:
    assert ledger.balance(BOB) == Balance(0, 0, 0)


def test_duplicate_grant_key_is_applied_once(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 500)
    assert ledger.grant("req-1", ALICE, 500) is False
    assert ledger.balance(ALICE).total == 500
    assert len(ops(ledger)) == 1


def test_duplicate_grant_does_not_enqueue_its_outbox_again(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 500, event_id="tx-1", outbox=[event("status-1"), event("tx-1")])
    # A retry after a restart signs fresh events (new ids); they must not be published.
    ledger.grant("req-1", ALICE, 500, event_id="tx-1b", outbox=[event("status-1b"), event("tx-1b")])
    assert outbox_ids(ledger) == ["status-1", "tx-1"]


def test_grant_key_reused_for_other_parameters_is_refused(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 500)
    with pytest.raises(LedgerError) as err:
        ledger.grant("req-1", BOB, 500)
    assert err.value.code == "idempotency_conflict"
    with pytest.raises(LedgerError):
        ledger.grant("req-1", ALICE, 501)
    assert ops(ledger) == [("req-1", ALICE, 500, "grant", None)]


def test_grant_and_its_outbox_rows_are_atomic(ledger: Ledger) -> None:
    fail_outbox_inserts(ledger)
    with pytest.raises(LedgerError):
        ledger.grant("req-1", ALICE, 500, event_id="tx-1", outbox=[event("tx-1")])
    assert ledger.balance(ALICE).total == 0
    assert ops(ledger) == []
    assert outbox_ids(ledger) == []


def test_grant_with_an_event_id_already_used_is_refused(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 500, event_id="tx-1")
    with pytest.raises(LedgerError) as err:
        ledger.grant("req-2", ALICE, 500, event_id="tx-1")
    assert err.value.code == "idempotency_conflict"
    assert ledger.balance(ALICE).total == 500


@pytest.mark.parametrize("tokens", [0, -5, True, 1.5, "10", None])
def test_grant_refuses_a_non_positive_or_non_integer_amount(ledger: Ledger, tokens: object) -> None:
    with pytest.raises(LedgerError) as err:
        ledger.grant("req-1", ALICE, tokens)  # type: ignore[arg-type]
    assert err.value.code == "invalid_amount"
    assert ops(ledger) == []


@pytest.mark.parametrize(("key", "user"), [("", ALICE), ("req-1", ""), (None, ALICE), ("req-1", 7)])
def test_grant_refuses_an_empty_key_or_user(ledger: Ledger, key: object, user: object) -> None:
    with pytest.raises(LedgerError) as err:
        ledger.grant(key, user, 10)  # type: ignore[arg-type]
    assert err.value.code == "argument_invalid"


def test_grant_refuses_an_outbox_event_whose_json_has_another_id(ledger: Ledger) -> None:
    with pytest.raises(LedgerError) as err:
        ledger.grant("req-1", ALICE, 10, outbox=[OutboxEvent("tx-1", json.dumps({"id": "tx-2"}))])
    assert err.value.code == "argument_invalid"
    assert ops(ledger) == []


def test_ops_are_append_only(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 10)
    conn = ledger._conn
    assert conn is not None
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE ops SET delta = 1000")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("DELETE FROM ops")


# ------------------------------------------------------------------------------------------- reservations
def test_reserve_holds_tokens_without_changing_the_total(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 30, key="chat-1")
    assert (res.key, res.user, res.amount) == ("chat-1", ALICE, 30)
    assert ledger.balance(ALICE) == Balance(total=100, reserved=30, available=70)


def test_reserve_refuses_more_than_available(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    ledger.reserve(ALICE, 80, key="chat-1")
    with pytest.raises(InsufficientBalance) as err:
        ledger.reserve(ALICE, 21, key="chat-2")
    assert err.value.code == "insufficient_balance"
    assert ledger.balance(ALICE).reserved == 80


def test_reserve_of_another_users_tokens_is_refused(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    with pytest.raises(InsufficientBalance):
        ledger.reserve(BOB, 1, key="chat-1")


def test_reserve_zero_is_allowed(ledger: Ledger) -> None:
    assert ledger.reserve(BOB, 0, key="chat-1").amount == 0


@pytest.mark.parametrize("n", [-1, True, False, 2.0, "3"])
def test_reserve_refuses_negative_bool_or_non_integer(ledger: Ledger, n: object) -> None:
    ledger.grant("req-1", ALICE, 100)
    with pytest.raises(LedgerError) as err:
        ledger.reserve(ALICE, n, key="chat-1")  # type: ignore[arg-type]
    assert err.value.code == "invalid_amount"


def test_reserve_refuses_a_key_already_held(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    ledger.reserve(ALICE, 10, key="chat-1")
    with pytest.raises(LedgerError) as err:
        ledger.reserve(ALICE, 10, key="chat-1")
    assert err.value.code == "idempotency_conflict"


def test_reserve_refuses_a_key_already_applied(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    ledger.commit(ledger.reserve(ALICE, 10, key="chat-1"), 5)
    with pytest.raises(LedgerError) as err:
        ledger.reserve(ALICE, 10, key="chat-1")
    assert err.value.code == "idempotency_conflict"


def test_commit_debits_used_and_frees_the_rest(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    assert ledger.commit(res, 25, event_id="tx-2", outbox=[event("tx-2")]) == 25
    assert ledger.balance(ALICE) == Balance(total=75, reserved=0, available=75)
    assert ops(ledger)[-1] == ("chat-1", ALICE, -25, "debit", "tx-2")
    assert outbox_ids(ledger) == ["tx-2"]


def test_commit_more_than_reserved_is_refused(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    with pytest.raises(LedgerError) as err:
        ledger.commit(res, 41)
    assert err.value.code == "invalid_amount"
    assert ledger.balance(ALICE) == Balance(total=100, reserved=40, available=60)


@pytest.mark.parametrize("used", [-1, True, 1.0])
def test_commit_refuses_negative_bool_or_non_integer(ledger: Ledger, used: object) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    with pytest.raises(LedgerError) as err:
        ledger.commit(res, used)  # type: ignore[arg-type]
    assert err.value.code == "invalid_amount"


def test_commit_is_idempotent(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    ledger.commit(res, 25, event_id="tx-2", outbox=[event("tx-2")])
    assert ledger.commit(res, 30, event_id="tx-3", outbox=[event("tx-3")]) == 25
    assert ledger.balance(ALICE).total == 75
    assert outbox_ids(ledger) == ["tx-2"]


def test_commit_of_zero_records_a_debit(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    assert ledger.commit(res, 0) == 0
    assert ledger.commit(res, 10) == 0
    assert ledger.balance(ALICE) == Balance(100, 0, 100)


def test_commit_and_its_outbox_rows_are_atomic(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    fail_outbox_inserts(ledger)
    with pytest.raises(LedgerError):
        ledger.commit(res, 25, event_id="tx-2", outbox=[event("tx-2")])
    assert ledger.balance(ALICE) == Balance(total=100, reserved=40, available=60)
    assert [op[0] for op in ops(ledger)] == ["req-1"]


def test_release_frees_without_debiting(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    assert ledger.release(res) is True
    assert ledger.balance(ALICE) == Balance(100, 0, 100)
    assert ledger.release(res) is False


def test_releasing_one_of_two_empty_reservations_keeps_the_other(ledger: Ledger) -> None:
    first = ledger.reserve(ALICE, 0, key="chat-1")
    second = ledger.reserve(ALICE, 0, key="chat-2")
    assert ledger.release(second) is True
    assert ledger.release(first) is True
    assert ledger.balance(ALICE) == Balance(0, 0, 0)


def test_a_reservation_rewritten_for_another_user_is_not_held(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    forged = dataclasses.replace(res, user=BOB)
    with pytest.raises(LedgerError) as err:
        ledger.commit(forged, 10)
    assert err.value.code == "reservation_not_held"
    assert ledger.release(forged) is False
    assert ledger.balance(ALICE) == Balance(100, 40, 60)
    assert ledger.balance(BOB) == Balance(0, 0, 0)


def test_a_reservation_rewritten_to_a_larger_amount_is_not_held(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 10, key="chat-1")
    with pytest.raises(LedgerError) as err:
        ledger.commit(dataclasses.replace(res, amount=90), 90)
    assert err.value.code == "reservation_not_held"
    assert ledger.balance(ALICE).total == 100


def test_release_after_commit_is_a_no_op(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    ledger.commit(res, 25)
    assert ledger.release(res) is False
    assert ledger.balance(ALICE) == Balance(75, 0, 75)


def test_commit_after_release_is_refused(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    ledger.release(res)
    with pytest.raises(LedgerError) as err:
        ledger.commit(res, 10)
    assert err.value.code == "reservation_not_held"
    assert ledger.balance(ALICE).total == 100


def test_a_hold_survives_a_reopen_at_its_last_checkpoint(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.grant("req-1", ALICE, 100)
        res = ledger.reserve(ALICE, 40, key="chat-1")
        ledger.checkpoint(res, 12)
        ledger.checkpoint(res, 7)  # checkpoints only move forward
    with Ledger.open(path) as ledger:
        assert ledger.balance(ALICE) == Balance(100, 40, 60)
        assert ledger.open_holds() == [OpenHold(res, 12)]
        assert ledger.commit(res, 12) == 12
        assert ledger.open_holds() == []
    with Ledger.open(path) as ledger:
        assert ledger.balance(ALICE) == Balance(88, 0, 88)
        assert ledger.commit(res, 12) == 12  # settling again after another restart changes nothing
        assert ledger.balance(ALICE).total == 88


def test_a_released_hold_is_gone_after_a_reopen(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.grant("req-1", ALICE, 100)
        assert ledger.release(ledger.reserve(ALICE, 40, key="chat-1")) is True
    with Ledger.open(path) as ledger:
        assert ledger.open_holds() == []
        assert ledger.balance(ALICE) == Balance(100, 0, 100)


def test_checkpoint_refuses_more_than_reserved_or_a_hold_not_held(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    with pytest.raises(LedgerError) as err:
        ledger.checkpoint(res, 41)
    assert err.value.code == "invalid_amount"
    ledger.release(res)
    with pytest.raises(LedgerError) as err:
        ledger.checkpoint(res, 1)
    assert err.value.code == "reservation_not_held"


def test_a_hold_that_cannot_be_written_is_not_held(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    assert ledger._conn is not None
    ledger._conn.execute("CREATE TRIGGER no_holds BEFORE INSERT ON holds BEGIN SELECT RAISE(ABORT, 'x'); END")
    with pytest.raises(LedgerError):
        ledger.reserve(ALICE, 40, key="chat-1")
    assert ledger.balance(ALICE) == Balance(100, 0, 100)
    assert ledger.open_holds() == []


def test_commit_retried_after_a_reopen_returns_the_recorded_amount(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.grant("req-1", ALICE, 100)
        res = ledger.reserve(ALICE, 40, key="chat-1")
        ledger.commit(res, 25)
    with Ledger.open(path) as ledger:
        assert ledger.commit(res, 40) == 25
        assert ledger.balance(ALICE).total == 75


# ----------------------------------------------------------------------------------------------- outbox
def test_enqueue_is_idempotent_on_event_id(ledger: Ledger) -> None:
    assert ledger.enqueue(event("e1")) is True
    assert ledger.enqueue(event("e1")) is False
    assert outbox_ids(ledger) == ["e1"]


def test_outbox_stores_the_event_json_verbatim(ledger: Ledger) -> None:
    raw = '{"id":"e1","pubkey":"ab","content":"{\\"Transaction\\":{\\"tokens\\":-5}}" ,"sig":"00"}'
    ledger.enqueue(OutboxEvent("e1", raw))
    assert ledger.pending_outbox(1)[0].event_json == raw


def test_pending_outbox_is_oldest_first_even_if_the_clock_goes_back(path: Path) -> None:
    times = iter([2_000_000_000, 1_000, 1_500])  # a Pi without RTC before and after NTP sync
    with Ledger.open(path, clock=lambda: next(times)) as ledger:
        for event_id in ("a", "b", "c"):
            ledger.enqueue(event(event_id))
        assert outbox_ids(ledger) == ["a", "b", "c"]
        assert outbox_ids(ledger)[:2] == [e.event_id for e in ledger.pending_outbox(2)]


def test_mark_sent_attempt_counts_attempts(ledger: Ledger) -> None:
    ledger.enqueue(event("e1"))
    ledger.mark_sent_attempt("e1")
    ledger.mark_sent_attempt("e1")
    assert ledger.pending_outbox(1)[0].attempts == 2


def test_mark_acked_removes_the_event_from_pending(ledger: Ledger) -> None:
    ledger.enqueue(event("e1"))
    ledger.enqueue(event("e2"))
    assert ledger.mark_acked("e1", "ws://relay-a") is True
    assert ledger.mark_acked("e1", "ws://relay-b") is False
    assert outbox_ids(ledger) == ["e2"]
    conn = ledger._conn
    assert conn is not None
    assert conn.execute("SELECT acked_by FROM outbox WHERE event_id = 'e1'").fetchone()[0] == "ws://relay-a"


def test_mark_acked_of_an_unknown_event_is_false(ledger: Ledger) -> None:
    assert ledger.mark_acked("nope", "ws://relay-a") is False


def test_outbox_survives_a_reopen(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.grant("req-1", ALICE, 10, event_id="tx-1", outbox=[event("tx-1")])
    with Ledger.open(path) as ledger:
        assert outbox_ids(ledger) == ["tx-1"]


# ------------------------------------------------------------------------------------ relay cursor
def test_cursor_starts_empty(ledger: Ledger) -> None:
    assert ledger.cursor() is None


def test_cursor_never_moves_back(ledger: Ledger) -> None:
    assert ledger.advance_cursor(1_700_000_100) == 1_700_000_100
    assert ledger.advance_cursor(1_700_000_000) == 1_700_000_100
    assert ledger.cursor() == 1_700_000_100
    assert ledger.advance_cursor(1_700_000_200) == 1_700_000_200


def test_cursor_survives_a_reopen(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.advance_cursor(42)
    with Ledger.open(path) as ledger:
        assert ledger.cursor() == 42


@pytest.mark.parametrize("created_at", [-1, True, 1.5])
def test_cursor_refuses_a_bad_timestamp(ledger: Ledger, created_at: object) -> None:
    with pytest.raises(LedgerError):
        ledger.advance_cursor(created_at)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- rebuild
RECORDS = [
    TransactionRecord("tx-a", ALICE, 1000, 10),
    TransactionRecord("tx-b", ALICE, -300, 20),
    TransactionRecord("tx-c", BOB, 50, 30),
]


def test_rebuild_applies_transaction_records(ledger: Ledger) -> None:
    assert ledger.rebuild(RECORDS) == RebuildReport(applied=3, skipped=0, negative_users=())
    assert ledger.balance(ALICE).total == 700
    assert ledger.balance(BOB).total == 50


def test_rebuild_twice_changes_nothing(ledger: Ledger) -> None:
    ledger.rebuild(RECORDS)
    assert ledger.rebuild(RECORDS) == RebuildReport(applied=0, skipped=3, negative_users=())
    assert ledger.balance(ALICE).total == 700
    assert len(ops(ledger)) == 3


def test_rebuild_skips_the_devices_own_events(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 1000, event_id="tx-a")
    res = ledger.reserve(ALICE, 300, key="chat-1")
    ledger.commit(res, 300, event_id="tx-b")
    report = ledger.rebuild(RECORDS)
    assert (report.applied, report.skipped) == (1, 2)
    assert ledger.balance(ALICE).total == 700


def test_rebuild_counts_a_repeated_event_once(ledger: Ledger) -> None:
    report = ledger.rebuild([RECORDS[0], RECORDS[0]])
    assert (report.applied, report.skipped) == (1, 1)
    assert ledger.balance(ALICE).total == 1000


def test_rebuild_records_a_debit_that_overdraws_and_reports_it(ledger: Ledger) -> None:
    report = ledger.rebuild([TransactionRecord("tx-z", BOB, -20, 5)])
    assert report.negative_users == (BOB,)
    assert ledger.balance(BOB) == Balance(total=-20, reserved=0, available=0)
    with pytest.raises(InsufficientBalance):
        ledger.reserve(BOB, 1, key="chat-1")


def test_rebuild_with_an_invalid_record_applies_nothing(ledger: Ledger) -> None:
    bad = TransactionRecord("tx-x", "", 5, 1)
    with pytest.raises(LedgerError) as err:
        ledger.rebuild([*RECORDS, bad])
    assert err.value.code == "argument_invalid"
    assert ops(ledger) == []


def test_rebuild_of_nothing_is_a_no_op(ledger: Ledger) -> None:
    assert ledger.rebuild([]) == RebuildReport(0, 0, ())


def test_rebuild_accepts_a_generator(ledger: Ledger) -> None:
    assert ledger.rebuild(r for r in RECORDS).applied == 3


# ------------------------------------------------------------------------------------------- diagnostics
def test_check_finds_nothing_on_a_healthy_ledger(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    ledger.rebuild(RECORDS)
    assert ledger.check() == []


def test_check_reports_a_derived_balance_that_differs_from_ops(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    conn = ledger._conn
    assert conn is not None
    conn.execute("UPDATE balances SET total = 1")
    assert ledger.check() == [f"balance of {ALICE}: table says 1, ops sum to 100"]


def test_read_only_database_has_its_own_code_and_recovers(ledger: Ledger) -> None:
    conn = ledger._conn
    assert conn is not None
    conn.execute("PRAGMA query_only = ON")
    with pytest.raises(LedgerError) as err:
        ledger.grant("req-1", ALICE, 100)
    assert err.value.code == "ledger_read_only"
    conn.execute("PRAGMA query_only = OFF")
    assert ledger.grant("req-1", ALICE, 100) is True


def test_storage_errors_keep_the_reservation_held(ledger: Ledger) -> None:
    ledger.grant("req-1", ALICE, 100)
    res = ledger.reserve(ALICE, 40, key="chat-1")
    conn = ledger._conn
    assert conn is not None
    conn.execute("PRAGMA query_only = ON")
    with pytest.raises(LedgerError):
        ledger.commit(res, 10)
    conn.execute("PRAGMA query_only = OFF")
    assert ledger.commit(res, 10) == 10
    assert ledger.balance(ALICE) == Balance(90, 0, 90)


def test_totals_lists_every_user_with_ops(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        led.grant("g1", "alice", 10)
        led.grant("g2", "bob", 5)
        res = led.reserve("bob", 3, key="d1")
        led.commit(res, 2)
        assert led.totals() == {"alice": 10, "bob": 3}


def test_activity_since_counts_grants_debits_and_users_after_the_cut(tmp_path: Path) -> None:
    now = [1_000.0]
    with Ledger.open(tmp_path / "l.sqlite3", clock=lambda: now[0]) as led:
        led.grant("old", "carol", 99)
        now[0] = 2_000.0
        led.grant("g1", "alice", 10)
        led.commit(led.reserve("alice", 4, key="d1"), 4)
        led.grant("g2", "bob", 5)
        activity = led.activity_since(1_500)
    assert (activity.users, activity.tokens_granted, activity.tokens_debited) == (2, 15, 4)
