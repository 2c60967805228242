"""The telemetry the hardware button publishes in its ``Status`` payload.

The agent supplies the counters (users served, tokens granted and debited today)
through a :data:`TelemetrySource` callable, so this module needs nothing from the
ledger; the rest comes from the current :class:`~device.state.DeviceState`.
The payload is compact JSON with a fixed key order::

    {"machine":"<hex pubkey>","model":"SmolLM2-135M","version":"0.1.0","uptime_seconds":3600,
     "relay":"ready","chain":"reachable","activity":"idle","users_served":3,
     "tokens_granted_today":12000,"tokens_debited_today":4211}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from device import __version__
from device.state import DeviceState

__all__ = ["TelemetrySource", "Usage", "telemetry_payload"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Counters the agent keeps (from the ledger): since start, and since local midnight."""

    users_served: int = 0
    tokens_granted_today: int = 0
    tokens_debited_today: int = 0


TelemetrySource = Callable[[], Usage]
"""Returns the current :class:`Usage`; called on a worker thread, so it may read the ledger."""


def telemetry_payload(state: DeviceState, usage: Usage, *, now: float, version: str = __version__) -> str:
    """The button's ``Status`` payload as compact JSON text."""
    return json.dumps(
        {
            "machine": state.machine_pubkey,
            "model": state.model,
            "version": version,
            "uptime_seconds": int(state.uptime(now)),
            "relay": state.relay.value,
            "chain": state.chain.value,
            "activity": state.activity.value,
            "users_served": usage.users_served,
            "tokens_granted_today": usage.tokens_granted_today,
            "tokens_debited_today": usage.tokens_debited_today,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
