"""The token ledger: who holds how many tokens, and which signed events still have to reach a relay.

Durability and idempotency contract
-----------------------------------
* Every state change (grant, debit, outbox enqueue/attempt/ack, cursor, prune, rebuild) is exactly one
  SQLite transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) in WAL mode with ``synchronous=FULL``: when a method
  returns, its change is on disk and survives power loss; when it raises, nothing of it was written.
* Money moves only through the append-only ``ops`` table, keyed by an idempotency key (the Nostr ``Request``
  event id for a grant, a local request id for a debit).  Re-applying a key changes nothing, so callers may
  retry any call after a crash.  ``balances`` is derived from ``ops`` by a trigger, in the same transaction.
* A grant or debit and the signed events that announce it (the outbox rows) commit together or not at all.
  Outbox events are stored verbatim and re-sent with the same id until a relay acknowledges them.
* Reservations (chat holds, schema 3) are durable: ``reserve`` writes the hold before any token is generated,
  ``checkpoint`` records how much of it was used so far, and ``commit``/``release`` end it in the same
  transaction as the debit.  A hold left open by a crash is loaded again on open (:meth:`Ledger.open_holds`),
  so the agent can settle it at its last checkpoint, exactly once (the debit is keyed by the hold's key).
  The agent process that owns the ledger must be its only writer; other processes may read.
* ``rebuild`` replays ``Transaction`` events; an event already applied (by id) is skipped: idempotent.
* Outbox rows carry a priority (:class:`OutboxPriority`): grants and debits (``NORMAL``) are handed to the
  publisher before replies that move no money (refusals, ``LOW``), whatever order they were stored in.

Retention
---------
:meth:`Ledger.prune` deletes finished recharge rows and acknowledged outbox rows older than a cutoff (the
agent's :class:`device.retention.LedgerPruner` passes ``now − ledger.retention_seconds``); ``ops`` are
money history and never pruned.  The file runs in ``auto_vacuum = INCREMENTAL`` mode, so the pages a prune
frees go back to the file system (``PRAGMA incremental_vacuum``) and the file stops growing.  A ledger
created before that mode is converted once, by a ``VACUUM`` when it is opened (see :meth:`Ledger.open`).

Errors are :class:`LedgerError` with a stable ``code``: ``ledger_error``, ``insufficient_balance``,
``invalid_amount``, ``argument_invalid``, ``idempotency_conflict``, ``reservation_not_held``,
``ledger_disk_full``, ``ledger_read_only``, ``ledger_busy``, ``ledger_corrupt``, ``ledger_closed``,
``ledger_schema_too_new``, ``recharge_not_found``, ``recharge_state_invalid``.  A conversion to incremental
vacuum that cannot run at open is logged ``ledger_vacuum_deferred`` and retried at the next open.

Recharges
---------
The ``recharges`` table (schema 2) is the durable state machine of one incoming ``Request``, keyed by its
Nostr event id: ``pending`` (validated, nothing sent) → ``submitted`` (the ``pay`` transaction's signature is
on disk; the transaction may have been sent) → ``granted`` (tokens credited and the announcing events in the
outbox, one transaction) or ``failed`` (refused; the refusal reply in the outbox, one transaction).
``answered`` marks an admin request acknowledged without any charge.  A request id is handled once: a
second delivery finds its row.

After a storage error the transaction is rolled back and the ledger stays usable.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from device.errors import DeviceError

__all__ = [
    "Balance",
    "InsufficientBalance",
    "Ledger",
    "LedgerError",
    "OpenHold",
    "OutboxEvent",
    "OutboxPriority",
    "PruneReport",
    "RebuildReport",
    "RechargeRow",
    "RechargeState",
    "Reservation",
    "TransactionRecord",
]


log = logging.getLogger(__name__)


class LedgerError(DeviceError):
    """A ledger operation was refused or could not be stored; nothing of it was written."""

    code = "ledger_error"


class InsufficientBalance(LedgerError):
    """The user's available balance (total minus held reservations) is below the requested amount."""

    code = "insufficient_balance"


@dataclass(frozen=True, slots=True)
class Balance:
    total: int  # Σ ops for the user (tokens granted minus tokens debited)
    reserved: int  # held by in-flight reservations
    available: int  # total − reserved, never below 0


@dataclass(frozen=True, slots=True)
class Activity:
    """Grant and debit totals over a period (for telemetry)."""

    users: int  # distinct users with a grant or debit
    tokens_granted: int
    tokens_debited: int  # as a positive number


@dataclass(frozen=True, slots=True)
class Reservation:
    key: str  # becomes the key of the debit op on commit
    user: str
    amount: int


class OutboxPriority(IntEnum):
    """Which outbox rows the publisher takes first (lower first; stored order within a priority)."""

    NORMAL = 0  # grants, debits, and everything else that announces a balance change or the device
    LOW = 1  # replies that move no money: refusals, admin acknowledgements


