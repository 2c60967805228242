"""Unit tests for the ledger's retention: outbox priorities, pruning, incremental vacuum and its migration."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.ledger import SCHEMA_VERSION, Ledger, OutboxEvent, OutboxPriority, PruneReport, RechargeState
from tests.fixtures.ledger_files import legacy_ledger

ALICE = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
DAY = 86_400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(event_id: str, *, priority: OutboxPriority = OutboxPriority.NORMAL, size: int = 0) -> OutboxEvent:
    body = json.dumps({"id": event_id, "kind": 1573, "content": "x" * size})
    return OutboxEvent(event_id, body, priority=priority)


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000)


@pytest.fixture
def path(state_dir: Path) -> Path:
    return state_dir / "ledger.db"


@pytest.fixture
def ledger(path: Path, clock: Clock) -> Iterator[Ledger]:
    with Ledger.open(path, clock=clock) as opened:
        yield opened


def refuse(ledger: Ledger, request_id: str, *, reply: OutboxEvent | None = None) -> None:
    ledger.fail_recharge(
        request_id, "signature_invalid", "no", outbox=[reply] if reply else [], author="a" * 64
    )


# ------------------------------------------------------------------------------------------- priorities
def test_low_priority_rows_wait_behind_normal_ones_stored_after_them(ledger: Ledger) -> None:
    ledger.enqueue(event("refusal-1", priority=OutboxPriority.LOW))
    ledger.enqueue(event("refusal-2", priority=OutboxPriority.LOW))
    ledger.grant("req-1", ALICE, 10, event_id="grant-1", outbox=[event("grant-1")])

    pending = ledger.pending_outbox()

    assert [(e.event_id, e.priority) for e in pending] == [
        ("grant-1", OutboxPriority.NORMAL),
        ("refusal-1", OutboxPriority.LOW),
        ("refusal-2", OutboxPriority.LOW),
    ]


# ---------------------------------------------------------------------------------------------- pruning
def test_prune_deletes_finished_recharges_and_acked_outbox_rows_older_than_the_cutoff(
    ledger: Ledger, clock: Clock
) -> None:
    refuse(ledger, "old-refused", reply=event("old-reply"))
    ledger.mark_acked("old-reply", "ws://relay")
    clock.now += 2 * DAY
    refuse(ledger, "new-refused", reply=event("new-reply"))
    ledger.mark_acked("new-reply", "ws://relay")

    report = ledger.prune(int(clock.now) - DAY)

    assert (report.recharges, report.outbox) == (1, 1)
    assert ledger.recharge("old-refused") is None
    assert ledger.recharge("new-refused") is not None


def test_prune_keeps_unfinished_recharges_unacked_rows_and_every_op(ledger: Ledger, clock: Clock) -> None:
    ledger.begin_recharge(
        "pending", author="a" * 64, user=ALICE, nonce=0, amount_lamports=5, tokens=5, payload="{}"
    )
    ledger.grant("req-1", ALICE, 10, event_id="grant-1", outbox=[event("grant-1")])
    clock.now += 30 * DAY

    report = ledger.prune(int(clock.now))

    assert report == PruneReport(recharges=0, outbox=0, pages_freed=report.pages_freed)
    row = ledger.recharge("pending")
    assert row is not None and row.state is RechargeState.PENDING
    assert [e.event_id for e in ledger.pending_outbox()] == ["grant-1"]
    assert ledger.balance(ALICE).total == 10


def test_the_file_stops_growing_once_old_rows_are_pruned(ledger: Ledger, clock: Clock) -> None:
    def one_day_of_refusals(day: int) -> None:
        for i in range(100):
            reply = event(f"reply-{day}-{i}", size=4_000)
            refuse(ledger, f"req-{day}-{i}", reply=reply)
            ledger.mark_acked(reply.event_id, "ws://relay")

    sizes = []
    for day in range(6):
        one_day_of_refusals(day)
        ledger.prune(int(clock.now) - DAY)
        sizes.append(ledger.file_bytes())
        clock.now += DAY

    # two days are kept (the cutoff is exclusive); from then on each day's prune frees what it adds
    assert max(sizes[3:]) <= sizes[2] * 1.05, sizes


# ------------------------------------------------------------------------------------ incremental vacuum
def test_a_prune_gives_the_freed_pages_back_to_the_file_system(ledger: Ledger, clock: Clock) -> None:
    for i in range(200):
        reply = event(f"reply-{i}", size=4_000)
        refuse(ledger, f"req-{i}", reply=reply)
        ledger.mark_acked(reply.event_id, "ws://relay")
    ledger.vacuum()  # checkpoint: the rows are in the database file now
    full = ledger.file_bytes()
    clock.now += 2 * DAY

    report = ledger.prune(int(clock.now) - DAY)

    assert report.pages_freed > 100
    assert ledger.file_bytes() < full / 4
    conn = ledger._conn
    assert conn is not None
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_a_new_ledger_uses_incremental_vacuum(ledger: Ledger) -> None:
    conn = ledger._conn
    assert conn is not None
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


def test_an_older_ledger_is_migrated_and_converted_to_incremental_vacuum(path: Path) -> None:
    legacy_ledger(path, version=2)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO ops (key, user, delta, kind, created_at) VALUES ('req-1', ?, 7, 'grant', 1)",
            (ALICE,),
        )
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0

    with Ledger.open(path) as ledger:
        conn = ledger._conn
        assert conn is not None
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "seen_events" not in tables
        assert ledger.balance(ALICE).total == 7


def test_a_conversion_that_cannot_run_is_logged_and_retried_at_the_next_open(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy_ledger(path, version=SCHEMA_VERSION)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # e.g. an operator's sqlite3 shell: VACUUM cannot take the file
    try:
        with caplog.at_level(logging.WARNING), Ledger.open(path, busy_timeout_s=0.1) as ledger:
            assert ledger.balance(ALICE).total == 0  # the ledger opens and reads meanwhile
    finally:
        blocker.close()
    assert "ledger_vacuum_deferred" in [getattr(r, "code", None) for r in caplog.records]

    with Ledger.open(path) as ledger:
        conn = ledger._conn
        assert conn is not None
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
