"""DisplayIndicator and the command sets, through a real pty pair."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from device.config import DisplayConfig
from device.indicators.commandsets import MatrixOrbital, SerLCD
from device.indicators.display import DisplayIndicator
from device.state import Change, ChangeKind, DeviceState, LinkStatus, StateHub
from tests.fixtures.hardware import PtyDisplay, Screen, wait_for

FIRST_SERLCD = (
    b"\x7c\x2d"
    + b"\xfe\x80"
    + b"Connecting      "
    + b"\xfe\xc0"
    + b"Bal -           "
    + b"\x7c\x2b\xff\xff\xff"
)


def make(
    pty: PtyDisplay, hub: StateHub, driver: str = "serlcd", size: tuple[int, int] = (16, 2), **kw: float
) -> DisplayIndicator:
    interval = kw.pop("min_interval_seconds", 0.0)
    cfg = DisplayConfig(
        enabled=True,
        port=pty.port,
        driver=driver,  # type: ignore[arg-type]
        columns=size[0],
        rows=size[1],
        min_interval_seconds=interval,
    )
    return DisplayIndicator(cfg, hub, **kw)


@pytest.fixture
def hub() -> StateHub:
    return StateHub(DeviceState(machine_pubkey="ab" * 32, model="smollm2"))


def test_serlcd_first_screen_is_clear_positioned_text_and_backlight(pty_display, hub) -> None:
    display = make(pty_display, hub)
    display.start()
    try:
        assert pty_display.read() == FIRST_SERLCD
    finally:
        display.stop()


def test_matrix_orbital_first_screen_bytes(pty_display, hub) -> None:
    display = make(pty_display, hub, "matrix_orbital")
    display.start()
    try:
        assert pty_display.read() == (
            b"\xfe\x42\x00\xfe\x52\xfe\x4b\xfe\x54"
            + b"\xfe\x58"
            + b"\xfe\x47\x01\x01Connecting      "
            + b"\xfe\x47\x01\x02Bal -           "
        )
    finally:
        display.stop()


def test_line_driver_writes_plain_lines(pty_display, hub) -> None:
    display = make(pty_display, hub, "line")
    display.start()
    try:
        assert pty_display.read() == b"Connecting\r\nBal -\r\n"
        hub.update(relay=LinkStatus.READY)
        assert pty_display.read() == b"Ready\r\nBal -\r\n"
    finally:
        display.stop()


def test_only_changed_characters_are_resent(pty_display, hub) -> None:
    hub.update(user="u1", user_balance=1000)
    display = make(pty_display, hub)
    display.start()
    try:
        assert b"Bal 1,000" in pty_display.read()
        hub.update(user_balance=1042)
        assert pty_display.read() == b"\xfe\xc7" + b"42"
    finally:
        display.stop()


def test_matrix_orbital_positions_are_one_based(pty_display, hub) -> None:
    hub.update(user="u1", user_balance=1000)
    display = make(pty_display, hub, "matrix_orbital")
    display.start()
    try:
        pty_display.read()
        hub.update(user_balance=1042)
        assert pty_display.read() == b"\xfe\x47\x08\x02" + b"42"
    finally:
        display.stop()


def test_balance_has_thousands_separators(pty_display, hub) -> None:
    hub.update(user="u1", user_balance=1234567)
    display = make(pty_display, hub)
    display.start()
    try:
        screen = Screen("serlcd", 16, 2).feed(pty_display.read())
        assert screen.lines()[1] == "Bal 1,234,567   "
    finally:
        display.stop()


def test_backlight_follows_balance_colour(pty_display, hub) -> None:
    hub.update(user="u1", user_balance=900, user_last_grant=1000)
    display = make(pty_display, hub)
    display.start()
    try:
        screen = Screen("serlcd", 16, 2).feed(pty_display.read())
        assert screen.backlight == (0, 255, 0)
        hub.update(user_balance=100)
        screen.feed(pty_display.read())
        assert screen.backlight == (255, 0, 0)
    finally:
        display.stop()


def test_contrast_and_backlight_commands() -> None:
    assert SerLCD().contrast(40) == b"\x7c\x18\x28"
    assert SerLCD().backlight((1, 2, 3)) == b"\x7c\x2b\x01\x02\x03"
    assert MatrixOrbital().contrast(200) == b"\xfe\x50\xc8"
    assert MatrixOrbital().brightness(128) == b"\xfe\x99\x80"


def test_serlcd_never_sends_the_command_prefix_as_text() -> None:
    assert SerLCD().text("a|b") == b"a!b"


def test_non_ascii_is_transliterated(pty_display, hub) -> None:
    hub.update(model="Zoë–Grüße 日本")
    display = make(pty_display, hub, size=(20, 4))
    display.start()
    try:
        screen = Screen("serlcd", 20, 4).feed(pty_display.read())
        assert screen.lines()[3] == "Zoe-Grusse ??".ljust(20)
    finally:
        display.stop()


def test_long_model_line_is_cut(pty_display, hub) -> None:
    hub.update(model="SmolLM2-135M-Instruct-Q8_0")
    display = make(pty_display, hub, size=(20, 4))
    display.start()
    try:
        screen = Screen("serlcd", 20, 4).feed(pty_display.read())
        assert screen.lines()[3] == "SmolLM2-135M-Instruc"
    finally:
        display.stop()


def test_long_notice_scrolls(pty_display, hub) -> None:
    display = make(pty_display, hub, scroll_seconds=0.3)
    display.start()
    try:
        screen = Screen("serlcd", 16, 2).feed(pty_display.read())
        display.flash("Status sent to relay", seconds=10)
        screen.feed(pty_display.read(quiet=0.1))
        assert screen.lines()[1] == "Status sent to r"
        assert wait_for(lambda: screen.feed(pty_display.drain(0.05)).lines()[1] == "tatus sent to re")
        assert wait_for(lambda: screen.feed(pty_display.drain(0.05)).lines()[1] == "atus sent to rel")
    finally:
        display.stop()


def test_grant_notice_replaces_the_balance_line_then_goes(pty_display, hub) -> None:
    display = make(pty_display, hub, notice_seconds=0.4)
    display.start()
    try:
        screen = Screen("serlcd", 16, 2).feed(pty_display.read())
        grant = Change(ChangeKind.GRANT, at=1.0, user="c0ffee00aa", tokens=5000)
        hub.update(user="c0ffee00aa", user_balance=5000, last_grant=grant)
        screen.feed(pty_display.read(quiet=0.1))
        assert screen.lines()[1] == "+5,000 tok c0ffe"
        assert wait_for(lambda: screen.feed(pty_display.drain(0.05)).lines()[1] == "Bal 5,000       ")
    finally:
        display.stop()


def test_updates_are_rate_limited(pty_display, hub) -> None:
    hub.update(user="u1", user_balance=1000)
    display = make(pty_display, hub, min_interval_seconds=0.6)
    display.start()
    try:
        screen = Screen("serlcd", 16, 2).feed(pty_display.read(quiet=0.1))
        for balance in (1001, 1002, 1003):
            hub.update(user_balance=balance)
        early = pty_display.drain(0.3)
        assert early == b""
        late = pty_display.drain(0.6)
        assert late == b"\xfe\xc8" + b"3"
        assert screen.feed(late).lines()[1] == "Bal 1,003       "
    finally:
        display.stop()


def test_missing_port_is_logged_once_and_retried(tmp_path: Path, pty_display, hub, caplog) -> None:
    link = tmp_path / "lcd"
    cfg = DisplayConfig(enabled=True, port=str(link), min_interval_seconds=0)
    display = DisplayIndicator(cfg, hub, retry_seconds=0.05, retry_max_seconds=0.1)
    with caplog.at_level(logging.INFO, logger="device.indicators.display"):
        assert display.connect() is False
        display.start()
        try:
            wait_for(lambda: False, timeout=0.4)  # several retries fail meanwhile
            codes = [getattr(r, "code", None) for r in caplog.records]
            assert codes == ["display_unavailable"]
            link.symlink_to(pty_display.port)
            assert pty_display.read() == FIRST_SERLCD
            assert display.connected
        finally:
            display.stop()
    codes = [getattr(r, "code", None) for r in caplog.records]
    assert codes == ["display_unavailable", "display_connected"]


def test_unplugged_display_is_retried_after_a_failed_write(tmp_path: Path, hub, caplog) -> None:
    master, slave = os.openpty()
    link = tmp_path / "lcd"
    link.symlink_to(os.ttyname(slave))
    cfg = DisplayConfig(enabled=True, port=str(link), min_interval_seconds=0)
    display = DisplayIndicator(cfg, hub, retry_seconds=0.05, retry_max_seconds=0.1)
    try:
        with caplog.at_level(logging.INFO, logger="device.indicators.display"):
            assert display.connect()
            display.start()
            os.close(master)  # the far end goes away: writes now fail with EIO
            os.close(slave)
            link.unlink()
            hub.update(relay=LinkStatus.READY)
            assert wait_for(lambda: not display.connected)
            hub.update(user_balance=5)
            wait_for(lambda: False, timeout=0.3)
        assert [getattr(r, "code", None) for r in caplog.records] == ["display_unavailable"]
    finally:
        display.stop()


def test_display_says_loading_until_the_model_is_ready(pty_display) -> None:
    hub = StateHub(DeviceState(relay=LinkStatus.READY, loading=True))
    display = make(pty_display, hub, "line")
    display.start()
    try:
        assert pty_display.read() == b"Loading\r\nBal -\r\n"
        hub.update(loading=False)
        assert pty_display.read() == b"Ready\r\nBal -\r\n"
    finally:
        display.stop()