@dataclass(frozen=True, slots=True)
class OpenHold:
    """A held reservation and the tokens its last checkpoint recorded as used."""

    reservation: Reservation
    used: int


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    event_id: str
    event_json: str  # the signed Nostr event, verbatim
    attempts: int = 0
    priority: OutboxPriority = OutboxPriority.NORMAL


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What :meth:`Ledger.prune` deleted, and the file's pages given back."""

    recharges: int
    outbox: int
    pages_freed: int


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """A ``Transaction`` event from a trusted author, as replayed by :meth:`Ledger.rebuild`."""

    event_id: str
    user: str
    tokens: int
    created_at: int


@dataclass(frozen=True, slots=True)
class RebuildReport:
    applied: int
    skipped: int  # already applied (by event id), or repeated within the batch
    negative_users: tuple[str, ...]  # users left with a negative total after a rebuilt debit


class RechargeState(StrEnum):
    """Where one incoming ``Request`` stands (see the module docstring, "Recharges")."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    GRANTED = "granted"
    FAILED = "failed"
    ANSWERED = "answered"

    @property
    def finished(self) -> bool:
        """True once nothing more will happen to the request."""
        return self not in (RechargeState.PENDING, RechargeState.SUBMITTED)


@dataclass(frozen=True, slots=True)
class RechargeRow:
    """One row of ``recharges``.  ``user``/``nonce``/``amount_lamports``/``tokens`` are None only for a
    request refused before they were known (malformed content or payload, unauthorized reason)."""

    request_id: str
    author: str
    state: RechargeState
    payload: str | None
    user: str | None
    nonce: int | None
    amount_lamports: int | None
    tokens: int | None
    signature: str | None
    last_valid_block_height: int | None
    tx_bytes: bytes | None
    error_code: str | None
    error_message: str | None
    created_at: int
    updated_at: int


# Forward migrations; index i brings the schema from user_version i to i + 1.  Never edit a shipped one.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE ops (
            key        TEXT PRIMARY KEY CHECK (length(key) > 0),
            user       TEXT NOT NULL CHECK (length(user) > 0),
            delta      INTEGER NOT NULL,
            kind       TEXT NOT NULL CHECK (kind IN ('grant', 'debit', 'rebuild')),
            event_id   TEXT UNIQUE,
            created_at INTEGER NOT NULL,
            CHECK (kind <> 'grant' OR delta > 0),
            CHECK (kind <> 'debit' OR delta <= 0)
        )""",
        "CREATE TABLE balances (user TEXT PRIMARY KEY, total INTEGER NOT NULL) WITHOUT ROWID",
        """CREATE TRIGGER ops_update_balance AFTER INSERT ON ops BEGIN
            INSERT INTO balances (user, total) VALUES (NEW.user, NEW.delta)
            ON CONFLICT (user) DO UPDATE SET total = total + excluded.total;
        END""",
        "CREATE TRIGGER ops_no_update BEFORE UPDATE ON ops BEGIN SELECT RAISE(ABORT, 'append-only'); END",
        "CREATE TRIGGER ops_no_delete BEFORE DELETE ON ops BEGIN SELECT RAISE(ABORT, 'append-only'); END",
        """CREATE TABLE outbox (
            event_id   TEXT PRIMARY KEY,
            event_json TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            attempts   INTEGER NOT NULL DEFAULT 0,
            acked_at   INTEGER,
            acked_by   TEXT
        )""",
        "CREATE INDEX outbox_pending ON outbox (acked_at) WHERE acked_at IS NULL",
        "CREATE TABLE seen_events (event_id TEXT PRIMARY KEY, created_at INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    ),
    (
        """CREATE TABLE recharges (
            request_id              TEXT PRIMARY KEY CHECK (length(request_id) > 0),
            author                  TEXT NOT NULL,
            state                   TEXT NOT NULL CHECK
                                    (state IN ('pending', 'submitted', 'granted', 'failed', 'answered')),
            payload                 TEXT,
            user                    TEXT,
            nonce                   INTEGER CHECK (nonce >= 0),
            amount_lamports         INTEGER CHECK (amount_lamports > 0),
            tokens                  INTEGER CHECK (tokens > 0),
            signature               TEXT UNIQUE,
            last_valid_block_height INTEGER,
            tx_bytes                BLOB,
            error_code              TEXT,
            error_message           TEXT,
            created_at              INTEGER NOT NULL,
            updated_at              INTEGER NOT NULL,
            CHECK (state NOT IN ('pending', 'submitted', 'granted')
                   OR (user IS NOT NULL AND nonce IS NOT NULL AND amount_lamports IS NOT NULL
                       AND tokens IS NOT NULL AND payload IS NOT NULL)),
            CHECK (state NOT IN ('submitted', 'granted')
                   OR (signature IS NOT NULL AND last_valid_block_height IS NOT NULL)),
            CHECK (state <> 'failed' OR error_code IS NOT NULL)
        )""",
        "CREATE INDEX recharges_unfinished ON recharges (created_at) WHERE state IN ('pending', 'submitted')",
    ),
    (  # outbox priorities; indexes for retention; the unused seen_events table dropped
        "ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0 CHECK (priority >= 0)",
        "DROP INDEX outbox_pending",
        "CREATE INDEX outbox_pending ON outbox (priority) WHERE acked_at IS NULL",
        "CREATE INDEX outbox_acked ON outbox (acked_at) WHERE acked_at IS NOT NULL",
        "CREATE INDEX recharges_finished ON recharges (updated_at)"
        " WHERE state NOT IN ('pending', 'submitted')",
        "DROP TABLE seen_events",
    ),
    (  # chat holds: durable before the first token, checkpointed while streaming, settled after a crash
        """CREATE TABLE holds (
            key        TEXT PRIMARY KEY CHECK (length(key) > 0),
            user       TEXT NOT NULL CHECK (length(user) > 0),
            amount     INTEGER NOT NULL CHECK (amount >= 0),
            used       INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= amount),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
#: The ledger's file name inside ``device.state_dir``.
LEDGER_FILE: Final = "ledger.sqlite3"

_MIN_SQLITE: Final = (3, 24, 0)
_INCREMENTAL: Final = 2  # PRAGMA auto_vacuum value
_WAL_SIZE_LIMIT: Final = 4 * 1024 * 1024  # bytes the WAL file is truncated to after a checkpoint
_CURSOR: Final = "relay_cursor"
_REBUILD_KEY_PREFIX: Final = "rebuild:"  # keeps rebuilt ops out of the grant/debit key space


class Ledger:
    """Balances, reservations, outbox, recharges and relay cursor in one SQLite file.

    Thread-safe: one connection, every call serialised by a lock.  Calls that write block for one fsync,
    so call them from a worker thread (``asyncio.to_thread``) when latency on the event loop matters.
    """

    def __init__(self, conn: sqlite3.Connection, *, clock: Callable[[], float] = time.time) -> None:
        """Use :meth:`open`; this takes an already configured and migrated connection."""
        self._conn: sqlite3.Connection | None = conn
        self._clock = clock
        self._lock = threading.RLock()
        self._held: dict[str, Reservation] = {}
        self._reserved: dict[str, int] = {}
        for key, user, amount in conn.execute("SELECT key, user, amount FROM holds ORDER BY created_at, key"):
            res = Reservation(key=str(key), user=str(user), amount=int(amount))
            self._held[res.key] = res
            self._reserved[res.user] = self._reserved.get(res.user, 0) + res.amount

    # ----------------------------------------------------------------------------------------- lifecycle
    @classmethod
    def open(
        cls, path: Path | str, *, clock: Callable[[], float] = time.time, busy_timeout_s: float = 5.0
    ) -> Ledger:
        """Open (creating the file and its directory if needed) and migrate the ledger at ``path``."""
        path = Path(path)
        if sqlite3.sqlite_version_info < _MIN_SQLITE:  # UPSERT (ON CONFLICT … DO) arrived in 3.24
            raise LedgerError(f"SQLite {sqlite3.sqlite_version} is too old, the ledger needs 3.24 or later")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, f"cannot create the ledger directory {path.parent}") from exc
        try:
            conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            # Takes effect only on a file with no table yet (older ledgers are converted below); setting it
            # on an existing one is a write, which fails on a read-only ledger the agent must still open.
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise LedgerError(f"{path}: journal_mode is {mode!r}, WAL is required")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
            _migrate(conn, path)
            _convert_to_incremental_vacuum(conn, path)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(exc) from exc
            raise
        return cls(conn, clock=clock)

    def close(self) -> None:
        """Close the file.  Holds still open stay on disk; the next open loads them again."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._held.clear()
            self._reserved.clear()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- money
    def grant(
        self,
        key: str,
        user: str,
        tokens: int,
        *,
        event_id: str | None = None,
        outbox: Iterable[OutboxEvent] = (),
    ) -> bool:
        """Credit ``tokens`` to ``user`` once per ``key``, together with its outbox events.

        Returns False, and writes nothing, when ``key`` was already applied with the same user and tokens.
        Reusing a key for a different user or amount raises ``idempotency_conflict``.
        """
        _require_text("key", key)
        _require_text("user", user)
        if _count(tokens, "tokens") == 0:
            raise LedgerError("a grant must be at least 1 token", code="invalid_amount")
        _optional_text("event_id", event_id)
        rows = self._outbox_rows(outbox)
        with self._write() as conn:
            if not self._apply_grant(conn, key, user, tokens, event_id):
                return False
            self._insert_outbox(conn, rows)
        return True

    def balance(self, user: str) -> Balance:
        _require_text("user", user)
        with self._lock:
            total = self._total(user)
            reserved = self._reserved.get(user, 0)
        return Balance(total=total, reserved=reserved, available=max(0, total - reserved))

    def totals(self) -> dict[str, int]:
        """Every user's total (Σ ops), for comparisons such as ``xephy-device ledger rebuild``."""
        with self._lock:
            return {str(u): int(t) for u, t in self._query("SELECT user, total FROM balances ORDER BY user")}

    def activity_since(self, since: int) -> Activity:
        """Users served and tokens granted/debited by ops created at or after ``since`` (unix seconds)."""
        with self._lock:
            ((users, granted, debited),) = self._query(
                "SELECT COUNT(DISTINCT user), COALESCE(SUM(CASE WHEN delta > 0 THEN delta END), 0),"
                " COALESCE(-SUM(CASE WHEN delta < 0 THEN delta END), 0) FROM ops"
                " WHERE created_at >= ? AND kind IN ('grant', 'debit')",
                since,
            )
        return Activity(users=int(users), tokens_granted=int(granted), tokens_debited=int(debited))

    def reserve(self, user: str, n: int, *, key: str) -> Reservation:
        """Hold ``n`` tokens of ``user``'s available balance for the debit that will be keyed ``key``.

        The hold is on disk when this returns (one transaction); it ends with :meth:`commit` or
        :meth:`release`, also after a restart.
        """
        _require_text("user", user)
        _require_text("key", key)
        _count(n, "n")
        with self._lock:
            if key in self._held or self._query("SELECT 1 FROM ops WHERE key = ?", key):
                raise LedgerError(f"key {key!r} is already reserved or applied", code="idempotency_conflict")
            reserved = self._reserved.get(user, 0)
            available = self._total(user) - reserved
            if available < n:
                raise InsufficientBalance(f"{user} has {max(available, 0)} tokens available, {n} requested")
            res = Reservation(key=key, user=user, amount=n)
            now = self._now()
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO holds (key, user, amount, used, created_at, updated_at)"
                    " VALUES (?, ?, ?, 0, ?, ?)",
                    (key, user, n, now, now),
                )
            self._held[key] = res
            self._reserved[user] = reserved + n
        return res

    def checkpoint(self, res: Reservation, used: int) -> None:
        """Record durably that ``used`` (≤ ``res.amount``) tokens of the held ``res`` are owed so far.

        A crash leaves the hold open at its last checkpoint (:meth:`open_holds`).  A smaller ``used`` than
        already recorded changes nothing (checkpoints only move forward).
        """
        _count(used, "used")
        with self._lock:
            self._require_held(res)
            if used > res.amount:
                raise LedgerError(
                    f"used {used} exceeds the {res.amount} tokens reserved", code="invalid_amount"
                )
            with self._write() as conn:
                conn.execute(
                    "UPDATE holds SET used = max(used, ?), updated_at = ? WHERE key = ?",
                    (used, self._now(), res.key),
                )

    def open_holds(self) -> list[OpenHold]:
        """Every hold still open, oldest first, with the tokens its last checkpoint recorded as used."""
        with self._lock:
            used = dict(self._query("SELECT key, used FROM holds"))
            return [OpenHold(res, int(used.get(key, 0))) for key, res in self._held.items()]

    def commit(
        self,
        res: Reservation,
        used: int,
        *,
        event_id: str | None = None,
        outbox: Iterable[OutboxEvent] = (),
    ) -> int:
        """Debit ``used`` (≤ ``res.amount``) tokens under ``res.key``, free the hold, enqueue ``outbox``.

        Idempotent: committing a reservation that was already committed returns the amount debited then.
        Committing one that was released (or lost in a restart) raises ``reservation_not_held``.
        """
        _count(used, "used")
        _optional_text("event_id", event_id)
        rows = self._outbox_rows(outbox)
        with self._lock:
            if self._held.get(res.key) != res:
                for user, delta, kind in self._query(
                    "SELECT user, delta, kind FROM ops WHERE key = ?", res.key
                ):
                    if (user, kind) == (res.user, "debit"):
                        return -int(delta)
                raise LedgerError(
                    f"reservation {res.key!r} is not held (released, or dropped by a restart)",
                    code="reservation_not_held",
                )
            if used > res.amount:
                raise LedgerError(
                    f"used {used} exceeds the {res.amount} tokens reserved", code="invalid_amount"
                )
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO ops (key, user, delta, kind, event_id, created_at)"
                    " VALUES (?, ?, ?, 'debit', ?, ?)",
                    (res.key, res.user, -used, event_id, self._now()),
                )
                self._insert_outbox(conn, rows)
                conn.execute("DELETE FROM holds WHERE key = ?", (res.key,))
            self._unhold(res)
        return used

    def release(self, res: Reservation) -> bool:
        """Free ``res`` without debiting.  A no-op (returning False) if it was committed or released.

        If the release cannot be written (e.g. ``ledger_disk_full``) the hold stays, on disk and here.
        """
        with self._lock:
            if self._held.get(res.key) != res:
                return False
            with self._write() as conn:
                conn.execute("DELETE FROM holds WHERE key = ?", (res.key,))
            self._unhold(res)
            return True

    # -------------------------------------------------------------------------------------------- outbox
    def enqueue(self, event: OutboxEvent) -> bool:
        """Store a signed event for publication; False if an event with this id is already stored."""
        rows = self._outbox_rows((event,))
        with self._write() as conn:
            return self._insert_outbox(conn, rows) > 0

    def pending_outbox(self, limit: int = 100) -> list[OutboxEvent]:
        """Events no relay has acknowledged yet: by priority, then in the order they were stored."""
        if _count(limit, "limit") == 0:
            return []
        rows = self._query(
            "SELECT event_id, event_json, attempts, priority FROM outbox WHERE acked_at IS NULL"
            " ORDER BY priority, rowid LIMIT ?",
            limit,
        )
        return [
            OutboxEvent(event_id=r[0], event_json=r[1], attempts=r[2], priority=OutboxPriority(r[3]))
            for r in rows
        ]

    def mark_sent_attempt(self, event_id: str) -> None:
        _require_text("event_id", event_id)
        with self._write() as conn:
            conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE event_id = ?", (event_id,))

    def mark_acked(self, event_id: str, relay_url: str) -> bool:
        """Record the first relay that accepted ``event_id``; False if unknown or already acknowledged."""
        _require_text("event_id", event_id)
        _require_text("relay_url", relay_url)
        with self._write() as conn:
            return (
                conn.execute(
                    "UPDATE outbox SET acked_at = ?, acked_by = ? WHERE event_id = ? AND acked_at IS NULL",
                    (self._now(), relay_url, event_id),
                ).rowcount
                > 0
            )

    # ---------------------------------------------------------------------------------------- recharges
    def recharge(self, request_id: str) -> RechargeRow | None:
        """The row of ``request_id``, or None when that Request was never recorded."""
        _require_text("request_id", request_id)
        rows = self._query(f"SELECT {_RECHARGE_COLUMNS} FROM recharges WHERE request_id = ?", request_id)
        return _recharge_row(rows[0]) if rows else None

    def begin_recharge(
        self,
        request_id: str,
        *,
        author: str,
        user: str,
        nonce: int,
        amount_lamports: int,
        tokens: int,
        payload: str,
    ) -> RechargeRow:
        """Record a validated Request as ``pending``; for a known ``request_id`` return its row unchanged."""
        for name, value in (("request_id", request_id), ("author", author), ("user", user)):
            _require_text(name, value)
        _count(nonce, "nonce")
        if _count(amount_lamports, "amount_lamports") == 0 or _count(tokens, "tokens") == 0:
            raise LedgerError("a recharge must be at least 1 lamport and 1 token", code="invalid_amount")
        _require_text("payload", payload)
        now = self._now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO recharges (request_id, author, state, payload, user, nonce, amount_lamports,"
                " tokens, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (request_id) DO NOTHING",
                (request_id, author, payload, user, nonce, amount_lamports, tokens, now, now),
            )
            return self._recharge_in(conn, request_id)

    def record_submission(
        self, request_id: str, signature: str, last_valid_block_height: int, tx_bytes: bytes
    ) -> RechargeRow:
        """``pending`` → ``submitted`` with the signed transaction; call it BEFORE sending the transaction.

        Recording the same signature again is a no-op; a different signature for a request that already has
        one raises ``idempotency_conflict`` (two transactions for one Request could both land).  Any state
        other than ``pending``/``submitted`` raises ``recharge_state_invalid``.
        """
        _require_text("request_id", request_id)
        _require_text("signature", signature)
        _count(last_valid_block_height, "last_valid_block_height")
        if not isinstance(tx_bytes, bytes) or not tx_bytes:
            raise LedgerError("tx_bytes must be non-empty bytes", code="argument_invalid")
        with self._write() as conn:
            row = self._recharge_in(conn, request_id)
            if row.state is RechargeState.SUBMITTED:
                if row.signature != signature:
                    raise LedgerError(
                        f"recharge {request_id} was already submitted as {row.signature}",
                        code="idempotency_conflict",
                    )
                return row
            _require_state(row, RechargeState.PENDING)
            conn.execute(
                "UPDATE recharges SET state = 'submitted', signature = ?, last_valid_block_height = ?,"
                " tx_bytes = ?, updated_at = ? WHERE request_id = ?",
                (signature, last_valid_block_height, tx_bytes, self._now(), request_id),
            )
            return self._recharge_in(conn, request_id)

    def complete_recharge(
        self,
        request_id: str,
        *,
        grant_key: str,
        user: str,
        tokens: int,
        event_id: str | None,
        outbox: Iterable[OutboxEvent],
    ) -> bool:
        """In ONE transaction: the grant op, its outbox events, and the row → ``granted``.

        Returns False, writing nothing, when the row is already ``granted``.  The row must be ``submitted``
        (its ``pay`` landed) with the same user and tokens, else ``recharge_state_invalid`` /
        ``idempotency_conflict``.
        """
        _require_text("request_id", request_id)
        _require_text("grant_key", grant_key)
        _require_text("user", user)
        if _count(tokens, "tokens") == 0:
            raise LedgerError("a grant must be at least 1 token", code="invalid_amount")
        _optional_text("event_id", event_id)
        rows = self._outbox_rows(outbox)
        with self._write() as conn:
            row = self._recharge_in(conn, request_id)
            if row.state is RechargeState.GRANTED:
                return False
            _require_state(row, RechargeState.SUBMITTED)
            if (row.user, row.tokens) != (user, tokens):
                raise LedgerError(
                    f"recharge {request_id} is for {row.tokens} tokens to {row.user}, not {tokens} to {user}",
                    code="idempotency_conflict",
                )
            self._apply_grant(conn, grant_key, user, tokens, event_id)
            self._insert_outbox(conn, rows)
            conn.execute(
                "UPDATE recharges SET state = 'granted', updated_at = ? WHERE request_id = ?",
                (self._now(), request_id),
            )
        return True

    def fail_recharge(
        self,
        request_id: str,
        code: str,
        message: str,
        *,
        outbox: Iterable[OutboxEvent],
        author: str | None = None,
        payload: str | None = None,
    ) -> bool:
        """In ONE transaction: the row → ``failed`` with ``code``/``message``, and the refusal reply.

        A request never recorded (refused before :meth:`begin_recharge`) gets a new ``failed`` row; then
        ``author`` is required and ``payload`` is kept if given.  Returns False, writing nothing, when the
        request is already finished (``failed``, ``granted`` or ``answered``): a grant is never undone.
        """
        _require_text("request_id", request_id)
        _require_text("code", code)
        _require_text("message", message)
        _optional_text("author", author)
        rows = self._outbox_rows(outbox)
        now = self._now()
        with self._write() as conn:
            found = conn.execute("SELECT state FROM recharges WHERE request_id = ?", (request_id,)).fetchone()
            if found is None:
                if author is None:
                    raise LedgerError(
                        f"recharge {request_id} is unknown; pass author to record its refusal",
                        code="recharge_not_found",
                    )
                conn.execute(
                    "INSERT INTO recharges (request_id, author, state, payload, error_code, error_message,"
                    " created_at, updated_at) VALUES (?, ?, 'failed', ?, ?, ?, ?, ?)",
                    (request_id, author, payload, code, message, now, now),
                )
            elif RechargeState(found[0]).finished:
                return False
            else:
                conn.execute(
                    "UPDATE recharges SET state = 'failed', error_code = ?, error_message = ?, updated_at = ?"
                    " WHERE request_id = ?",
                    (code, message, now, request_id),
                )
            self._insert_outbox(conn, rows)
        return True

    def answer_request(
        self, request_id: str, *, author: str, payload: str | None, outbox: Iterable[OutboxEvent]
    ) -> bool:
        """Record a request acknowledged without any charge (``answered``) with its reply, in ONE
        transaction.  False, writing nothing, when ``request_id`` is already recorded."""
        _require_text("request_id", request_id)
        _require_text("author", author)
        rows = self._outbox_rows(outbox)
        now = self._now()
        with self._write() as conn:
            inserted = conn.execute(
                "INSERT INTO recharges (request_id, author, state, payload, created_at, updated_at)"
                " VALUES (?, ?, 'answered', ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
                (request_id, author, payload, now, now),
            ).rowcount
            if not inserted:
                return False
            self._insert_outbox(conn, rows)
        return True

    def unfinished_recharges(self) -> list[RechargeRow]:
        """Rows still ``pending`` or ``submitted``, oldest first: what a restart must resume."""
        rows = self._query(
            f"SELECT {_RECHARGE_COLUMNS} FROM recharges WHERE state IN ('pending', 'submitted')"
            " ORDER BY created_at, rowid"
        )
        return [_recharge_row(r) for r in rows]

    # -------------------------------------------------------------------------------------- relay cursor
    def cursor(self) -> int | None:
        """``created_at`` of the newest incoming event handled, or None before the first one."""
        rows = self._query("SELECT value FROM meta WHERE name = ?", _CURSOR)
        return int(rows[0][0]) if rows else None

    def advance_cursor(self, created_at: int) -> int:
        """Move the cursor forward to ``created_at`` (never backwards); returns the cursor now stored."""
        _count(created_at, "created_at")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (_CURSOR, created_at),
            )
            (value,) = conn.execute("SELECT value FROM meta WHERE name = ?", (_CURSOR,)).fetchone()
        return int(value)

    # ------------------------------------------------------------------------------------------ rebuild
    def rebuild(self, records: Iterable[TransactionRecord]) -> RebuildReport:
        """Apply ``Transaction`` events (already filtered to trusted authors) in one transaction.

        An event whose id is already an op's ``event_id`` (the device's own announcements, or an earlier
        rebuild) is skipped.  A debit that leaves a user's total negative is still recorded (it is history)
        and the user is listed in ``negative_users``.
        """
        received = 0
        unique: dict[str, tuple[str, str, int, int]] = {}
        for record in records:
            received += 1
            row = _record_row(record)
            unique.setdefault(row[0], row)  # the first copy of a repeated event wins
        # Inserting in event-id order keeps both id indexes' writes local: about 2x faster on 100 000 rows.
        rows = sorted(unique.values())
        with self._write() as conn:
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS rebuild_in"
                " (event_id TEXT NOT NULL, user TEXT NOT NULL, tokens INTEGER NOT NULL,"
                " created_at INTEGER NOT NULL)"
            )
            conn.execute("DELETE FROM temp.rebuild_in")
            conn.executemany("INSERT INTO temp.rebuild_in VALUES (?, ?, ?, ?)", rows)
            conn.execute(
                "DELETE FROM temp.rebuild_in WHERE EXISTS"
                " (SELECT 1 FROM ops WHERE ops.event_id = rebuild_in.event_id)"
            )
            applied = conn.execute(
                "INSERT INTO ops (key, user, delta, kind, event_id, created_at)"
                " SELECT ? || event_id, user, tokens, 'rebuild', event_id, created_at"
                " FROM temp.rebuild_in ORDER BY event_id",
                (_REBUILD_KEY_PREFIX,),
            ).rowcount
            negative = tuple(
                r[0]
                for r in conn.execute(
                    "SELECT user FROM balances WHERE total < 0 AND user IN"
                    " (SELECT user FROM temp.rebuild_in WHERE tokens < 0) ORDER BY user"
                )
            )
            conn.execute("DELETE FROM temp.rebuild_in")
        return RebuildReport(applied=applied, skipped=received - applied, negative_users=negative)

    # ---------------------------------------------------------------------------------------- retention
    def prune(self, before: int) -> PruneReport:
        """Delete finished recharge rows updated before ``before`` and outbox rows acknowledged before it
        (unix seconds), in one transaction; then give the freed pages back to the file system.

        Never touches ``ops``, unfinished recharges or unacknowledged outbox rows.  A request whose row is
        gone is handled as new if a relay delivers it again; its authorization has expired by then (the
        retention is longer than any deadline the device accepts) and the on-chain nonce is the final guard.
        """
        _count(before, "before")
        with self._write() as conn:
            recharges = conn.execute(
                "DELETE FROM recharges WHERE state NOT IN ('pending', 'submitted') AND updated_at < ?",
                (before,),
            ).rowcount
            outbox = conn.execute(
                "DELETE FROM outbox WHERE acked_at IS NOT NULL AND acked_at < ?", (before,)
            ).rowcount
        return PruneReport(recharges=recharges, outbox=outbox, pages_freed=self.vacuum())

    def vacuum(self) -> int:
        """Give the file's free pages back to the file system (incremental vacuum, then a WAL checkpoint
        that truncates the WAL); returns how many pages were freed.  Cheap when nothing is free."""
        with self._lock:
            conn = self._connection()
            try:
                (free,) = conn.execute("PRAGMA freelist_count").fetchone()
                if free:
                    # executescript steps the pragma to the end: execute() frees one page per step only
                    conn.executescript("PRAGMA incremental_vacuum;")
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(exc) from exc
        return int(free)

    def file_bytes(self) -> int:
        """Bytes the ledger occupies on disk now: the database file plus its WAL."""
        with self._lock:
            ((page_size,),) = self._query("PRAGMA page_size")
            ((pages,),) = self._query("PRAGMA page_count")
            (path,) = [r[2] for r in self._query("PRAGMA database_list") if r[1] == "main"]
        wal = Path(f"{path}-wal")
        return int(page_size) * int(pages) + (wal.stat().st_size if wal.exists() else 0)

    # ------------------------------------------------------------------------------------ diagnostics
    def check(self) -> list[str]:
        """Problems found by SQLite's integrity check and by recomputing balances from ops (empty: none)."""
        problems = [r[0] for r in self._query("PRAGMA integrity_check") if r[0] != "ok"]
        return problems + [
            f"balance of {user}: table says {table}, ops sum to {ops}"
            for user, table, ops in self._query(
                "SELECT user, sum(t), sum(o) FROM"
                " (SELECT user, total AS t, NULL AS o FROM balances"
                "  UNION ALL SELECT user, NULL, delta FROM ops)"
                " GROUP BY user HAVING sum(t) IS NOT sum(o)"
            )
        ]

    # -------------------------------------------------------------------------------------- internals
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError("the ledger is closed", code="ledger_closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction; rolled back on any exception."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(exc) from exc
                raise

    def _now(self) -> int:
        return int(self._clock())

    def _query(self, sql: str, *params: object) -> list[Any]:
        """All rows of one read (outside any explicit transaction, so it sees the last commit)."""
        with self._lock:
            conn = self._connection()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(exc) from exc

    def _total(self, user: str) -> int:
        rows = self._query("SELECT total FROM balances WHERE user = ?", user)
        return int(rows[0][0]) if rows else 0

    def _require_held(self, res: Reservation) -> None:
        if self._held.get(res.key) != res:
            raise LedgerError(
                f"reservation {res.key!r} is not held (committed or released)", code="reservation_not_held"
            )

    def _unhold(self, res: Reservation) -> None:
        del self._held[res.key]
        left = self._reserved.get(res.user, 0) - res.amount  # holds of 0 tokens leave no entry behind
        if left:
            self._reserved[res.user] = left
        else:
            self._reserved.pop(res.user, None)

    def _outbox_rows(self, events: Iterable[OutboxEvent]) -> list[tuple[str, str, int, int]]:
        now = self._now()
        return [(_checked_event(e), e.event_json, now, int(OutboxPriority(e.priority))) for e in events]

    def _apply_grant(
        self, conn: sqlite3.Connection, key: str, user: str, tokens: int, event_id: str | None
    ) -> bool:
        """Insert the grant op inside the caller's transaction; False if ``key`` already holds this grant."""
        inserted = conn.execute(
            "INSERT INTO ops (key, user, delta, kind, event_id, created_at)"
            " VALUES (?, ?, ?, 'grant', ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, user, tokens, event_id, self._now()),
        ).rowcount
        if not inserted:
            prior = conn.execute("SELECT user, delta, kind FROM ops WHERE key = ?", (key,)).fetchone()
            if tuple(prior) != (user, tokens, "grant"):
                raise LedgerError(
                    f"key {key!r} was already applied as {prior[2]} of {prior[1]} for {prior[0]}",
                    code="idempotency_conflict",
                )
            return False
        return True

    @staticmethod
    def _recharge_in(conn: sqlite3.Connection, request_id: str) -> RechargeRow:
        row = conn.execute(
            f"SELECT {_RECHARGE_COLUMNS} FROM recharges WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            raise LedgerError(f"recharge {request_id} is unknown", code="recharge_not_found")
        return _recharge_row(row)

    @staticmethod
    def _insert_outbox(conn: sqlite3.Connection, rows: list[tuple[str, str, int, int]]) -> int:
        before = conn.total_changes
        conn.executemany(
            "INSERT INTO outbox (event_id, event_json, created_at, priority) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            rows,
        )
        return conn.total_changes - before


# ------------------------------------------------------------------------------------------ helpers
_RECHARGE_COLUMNS: Final = (
    "request_id, author, state, payload, user, nonce, amount_lamports, tokens, signature,"
    " last_valid_block_height, tx_bytes, error_code, error_message, created_at, updated_at"
)


def _recharge_row(row: Any) -> RechargeRow:
    return RechargeRow(
        request_id=row[0],
        author=row[1],
        state=RechargeState(row[2]),
        payload=row[3],
        user=row[4],
        nonce=row[5],
        amount_lamports=row[6],
        tokens=row[7],
        signature=row[8],
        last_valid_block_height=row[9],
        tx_bytes=None if row[10] is None else bytes(row[10]),
        error_code=row[11],
        error_message=row[12],
        created_at=row[13],
        updated_at=row[14],
    )


def _require_state(row: RechargeRow, wanted: RechargeState) -> None:
    if row.state is not wanted:
        raise LedgerError(
            f"recharge {row.request_id} is {row.state}, expected {wanted}", code="recharge_state_invalid"
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")  # re-read under the write lock: another process may have migrated
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{path} has ledger schema {version}, this build knows up to {SCHEMA_VERSION}",
                code="ledger_schema_too_new",
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target - 1]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _convert_to_incremental_vacuum(conn: sqlite3.Connection, path: Path) -> None:
    """Switch a ledger created without incremental vacuum to it: ``auto_vacuum`` can only change on a file
    with no table, or through a ``VACUUM`` (which rewrites the file, needs about its size free on disk and an
    exclusive lock).  Done once; if it cannot run now it is logged and tried again at the next open -- the
    ledger works either way, its file just does not shrink meanwhile."""
    (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    if mode == _INCREMENTAL:
        return
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
    except sqlite3.Error as exc:
        log.warning(
            "%s: could not convert the ledger to incremental vacuum (%s); will retry at the next start",
            path,
            exc,
            extra={"code": "ledger_vacuum_deferred"},
        )
        return
    log.info("%s: converted the ledger to incremental vacuum", path, extra={"code": "ledger_vacuumed"})


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls some failures (e.g. SQLITE_FULL) back by itself; only roll back what is still open.
    # If ROLLBACK itself fails the connection is unusable, and the next BEGIN reports the real problem.
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _storage_error(exc: sqlite3.Error) -> LedgerError:
    primary = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    text = str(exc)
    lowered = text.lower()
    if primary == sqlite3.SQLITE_FULL or "database or disk is full" in lowered:
        return LedgerError(f"the ledger's disk is full: {text}", code="ledger_disk_full")
    if primary == sqlite3.SQLITE_READONLY or "readonly" in lowered:
        return LedgerError(f"the ledger is read-only: {text}", code="ledger_read_only")
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in lowered:
        return LedgerError(f"the ledger is locked by another process: {text}", code="ledger_busy")
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return LedgerError(f"the ledger file is damaged: {text}", code="ledger_corrupt")
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in text:
        return LedgerError(f"already recorded: {text}", code="idempotency_conflict")
    return LedgerError(f"ledger storage error: {text}")


def _os_error(exc: OSError, message: str) -> LedgerError:
    if exc.errno == errno.ENOSPC:
        return LedgerError(f"{message}: {exc}", code="ledger_disk_full")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return LedgerError(f"{message}: {exc}", code="ledger_read_only")
    return LedgerError(f"{message}: {exc}")


def _require_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise LedgerError(f"{name} must be a non-empty string, got {value!r}", code="argument_invalid")


def _optional_text(name: str, value: Any) -> None:
    if value is not None:
        _require_text(name, value)


def _count(value: Any, name: str) -> int:
    """``value`` if it is an int ≥ 0 (bools refused), else ``invalid_amount``."""
    if type(value) is not int or value < 0:
        raise LedgerError(f"{name} must be an integer ≥ 0, got {value!r}", code="invalid_amount")
    return value


def _checked_event(event: OutboxEvent) -> str:
    """The id of a well-formed signed event whose JSON carries that same id."""
    _require_text("event_id", event.event_id)
    try:
        parsed = json.loads(event.event_json) if isinstance(event.event_json, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or parsed.get("id") != event.event_id:
        raise LedgerError(
            f"outbox event {event.event_id!r}: event_json must be the signed event with that id",
            code="argument_invalid",
        )
    return event.event_id


def _record_row(record: TransactionRecord) -> tuple[str, str, int, int]:
    _require_text("event_id", record.event_id)
    _require_text("user", record.user)
    if type(record.tokens) is not int:
        raise LedgerError(f"tokens must be an integer, got {record.tokens!r}", code="invalid_amount")
    _count(record.created_at, "created_at")
    return (record.event_id, record.user, record.tokens, record.created_at)
