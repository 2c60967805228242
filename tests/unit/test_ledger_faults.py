"""The ledger under faults: SIGKILL mid-write, racing threads, a full disk."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device.ledger import (
    Balance,
    InsufficientBalance,
    Ledger,
    LedgerError,
    OutboxEvent,
    Reservation,
    TransactionRecord,
)

REPO = Path(__file__).resolve().parents[2]
ALICE = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"

# Grants and debits as fast as the disk allows, printing each key only after its call returned.
CHILD = """
import json, sys
from device.ledger import Ledger, OutboxEvent
path, run = sys.argv[1], sys.argv[2]
ledger = Ledger.open(path)
print("ready", flush=True)
i = 0
while True:
    user = f"user-{i % 3}"
    grant_key, debit_key = f"{run}-req-{i}", f"{run}-chat-{i}"
    tx = f"{run}-tx-{i}"
    ledger.grant(grant_key, user, 10, event_id=tx, outbox=[OutboxEvent(tx, json.dumps({"id": tx}))])
    print("grant", grant_key, tx, flush=True)
    res = ledger.reserve(user, 10, key=debit_key)
    used, tx = i % 11, f"{run}-tx-{i}-debit"
    ledger.commit(res, used, event_id=tx, outbox=[OutboxEvent(tx, json.dumps({"id": tx}))])
    print("debit", debit_key, tx, used, flush=True)
    i += 1
