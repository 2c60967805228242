"""ConsoleIndicator: a live line on a TTY (a real pty), plain lines on change otherwise."""

from __future__ import annotations

import dataclasses
import io
import os
import time
import tty

import pytest

from device.config import parse_config
from device.indicators import ConsoleIndicator, DisplayIndicator, build_indicators
from device.indicators.console import describe
from device.state import Activity, ChainStatus, Change, ChangeKind, DeviceState, LinkStatus, StateHub
from tests.fixtures.hardware import PtyDisplay, wait_for


@pytest.fixture
def hub() -> StateHub:
    return StateHub(DeviceState(started_at=time.time() - 3725))


def test_describe_shows_what_leds_and_display_show() -> None:
    state = DeviceState(relay=LinkStatus.READY, user="u", user_balance=620, user_last_grant=1000)
    assert describe(state) == "Ready | led steady | Bal 620 (62%, green)"


def test_non_tty_writes_a_line_per_change(hub) -> None:
    out = io.StringIO()
    console = ConsoleIndicator(hub, out)
    console.start()
    try:
        assert wait_for(lambda: out.getvalue().count("\n") == 1)
        hub.update(relay=LinkStatus.READY)
        hub.update(activity=Activity.GENERATING)
        hub.update(last_debit=Change(ChangeKind.DEBIT, at=1.0, user="abcdef0123", tokens=1234))
        assert wait_for(lambda: "-1,234 tok abcdef01\n" in out.getvalue())
    finally:
        console.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "Connecting | led slow blink | Bal -"
    assert "Generating | led fast blink | Bal -" in lines
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert len(lines) == len(set(lines))  # nothing repeated while unchanged


def test_tty_redraws_one_line_in_place(hub) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    stream = open(slave, "w", closefd=False)  # noqa: SIM115 - closed below
    reader = PtyDisplay(master, slave, os.ttyname(slave))
    console = ConsoleIndicator(hub, stream, refresh_seconds=0.1)
    try:
        assert console.tty
        console.start()
        text = reader.drain(0.35).decode()
        console.stop()
        text += reader.read(quiet=0.1, timeout=0.5).decode()
    finally:
        stream.close()
        os.close(master)
        os.close(slave)
    frames = [f for f in text.split("\r") if f]
    assert len(frames) >= 3
    assert frames[0] == "Connecting | led slow blink | Bal - | up 1:02:05\x1b[K"
    assert text.endswith("\n") and text.count("\n") == 1


def test_build_indicators_falls_back_to_console_when_gpio_fails(hub, caplog) -> None:
    cfg = parse_config({"indicators": {"leds": {"enabled": True, "status_pin": 17}}}, base_dir=".")
    out = io.StringIO()
    built = build_indicators(cfg, hub, stream=out)  # no pin factory on this machine
    assert [type(i) for i in built] == [ConsoleIndicator]
    assert [getattr(r, "code", None) for r in caplog.records] == ["leds_unavailable"]


def test_build_indicators_keeps_a_missing_display_and_adds_the_console(hub, tmp_path, caplog) -> None:
    port = str(tmp_path / "no-such-tty")
    cfg = parse_config({"indicators": {"display": {"enabled": True, "port": port}}}, base_dir=".")
    built = build_indicators(cfg, hub, stream=io.StringIO())
    assert [type(i) for i in built] == [DisplayIndicator, ConsoleIndicator]
    assert [getattr(r, "code", None) for r in caplog.records] == ["display_unavailable"]


def test_build_indicators_uses_leds_without_console_when_they_work(hub, mock_pins) -> None:
    cfg = parse_config({"indicators": {"leds": {"enabled": True, "status_pin": 17}}}, base_dir=".")
    built = build_indicators(cfg, hub, pin_factory=mock_pins, stream=io.StringIO())
    assert [type(i).__name__ for i in built] == ["LedIndicator"]
    for indicator in built:
        indicator.stop()


def test_console_off_means_no_console_even_without_hardware(hub) -> None:
    cfg = parse_config({"indicators": {"console": "off"}}, base_dir=".")
    assert build_indicators(cfg, hub, stream=io.StringIO()) == []


def test_loading_shows_until_the_model_is_ready() -> None:
    loading = DeviceState(relay=LinkStatus.READY, chain=ChainStatus.REACHABLE, loading=True)
    assert describe(loading) == "Loading | led flash | Bal -"
    assert describe(dataclasses.replace(loading, loading=False)) == "Ready | led steady | Bal -"
