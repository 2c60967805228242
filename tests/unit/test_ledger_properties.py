"""A Hypothesis state machine drives the ledger against a plain model of balances.

Rules: grant, grant-duplicate, reserve, commit, release, retry of a closed reservation, rebuild-batch (fresh
records, the device's own events, replays of an earlier batch) and reopen-after-crash.  After every step the
ledger must agree with the model: total = Σ grants − Σ commits (+ rebuilt deltas), total ≥ 0,
available ≥ 0, no key applied twice, and the derived balance table = Σ ops.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from device.ledger import (
    InsufficientBalance,
    Ledger,
    LedgerError,
    OutboxEvent,
    Reservation,
    TransactionRecord,
)

USERS = ("alice", "bob", "carol")
# The machine checks logic, not durability (test_ledger_faults kills a real writer), so it runs on tmpfs
# when there is one: an fsync per step would otherwise limit it to a few examples.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
users = st.sampled_from(USERS)


def signed(event_id: str) -> OutboxEvent:
    return OutboxEvent(event_id, json.dumps({"id": event_id, "kind": 1573}))


class LedgerMachine(RuleBasedStateMachine):
    grants = Bundle("grants")
    held = Bundle("held")
    closed = Bundle("closed")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-sm-", dir=SCRATCH))
        self.path = self.dir / "ledger.db"
        self.ledger = Ledger.open(self.path)
        self.ids = itertools.count()
        self.totals: Counter[str] = Counter()
        self.applied: dict[str, tuple[str, int]] = {}  # key → (user, delta), grants and debits
        self.live: dict[str, Reservation] = {}  # reservations the ledger should still hold
        self.committed: dict[str, int] = {}
        self.own_events: list[TransactionRecord] = []  # what the relay would echo back of our own ops
        self.batches: list[list[TransactionRecord]] = []

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def reserved(self, user: str) -> int:
        return sum(r.amount for r in self.live.values() if r.user == user)

    # -------------------------------------------------------------------------------------------- rules
    @rule(target=grants, user=users, tokens=st.integers(1, 1_000), announced=st.booleans())
    def grant(self, user: str, tokens: int, announced: bool) -> str:
        n = next(self.ids)
        key, tx = f"req-{n}", f"tx-{n}" if announced else None
        outbox = [signed(f"status-{n}"), *([signed(tx)] if tx else [])]
        assert self.ledger.grant(key, user, tokens, event_id=tx, outbox=outbox) is True
        self.totals[user] += tokens
        self.applied[key] = (user, tokens)
        if tx:
            self.own_events.append(TransactionRecord(tx, user, tokens, n))
        return key

    @rule(key=grants)
    def grant_duplicate(self, key: str) -> None:
        user, tokens = self.applied[key]
        assert self.ledger.grant(key, user, tokens, outbox=[signed(f"again-{next(self.ids)}")]) is False

    @rule(target=held, user=users, data=st.data())
    def reserve(self, user: str, data: st.DataObject) -> Reservation:
        # up to the total (not just the available part) and a little over, so refusals are common
        n = data.draw(st.integers(0, self.totals[user] + 10), label="n")
        key = f"chat-{next(self.ids)}"
        if n > self.totals[user] - self.reserved(user):
            with pytest.raises(InsufficientBalance):
                self.ledger.reserve(user, n, key=key)
            return Reservation(key, user, n)  # never held: behaves like a released one
        res = self.ledger.reserve(user, n, key=key)
        self.live[key] = res
        return res

    @rule(target=closed, res=consumes(held), data=st.data(), announced=st.booleans())
    def commit(self, res: Reservation, data: st.DataObject, announced: bool) -> Reservation:
        if res.key not in self.live:  # refused at reserve time
            with pytest.raises(LedgerError) as err:
                self.ledger.commit(res, 0)
            assert err.value.code == "reservation_not_held"
            return res
        used = data.draw(st.integers(0, res.amount), label="used")
        tx = f"tx-{res.key}" if announced else None
        outbox = [signed(tx)] if tx else []
        assert self.ledger.commit(res, used, event_id=tx, outbox=outbox) == used
        del self.live[res.key]
        self.totals[res.user] -= used
        self.applied[res.key] = (res.user, -used)
        self.committed[res.key] = used
        if tx:
            self.own_events.append(TransactionRecord(tx, res.user, -used, next(self.ids)))
        return res

    @rule(target=closed, res=consumes(held))
    def release(self, res: Reservation) -> Reservation:
        assert self.ledger.release(res) is (res.key in self.live)
        self.live.pop(res.key, None)
        return res

    @rule(res=closed, used=st.integers(0, 1_500))
    def retry_closed(self, res: Reservation, used: int) -> None:
        assert self.ledger.release(res) is False
        if res.key in self.committed:
            assert self.ledger.commit(res, used) == self.committed[res.key]
        else:
            with pytest.raises(LedgerError) as err:
                self.ledger.commit(res, used)
            assert err.value.code == "reservation_not_held"

    @rule(data=st.data())
    def rebuild_batch(self, data: st.DataObject) -> None:
        fresh: list[TransactionRecord] = []
        room = {u: self.totals[u] - self.reserved(u) for u in USERS}
        for user in data.draw(st.lists(users, max_size=6), label="users"):
            # debits stay within what is not reserved, so the model's "total ≥ 0" stays a real check
            debit = st.integers(-room[user], -1) if room[user] > 0 else st.nothing()
            tokens = data.draw(st.integers(1, 500) | debit, label="tokens")
            room[user] += tokens
            fresh.append(TransactionRecord(f"relay-{next(self.ids)}", user, tokens, next(self.ids)))
        echoed = data.draw(st.lists(st.sampled_from(self.own_events), max_size=3)) if self.own_events else []
        replayed = data.draw(st.sampled_from(self.batches)) if self.batches else []
        batch = data.draw(st.permutations([*fresh, *echoed, *replayed]), label="batch")

        report = self.ledger.rebuild(batch)
        assert (report.applied, report.skipped) == (len(fresh), len(echoed) + len(replayed))
        assert report.negative_users == ()
        for record in fresh:
            self.totals[record.user] += record.tokens
        self.batches.append(fresh)

    @rule()
    def reopen_after_crash(self) -> None:
        self.ledger.close()  # holds are durable: every live one is held again after the reopen
        self.ledger = Ledger.open(self.path)
        assert {h.reservation.key for h in self.ledger.open_holds()} == set(self.live)

    # ---------------------------------------------------------------------------------------- invariants
    @invariant()
    def balances_match_the_model(self) -> None:
        for user in USERS:
            balance = self.ledger.balance(user)
            assert balance.total == self.totals[user]
            assert balance.reserved == self.reserved(user)
            assert balance.available == balance.total - balance.reserved
            assert balance.total >= 0
            assert balance.available >= 0

    @invariant()
    def every_key_is_applied_exactly_once(self) -> None:
        conn = self.ledger._conn
        assert conn is not None
        rows = conn.execute("SELECT key, user, delta FROM ops WHERE kind <> 'rebuild'").fetchall()
        assert len(rows) == len({key for key, _, _ in rows})
        assert {key: (user, delta) for key, user, delta in rows} == self.applied

    @invariant()
    def derived_balances_equal_the_sum_of_ops(self) -> None:
        assert self.ledger.check() == []


LedgerMachine.TestCase.settings = settings(stateful_step_count=40)
TestLedgerMachine = LedgerMachine.TestCase