"""


def event(event_id: str, size: int = 0) -> OutboxEvent:
    return OutboxEvent(event_id, json.dumps({"id": event_id, "content": "x" * size}))


def all_ops(ledger: Ledger) -> dict[str, tuple[int, str | None]]:
    conn = ledger._conn
    assert conn is not None
    return {key: (delta, eid) for key, delta, eid in conn.execute("SELECT key, delta, event_id FROM ops")}


def test_sigkill_never_loses_a_committed_op(state_dir: Path) -> None:
    path = state_dir / "ledger.db"
    rng = random.Random()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    reported: list[list[str]] = []
    for run in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), f"run{run}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n", child.stderr.read() if child.stderr else ""
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL, err
        lines = [line.split() for line in out.split("\n")[:-1]]  # the last piece may be cut mid-line
        reported += lines

        with Ledger.open(path) as ledger:
            assert ledger.check() == []
            recorded = all_ops(ledger)
            pending = {e.event_id for e in ledger.pending_outbox(1_000_000)}
            for line in reported:
                if line[0] == "grant":
                    assert recorded[line[1]] == (10, line[2])
                else:
                    assert recorded[line[1]] == (-int(line[3]), line[2])
                assert line[2] in pending, f"op {line[1]} committed without its outbox event"
            holds = ledger.open_holds()
            assert len(holds) <= 1, "only the chat in flight at the kill may be left open"
            for hold in holds:  # durable, never applied; the agent settles it at its checkpoint (0 here)
                assert hold.reservation.key not in recorded
                assert ledger.release(hold.reservation) is True
            for user in ("user-0", "user-1", "user-2"):
                balance = ledger.balance(user)
                assert balance.reserved == 0
                assert balance.total >= 0
    assert len(reported) > 6, "the child never got to commit anything"


def test_threads_reserving_for_one_user_never_overspend(state_dir: Path) -> None:
    granted = 3_000
    with Ledger.open(state_dir / "ledger.db") as ledger:
        ledger.grant("req-1", ALICE, granted)
        spent: list[int] = []
        violations: list[Balance] = []
        stop = threading.Event()

        def chat(worker: int) -> None:
            rng = random.Random(worker)
            for i in range(30):
                try:
                    res = ledger.reserve(ALICE, rng.randint(1, 400), key=f"chat-{worker}-{i}")
                except InsufficientBalance:
                    continue
                try:
                    if rng.random() < 0.8:
                        spent.append(ledger.commit(res, rng.randint(0, res.amount)))
                finally:
                    ledger.release(res)

        def watch() -> None:
            while not stop.is_set():
                balance = ledger.balance(ALICE)
                if balance.reserved > balance.total or balance.total < 0:
                    violations.append(balance)

        watcher = threading.Thread(target=watch)
        watcher.start()
        workers = [threading.Thread(target=chat, args=(n,)) for n in range(8)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        stop.set()
        watcher.join()

        assert violations == []
        assert ledger.balance(ALICE) == Balance(granted - sum(spent), 0, granted - sum(spent))
        assert ledger.check() == []


def test_racing_commits_of_one_reservation_debit_once(state_dir: Path) -> None:
    with Ledger.open(state_dir / "ledger.db") as ledger:
        ledger.grant("req-1", ALICE, 1_000)
        res = ledger.reserve(ALICE, 500, key="chat-1")
        results: list[int] = []
        barrier = threading.Barrier(8)

        def commit(used: int) -> None:
            barrier.wait()
            results.append(ledger.commit(res, used))

        threads = [threading.Thread(target=commit, args=(100 + n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(results)) == 1
        assert ledger.balance(ALICE).total == 1_000 - results[0]
        assert [k for k in all_ops(ledger) if k == "chat-1"] == ["chat-1"]


def limit_to_current_size(ledger: Ledger) -> None:
    """Make SQLite report "database or disk is full" as soon as the file must grow."""
    conn = ledger._conn
    assert conn is not None
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")


def lift_limit(ledger: Ledger) -> None:
    conn = ledger._conn
    assert conn is not None
    conn.execute("PRAGMA max_page_count = 1073741823")


def test_full_disk_grant_writes_nothing_and_recovers(state_dir: Path) -> None:
    with Ledger.open(state_dir / "ledger.db") as ledger:
        ledger.grant("req-0", ALICE, 5)
        limit_to_current_size(ledger)
        with pytest.raises(LedgerError) as err:
            ledger.grant("req-1", ALICE, 100, event_id="tx-1", outbox=[event("tx-1", size=50_000)])
        assert err.value.code == "ledger_disk_full"
        assert ledger.balance(ALICE).total == 5
        assert set(all_ops(ledger)) == {"req-0"}
        assert ledger.pending_outbox(10) == []

        lift_limit(ledger)
        assert ledger.grant("req-1", ALICE, 100, event_id="tx-1", outbox=[event("tx-1", size=50_000)])
        assert ledger.balance(ALICE).total == 105
        assert ledger.check() == []


def test_full_disk_commit_keeps_the_reservation_and_recovers(state_dir: Path) -> None:
    with Ledger.open(state_dir / "ledger.db") as ledger:
        ledger.grant("req-0", ALICE, 100)
        res: Reservation = ledger.reserve(ALICE, 50, key="chat-1")
        limit_to_current_size(ledger)
        with pytest.raises(LedgerError) as err:
            ledger.commit(res, 30, event_id="tx-2", outbox=[event("tx-2", size=50_000)])
        assert err.value.code == "ledger_disk_full"
        assert ledger.balance(ALICE) == Balance(100, 50, 50)

        lift_limit(ledger)
        assert ledger.commit(res, 30, event_id="tx-2", outbox=[event("tx-2", size=50_000)]) == 30
        assert ledger.balance(ALICE) == Balance(70, 0, 70)


def test_full_disk_rebuild_applies_nothing_and_recovers(state_dir: Path) -> None:
    records = [TransactionRecord(f"{n:064x}", f"user-{n % 7}", 10, n) for n in range(5_000)]
    with Ledger.open(state_dir / "ledger.db") as ledger:
        limit_to_current_size(ledger)
        with pytest.raises(LedgerError) as err:
            ledger.rebuild(records)
        assert err.value.code == "ledger_disk_full"
        assert all_ops(ledger) == {}

        lift_limit(ledger)
        assert ledger.rebuild(records).applied == 5_000
        assert ledger.check() == []
