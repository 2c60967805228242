"""What LEDs, display and console show in ``pricing.mode: session`` (pure view functions)."""

from __future__ import annotations

from device.indicators.leds import BLINK_TIMES
from device.indicators.view import LedPattern, balance_line, status_line, status_pattern
from device.state import Activity, DeviceState, LinkStatus

READY = DeviceState(relay=LinkStatus.READY)


def test_prepaid_shows_ready_and_a_balance() -> None:
    state = READY
    assert (status_pattern(state), status_line(state), balance_line(state)) == (
        LedPattern.STEADY,
        "Ready",
        "Bal -",
    )


def test_session_mode_without_a_session_says_so_and_labels_the_budget() -> None:
    state = DeviceState(relay=LinkStatus.READY, pricing_mode="session", user_balance=1234)
    assert (status_pattern(state), status_line(state), balance_line(state)) == (
        LedPattern.STEADY,
        "Ready (session)",
        "Ses 1,234",
    )


def test_an_open_session_has_its_own_led_pattern_and_status_line() -> None:
    one = DeviceState(relay=LinkStatus.READY, pricing_mode="session", open_sessions=1)
    two = DeviceState(relay=LinkStatus.READY, pricing_mode="session", open_sessions=2)
    assert (status_pattern(one), status_line(one), status_line(two)) == (
        LedPattern.SESSION,
        "Session open",
        "Session x2",
    )
    assert BLINK_TIMES[LedPattern.SESSION] == (1.8, 0.2)
    assert all(
        len(status_line(s)) <= 16
        for s in (one, two, DeviceState(relay=LinkStatus.READY, pricing_mode="session"))
    )


def test_generating_and_outages_outrank_the_session_pattern() -> None:
    generating = DeviceState(relay=LinkStatus.READY, open_sessions=1, activity=Activity.GENERATING)
    offline = DeviceState(relay=LinkStatus.BACKING_OFF, open_sessions=1)
    assert status_pattern(generating) is LedPattern.FAST_BLINK
    assert status_pattern(offline) is LedPattern.SLOW_BLINK
