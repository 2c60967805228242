"""DeviceState: the observable, immutable snapshot that indicators render.

The agent's parts report what they see (relay link state, chain reachability,
generating or idle, grants, debits, errors) by calling :meth:`StateHub.update`;
the hub swaps in a new frozen :class:`DeviceState` and hands it to every
subscriber.  The ledger stays the only owner of balances: the balance shown here
is a copy taken when a grant or debit happened, for display only.

Subscribers are called synchronously in the updating thread (the event loop or
the inference worker), so they must return at once — an indicator keeps only the
latest snapshot and renders it on its own thread or timer.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class LinkStatus(StrEnum):
    """State of the relay link (see ``device/relay.py``)."""

    CONNECTING = "connecting"
    READY = "ready"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


class ChainStatus(StrEnum):
    """Whether the Solana RPC answered the last time it was asked."""

    UNKNOWN = "unknown"
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"


class Activity(StrEnum):
    """What the device is doing right now."""

    IDLE = "idle"
    SETTLING = "settling"
    GENERATING = "generating"


class ChangeKind(StrEnum):
    """Kinds of transient notices shown on displays."""

    GRANT = "grant"
    DEBIT = "debit"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Change:
    """One grant, debit or error, with when it happened (unix seconds)."""

    kind: ChangeKind
    at: float
    user: str | None = None
    tokens: int = 0
    code: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class DeviceState:
    """Everything an indicator may show, as of one moment."""

    machine_pubkey: str = ""
    model: str = ""
    started_at: float = field(default_factory=time.time)
    relay: LinkStatus = LinkStatus.CONNECTING
    chain: ChainStatus = ChainStatus.UNKNOWN
    activity: Activity = Activity.IDLE
    loading: bool = False
    """True from the agent's start until the model is loaded and the chat socket listens."""
    user: str | None = None
    """The user of the last grant or chat."""
    user_balance: int | None = None
    """That user's token balance after it (display copy; the ledger owns balances)."""
    user_last_grant: int | None = None
    """Tokens of that user's last grant, for 'fraction left' displays."""
    last_grant: Change | None = None
    last_debit: Change | None = None
    last_error: Change | None = None
    pricing_mode: str = "prepaid"
    """``pricing.mode``: ``prepaid`` or ``session`` (pay as you go)."""
    open_sessions: int = 0
    """Pay-as-you-go sessions open now (locked on chain, not yet settled)."""

    @property
    def reachable(self) -> bool:
        """True when the relay link is ready and the chain is not known to be down."""
        return self.relay is LinkStatus.READY and self.chain is not ChainStatus.UNREACHABLE

    @property
    def balance_fraction(self) -> float | None:
        """Fraction of the last grant the current user has left (0..1), or None if unknown."""
        if self.user_balance is None or not self.user_last_grant:
            return None
        return max(0.0, min(1.0, self.user_balance / self.user_last_grant))

    def uptime(self, now: float | None = None) -> float:
        """Seconds since the agent started."""
        return max(0.0, (time.time() if now is None else now) - self.started_at)


Subscriber = Callable[[DeviceState], None]


class StateHub:
    """Holds the current :class:`DeviceState` and notifies subscribers of every change."""

    def __init__(self, initial: DeviceState | None = None) -> None:
        self._state = initial if initial is not None else DeviceState()
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    @property
    def current(self) -> DeviceState:
        """The latest snapshot."""
        return self._state

    def update(self, **changes: Any) -> DeviceState:
        """Replace the named fields; notify subscribers if anything changed."""
        with self._lock:
            new = dataclasses.replace(self._state, **changes)
            if new == self._state:
                return new
            self._state = new
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(new)
        return new

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every new snapshot (and once now); return an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)
            current = self._state
        callback(current)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe
