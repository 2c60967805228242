"""The agent's retention loop: prunes what is older than the retention, survives an unwritable ledger."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from device.ledger import Ledger, OutboxEvent
from device.retention import LedgerPruner

DAY = 86_400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refuse(ledger: Ledger, request_id: str) -> None:
    reply = OutboxEvent(f"reply-{request_id}", json.dumps({"id": f"reply-{request_id}"}))
    ledger.fail_recharge(request_id, "signature_invalid", "no", outbox=[reply], author="a" * 64)
    ledger.mark_acked(reply.event_id, "ws://relay")


async def test_a_prune_deletes_only_what_is_older_than_the_retention(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(1_700_000_000)
    with Ledger.open(state_dir / "ledger.db", clock=clock) as ledger:
        refuse(ledger, "old")
        clock.now += 2 * DAY
        refuse(ledger, "recent")
        pruner = LedgerPruner(ledger, retention_seconds=DAY, clock=clock)

        with caplog.at_level(logging.INFO):
            report = await pruner.prune_once()

        assert report is not None and (report.recharges, report.outbox) == (1, 1)
        assert ledger.recharge("old") is None
        assert ledger.recharge("recent") is not None
    assert "ledger_pruned" in [getattr(r, "code", "") for r in caplog.records]


async def test_a_prune_that_cannot_write_is_logged_and_left_for_the_next_interval(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger.open(state_dir / "ledger.db")
    ledger.close()
    pruner = LedgerPruner(ledger, retention_seconds=DAY)

    assert await pruner.prune_once() is None
    assert "ledger_prune_failed" in [getattr(r, "code", "") for r in caplog.records]
