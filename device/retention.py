"""The ledger's retention policy, run by the agent: prune at start and then every hour.

Finished recharge rows and acknowledged outbox rows older than ``ledger.retention_seconds`` are deleted
(:meth:`device.ledger.Ledger.prune`) and their pages given back to the file system, so the file stops
growing however many Requests and chats go through.  Why that is safe: the relay catch-up re-reads only
``nostr.overlap_seconds``, and the device refuses authorizations whose deadline lies further ahead than
``retention − overlap`` (``deadline_too_far``), so a Request whose row is gone can no longer be paid; the
on-chain nonce remains the final guard against a replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from device.ledger import Ledger, LedgerError, PruneReport

__all__ = ["PRUNE_INTERVAL_SECONDS", "LedgerPruner"]

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0
"""How often the agent prunes."""


class LedgerPruner:
    """Prunes ``ledger`` of what is older than ``retention_seconds``; ``run`` as a task, cancel to stop."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        retention_seconds: int,
        interval_seconds: float = PRUNE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._retention = retention_seconds
        self._interval = interval_seconds
        self._clock = clock

    async def prune_once(self) -> PruneReport | None:
        """One prune (in a worker thread); None when the ledger could not be written (logged, retried at
        the next interval)."""
        cutoff = max(0, int(self._clock()) - self._retention)
        try:
            report = await asyncio.to_thread(self._ledger.prune, cutoff)
        except LedgerError as exc:
            log.warning(
                "pruning the ledger failed: %s; will retry", exc, extra={"code": "ledger_prune_failed"}
            )
            return None
        if report.recharges or report.outbox:
            log.info(
                "pruned %d finished recharges and %d published events older than %d s (%d pages freed)",
                report.recharges,
                report.outbox,
                self._retention,
                report.pages_freed,
                extra={"code": "ledger_pruned"},
            )
        return report

    async def run(self) -> None:
        """Prune now, then every ``interval_seconds``, until cancelled."""
        while True:
            await self.prune_once()
            await asyncio.sleep(self._interval)
