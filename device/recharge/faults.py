"""Named crash points on the money path, for kill -9 tests.

``XEPHY_DEVICE_FAULT=after_submit`` (a comma-separated list is accepted) makes the process SIGKILL itself
when the recharge processor reaches that step -- no ``finally`` blocks, no flushing, exactly like a power
cut.  Without the variable every point is a no-op.  Points, in the order a recharge passes them:

``before_pay``
    the Request is recorded ``pending``; nothing is signed or sent.
``after_submit``
    the ``pay`` transaction's signature and bytes are recorded (``submitted``); the transaction has not
    been sent yet (resume must send the very same bytes).
``after_landed``
    the transaction landed on chain; the grant is not written yet.
``after_grant``
    the grant and its outbox events are committed; the relay link has not been woken yet.

In ``pricing.mode: session`` the four points above apply to the ``lock``; a session's settlement passes:

``before_settle``
    the session is closed (unused budget debited, settle amount fixed); no ``settle`` is signed yet.
``after_settle_submit``
    the ``settle`` transaction's signature and bytes are recorded; it has not been sent yet.
``after_settle_landed``
    the ``settle`` landed on chain; the session is not marked settled and its ``Status`` not written.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Final

log = logging.getLogger(__name__)

FAULT_ENV: Final = "XEPHY_DEVICE_FAULT"
FAULT_POINTS: Final = frozenset(
    {
        "before_pay",
        "after_submit",
        "after_landed",
        "after_grant",
        "before_settle",
        "after_settle_submit",
        "after_settle_landed",
    }
)


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FaultPoints:
    """Kills the process at armed points; a no-op for every point that is not armed."""

    def __init__(self, armed: Iterable[str] = (), *, kill: Callable[[], None] = _kill_self) -> None:
        armed = frozenset(armed)
        unknown = armed - FAULT_POINTS
        if unknown:
            raise ValueError(f"unknown fault points {sorted(unknown)}; known: {sorted(FAULT_POINTS)}")
        self.armed = armed
        self._kill = kill

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FaultPoints:
        """Points named in ``XEPHY_DEVICE_FAULT`` (comma-separated); none when it is unset or empty."""
        text = environ.get(FAULT_ENV, "")
        return cls(name.strip() for name in text.split(",") if name.strip())

    def reached(self, point: str) -> None:
        """Called by the processor at ``point``; kills the process if that point is armed."""
        if point in self.armed:
            log.critical(
                "fault point %s reached: killing the process", point, extra={"code": "fault_injected"}
            )
            self._kill()
