"""Ledger throughput and rebuild time, each against a bare-SQLite baseline measured in the same run.

    python benchmarks/ledger.py [--json PATH] [--dir DIR] [--seconds S] [--records N]

Figures (all files in WAL mode with synchronous=FULL, in a scratch directory under --dir, default: the
current directory, i.e. the same disk as the checkout; on a Pi pass the ledger's state directory):

* grant+reserve+commit cycles/s, vs single-row insert transactions/s.  A cycle is two durable transactions
  (the grant with two outbox events, the debit with one); the reservation is in memory.  So the best a
  ledger can do is a ratio of 0.5: the ratio shows the ledger's cost per fsync.
* the same two figures on tmpfs (/dev/shm), where fsync is free: the ledger's CPU cost alone.
* time to rebuild N Transaction records, vs one executemany insert of N rows in one transaction.

Prints one markdown table; with --json PATH also writes its rows as JSON.  Writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _table

from device.ledger import Ledger, OutboxEvent, TransactionRecord

CYCLES_TARGET = 2_000  # cycles/s
REBUILD_TARGET_S = 5.0
USERS = [f"User{n:02d}" + "1" * 36 for n in range(50)]  # base58-length stand-ins


# About the size of a real signed kind-1573 Transaction event; only the id changes between events, so the
# benchmark spends its time in the ledger, not in building JSON.
_EVENT = json.dumps(
    {
        "id": "@ID@",
        "pubkey": "cd" * 32,
        "created_at": 1_700_000_000,
        "kind": 1573,
        "tags": [["s", "xephy-llm"], ["p", "ab" * 32]],
        "content": json.dumps({"Transaction": {"user": USERS[0], "tokens": -60}}),
        "sig": "ef" * 64,
    }
)


def signed(event_id: str) -> OutboxEvent:
    return OutboxEvent(event_id, _EVENT.replace("@ID@", event_id))


def bare_transactions_per_s(directory: Path, seconds: float) -> float:
    conn = sqlite3.connect(directory / "bare.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (os.urandom(16).hex(), done))
        conn.execute("COMMIT")
        done += 1
    conn.close()
    return done / elapsed


def ledger_cycles_per_s(directory: Path, seconds: float) -> float:
    with Ledger.open(directory / "ledger.db") as ledger:
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            tag, user = os.urandom(16).hex(), USERS[done % len(USERS)]
            status, credit, debit = f"{tag}-s", f"{tag}-c", f"{tag}-d"
            ledger.grant(f"req-{tag}", user, 100, event_id=credit, outbox=[signed(status), signed(credit)])
            res = ledger.reserve(user, 100, key=f"chat-{tag}")
            ledger.commit(res, 60, event_id=debit, outbox=[signed(debit)])
            done += 1
    return done / elapsed


def median_of_alternating(
    rounds: int, directory: Path, seconds: float, *runs: Callable[[Path, float], float]
) -> list[float]:
    """Run each measurement `rounds` times, interleaved so disk weather hits all of them alike."""
    results: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for out, run in zip(results, runs, strict=True):
            out.append(run(directory, seconds))
    return [statistics.median(r) for r in results]


def transaction_records(n: int) -> list[TransactionRecord]:
    return [
        TransactionRecord(os.urandom(32).hex(), USERS[i % len(USERS)], 1_000 if i % 4 == 0 else -100, i)
        for i in range(n)
    ]


def bare_executemany_s(directory: Path, records: list[TransactionRecord]) -> float:
    conn = sqlite3.connect(directory / "bare-rebuild.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE t (event_id TEXT PRIMARY KEY, user TEXT NOT NULL, tokens INTEGER NOT NULL,"
        " created_at INTEGER NOT NULL)"
    )
    rows = [(r.event_id, r.user, r.tokens, r.created_at) for r in records]
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def ledger_rebuild_s(directory: Path, records: list[TransactionRecord]) -> float:
    with Ledger.open(directory / "rebuild.db") as ledger:
        start = time.perf_counter()
        report = ledger.rebuild(records)
        elapsed = time.perf_counter() - start
    assert report.applied == len(records), report
    return elapsed


def measure(directory: Path, seconds: float, rounds: int, n_records: int) -> list[dict[str, Any]]:
    rows = []
    bare, cycles = median_of_alternating(
        rounds, directory, seconds, bare_transactions_per_s, ledger_cycles_per_s
    )
    rows.append(
        _table.row(
            "grant+reserve+commit cycles/s (synchronous=FULL, 2 fsyncs/cycle)",
            cycles,
            "cycles/s",
            bare,
            "bare single-row insert transactions/s",
            f">= {CYCLES_TARGET} cycles/s",
            cycles >= CYCLES_TARGET,
        )
    )
    if os.access("/dev/shm", os.W_OK):
        shm = Path(tempfile.mkdtemp(prefix="ledger-bench-", dir="/dev/shm"))
        try:
            bare, cycles = median_of_alternating(
                rounds, shm, seconds / 2, bare_transactions_per_s, ledger_cycles_per_s
            )
        finally:
            shutil.rmtree(shm, ignore_errors=True)
        rows.append(
            _table.row(
                "same cycles/s on tmpfs (no fsync: CPU cost only)",
                cycles,
                "cycles/s",
                bare,
                "bare single-row insert transactions/s on tmpfs",
                "information",
                None,
            )
        )
    records = transaction_records(n_records)
    bare_s = bare_executemany_s(directory, records)
    rebuild_s = ledger_rebuild_s(directory, records)
    rows.append(
        _table.row(
            f"rebuild {n_records:,} Transaction records",
            rebuild_s,
            "s",
            bare_s,
            f"bare executemany of {n_records:,} rows in one transaction (s)",
            f"<= {REBUILD_TARGET_S:g} s",
            rebuild_s <= REBUILD_TARGET_S,
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="disk to measure (default: cwd)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (median is reported)")
    parser.add_argument("--records", type=int, default=100_000, help="Transaction records to rebuild")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix=".ledger-bench-", dir=args.dir))
    try:
        rows = measure(scratch, args.seconds, args.rounds, args.records)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(_table.markdown(rows, "ledger"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
