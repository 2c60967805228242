"""LedIndicator on gpiozero's MockFactory: patterns, error hold, bar graph, RGB thresholds."""

from __future__ import annotations

import statistics
import time

import pytest

from device.config import LedsConfig
from device.indicators.leds import LedIndicator
from device.state import Activity, ChainStatus, Change, ChangeKind, DeviceState, LinkStatus, StateHub
from tests.fixtures.hardware import wait_for

STATUS, ERROR = 17, 27
BAR = (5, 6, 13, 19)
RGB = (9, 10, 11)


@pytest.fixture
def hub() -> StateHub:
    return StateHub(DeviceState(relay=LinkStatus.READY, chain=ChainStatus.REACHABLE))


def leds(mock_pins, hub: StateHub, **cfg: object) -> LedIndicator:
    config = LedsConfig(enabled=True, status_pin=STATUS, error_pin=ERROR, **cfg)  # type: ignore[arg-type]
    indicator = LedIndicator(config, hub, pin_factory=mock_pins)
    indicator.start()
    return indicator


def intervals(pin, since: int) -> list[float]:
    """Seconds between state changes after the first ``since`` states (mock timestamps are deltas)."""
    return [s.timestamp for s in pin.states[since + 1 :]]


def on_states(mock_pins, pins: tuple[int, ...]) -> list[bool]:
    return [bool(mock_pins.pin(p).state) for p in pins]


def test_status_led_is_steady_when_ready(mock_pins, hub) -> None:
    indicator = leds(mock_pins, hub)
    try:
        pin = mock_pins.pin(STATUS)
        assert wait_for(lambda: pin.state == 1)
        time.sleep(0.3)
        assert [s.state for s in pin.states] == [0, 1]
    finally:
        indicator.stop()


@pytest.mark.parametrize(
    ("changes", "period"),
    [
        ({"relay": LinkStatus.BACKING_OFF}, 0.5),
        ({"chain": ChainStatus.UNREACHABLE}, 0.5),
        ({"activity": Activity.GENERATING}, 0.1),
    ],
    ids=["slow-blink-relay-down", "slow-blink-chain-down", "fast-blink-generating"],
)
def test_status_led_blink_pattern(mock_pins, hub, changes, period) -> None:
    indicator = leds(mock_pins, hub)
    try:
        pin = mock_pins.pin(STATUS)
        assert wait_for(lambda: pin.state == 1)
        start = len(pin.states)
        hub.update(**changes)
        time.sleep(period * 6.5)
        gaps = intervals(pin, start)[1:]  # the first change happens at an arbitrary moment
        assert len(gaps) >= 4
        # timing tolerance for a shared 2-core machine: the typical gap is exact, stragglers are rare
        assert statistics.median(gaps) == pytest.approx(period, abs=0.03)
        assert sum(g == pytest.approx(period, abs=0.05) for g in gaps) >= 0.75 * len(gaps)
    finally:
        indicator.stop()


def test_error_led_is_lit_for_the_hold_time_after_a_new_error(mock_pins, hub) -> None:
    indicator = leds(mock_pins, hub, error_hold_seconds=0.4)
    try:
        pin = mock_pins.pin(ERROR)
        hub.update(last_error=Change(ChangeKind.ERROR, at=time.time(), code="insufficient_balance"))
        assert wait_for(lambda: pin.state == 1)
        assert wait_for(lambda: pin.state == 0, timeout=1.0)
        assert [s.state for s in pin.states] == [0, 1, 0]
        assert pin.states[-1].timestamp == pytest.approx(0.4, abs=0.06)
    finally:
        indicator.stop()


def test_an_error_present_at_start_does_not_light_the_error_led(mock_pins) -> None:
    old = Change(ChangeKind.ERROR, at=0.0, code="chat_failed")
    hub = StateHub(DeviceState(relay=LinkStatus.READY, last_error=old))
    indicator = leds(mock_pins, hub)
    try:
        assert wait_for(lambda: mock_pins.pin(STATUS).state == 1)
        time.sleep(0.1)
        assert mock_pins.pin(ERROR).state == 0
    finally:
        indicator.stop()


@pytest.mark.parametrize(
    ("balance", "lit"),
    [
        (1000, [1, 1, 1, 1]),
        (500, [1, 1, 0, 0]),
        (260, [1, 1, 0, 0]),
        (1, [1, 0, 0, 0]),
        (0, [0, 0, 0, 0]),
    ],
)
def test_bargraph_shows_fraction_of_last_grant_left(mock_pins, hub, balance, lit) -> None:
    indicator = leds(mock_pins, hub, balance="bargraph", bargraph_pins=BAR)
    try:
        hub.update(user="u", user_balance=balance, user_last_grant=1000)
        assert wait_for(lambda: on_states(mock_pins, BAR) == [bool(x) for x in lit])
    finally:
        indicator.stop()


@pytest.mark.parametrize(
    ("balance", "rgb"),
    [(600, (0, 1, 0)), (500, (1, 1, 0)), (201, (1, 1, 0)), (200, (1, 0, 0)), (None, (0, 0, 0))],
)
def test_rgb_led_colour_by_thresholds(mock_pins, hub, balance, rgb) -> None:
    indicator = leds(mock_pins, hub, balance="rgb", rgb_pins=RGB)
    try:
        hub.update(user="u", user_balance=1000, user_last_grant=1000)
        assert wait_for(lambda: on_states(mock_pins, RGB) == [False, True, False])
        hub.update(user_balance=balance)
        assert wait_for(lambda: on_states(mock_pins, RGB) == [bool(x) for x in rgb])
    finally:
        indicator.stop()


def test_stop_releases_the_pins(mock_pins, hub) -> None:
    from gpiozero import LED

    indicator = leds(mock_pins, hub)
    indicator.stop()
    LED(STATUS, pin_factory=mock_pins).close()  # would raise GPIOPinInUse if still held


def test_status_led_flashes_while_the_model_loads_then_turns_steady(mock_pins) -> None:
    hub = StateHub(DeviceState(relay=LinkStatus.READY, chain=ChainStatus.REACHABLE, loading=True))
    indicator = leds(mock_pins, hub)
    try:
        pin = mock_pins.pin(STATUS)
        assert wait_for(lambda: len(pin.states) >= 6, timeout=5)
        # mock timestamps are the time since the previous change: how long the LED was lit / dark
        lit = [s.timestamp for s in pin.states[2:] if s.state == 0]
        dark = [s.timestamp for s in pin.states[2:] if s.state == 1]
        assert statistics.median(lit) == pytest.approx(0.1, abs=0.05)
        assert statistics.median(dark) == pytest.approx(0.9, abs=0.1)
        hub.update(loading=False)
        assert wait_for(lambda: pin.state == 1)
        count = len(pin.states)
        time.sleep(1.2)
        assert len(pin.states) == count  # steady: no more changes
    finally:
        indicator.stop()
