"""What the indicators show, as pure functions of a :class:`~device.state.DeviceState`.

Every indicator renders the same picture: the LEDs as patterns and colours, the
character display and the console as short text.  Keeping that picture here, free
of hardware, means the console shows exactly what the LEDs and the display would.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import Enum

from device.state import Activity, ChainStatus, Change, ChangeKind, DeviceState, LinkStatus

__all__ = [
    "BalanceColour",
    "LedPattern",
    "balance_colour",
    "balance_line",
    "change_line",
    "latest_change",
    "status_line",
    "status_pattern",
    "to_ascii",
]


class LedPattern(Enum):
    """How the status LED is driven."""

    OFF = "off"
    STEADY = "steady"
    SLOW_BLINK = "slow blink"
    FAST_BLINK = "fast blink"
    FLASH = "flash"
    """A short flash once a second: the model is loading, nothing is served yet."""
    SESSION = "session"  # mostly on with a short dark gap: a pay-as-you-go session is open


class BalanceColour(Enum):
    """The balance LED's colour; ``OFF`` when the balance is unknown."""

    OFF = "off"
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


def status_pattern(state: DeviceState) -> LedPattern:
    """A flash while loading, fast blink while generating, slow blink while relay or chain is
    unreachable, the session pattern while a pay-as-you-go session is open, else steady."""
    if state.relay is LinkStatus.STOPPED:
        return LedPattern.OFF
    if state.loading:
        return LedPattern.FLASH
    if state.activity is Activity.GENERATING:
        return LedPattern.FAST_BLINK
    if not state.reachable:
        return LedPattern.SLOW_BLINK
    if state.open_sessions:
        return LedPattern.SESSION
    return LedPattern.STEADY


def status_line(state: DeviceState) -> str:
    """One short word or two for the first display line: ``Loading``, ``Ready``, ``No relay``…"""
    if state.relay is LinkStatus.STOPPED:
        return "Stopped"
    if state.loading:
        return "Loading"
    if state.activity is Activity.GENERATING:
        return "Generating"
    if state.activity is Activity.SETTLING:
        return "Settling"
    if state.relay is LinkStatus.CONNECTING:
        return "Connecting"
    if state.relay is LinkStatus.BACKING_OFF:
        return "No relay"
    if state.chain is ChainStatus.UNREACHABLE:
        return "No chain"
    if state.open_sessions:
        return f"Session x{state.open_sessions}" if state.open_sessions > 1 else "Session open"
    return "Ready (session)" if state.pricing_mode == "session" else "Ready"


def balance_line(state: DeviceState) -> str:
    """``Bal 1,234,567`` (thousands separators), or ``Bal -`` when no user is known yet; ``Ses`` instead of
    ``Bal`` in ``pricing.mode: session`` (the tokens are a session budget, paid by use)."""
    label = "Ses" if state.pricing_mode == "session" else "Bal"
    if state.user_balance is None:
        return f"{label} -"
    return f"{label} {state.user_balance:,}"


def balance_colour(fraction: float | None, green_above: float, amber_above: float) -> BalanceColour:
    """Green above ``green_above`` of the last grant, amber above ``amber_above``, else red."""
    if fraction is None:
        return BalanceColour.OFF
    if fraction > green_above:
        return BalanceColour.GREEN
    if fraction > amber_above:
        return BalanceColour.AMBER
    return BalanceColour.RED


def latest_change(state: DeviceState) -> Change | None:
    """The most recent of the last grant, debit and error."""
    changes = [c for c in (state.last_grant, state.last_debit, state.last_error) if c is not None]
    return max(changes, key=lambda c: c.at, default=None)


def _short(user: str | None) -> str:
    return f" {user[:8]}" if user else ""


def change_line(change: Change) -> str:
    """A transient notice: ``+1,000 tok ab12cd34``, ``-42 tok``, ``Err insufficient_balance``."""
    if change.kind is ChangeKind.GRANT:
        return f"+{change.tokens:,} tok{_short(change.user)}"
    if change.kind is ChangeKind.DEBIT:
        return f"-{change.tokens:,} tok{_short(change.user)}"
    detail = change.code or change.message or "error"
    return f"Err {detail}"


_EXTRA = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "ł": "l",
        "Ł": "L",
        "–": "-",
        "—": "-",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "•": "*",
        "·": ".",
        "€": "EUR",
        "µ": "u",
        "μ": "u",
    }
)


def to_ascii(text: str) -> str:
    """Printable ASCII only: NFKD, accents dropped, a few look-alikes mapped, anything else ``?``.

    >>> to_ascii("Grüße, Zoë – 5 µs")
    'Grusse, Zoe - 5 us'
    """
    out: list[str] = []
    for char in unicodedata.normalize("NFKD", text.translate(_EXTRA)):
        if " " <= char <= "~":
            out.append(char)
        elif unicodedata.combining(char):
            continue
        elif char in "\t\n\r":
            out.append(" ")
        else:
            out.append("?")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Notice:
    """A transient line (or screen) pushed by something other than the state, e.g. the button."""

    lines: tuple[str, ...]
    until: float
