"""AdminButton on gpiozero's MockFactory: press → one Status in the outbox, hold → identity shown."""

from __future__ import annotations

import asyncio
import json

from device.button import build_button
from device.config import ButtonConfig, DisplayConfig
from device.indicators.display import DisplayIndicator
from device.nostr_events import EventSigner
from device.protocol import ZERO_EVENT_ID, MachineStatus, Reason, Status, decode_message
from device.state import Activity
from device.telemetry import Usage
from tests.fixtures.button import (
    PIN,
    SESSION,
    hub,
    keys,
    ledger,
    make_button,
)
from tests.fixtures.hardware import wait_for

__all__ = ["hub", "keys", "ledger"]  # fixtures used by name below


async def test_press_puts_exactly_one_status_in_the_outbox(mock_pins, hub, keys, ledger) -> None:
    h = make_button(mock_pins, hub, keys, ledger)
    try:
        await h.press()
    finally:
        h.button.stop()
    events = ledger.pending_outbox()
    assert len(events) == 1 and h.notified == [1]
    event = json.loads(events[0].event_json)
    assert event["kind"] == 1573
    assert event["tags"] == [["s", SESSION], ["p", hub.current.machine_pubkey]]
    message = decode_message(event["content"])
    assert isinstance(message, Status)
    assert message.status is MachineStatus.Available
    assert message.reason is Reason.AdminRequest
    assert message.initial_request == ZERO_EVENT_ID
    telemetry = json.loads(message.payload)
    assert telemetry["machine"] == hub.current.machine_pubkey
    assert telemetry["model"] == "smollm2"
    assert telemetry["relay"] == "ready"
    assert telemetry["users_served"] == 3
    assert telemetry["tokens_granted_today"] == 12000
    assert telemetry["tokens_debited_today"] == 4211
    assert set(telemetry) >= {"version", "uptime_seconds"}


async def test_status_is_working_while_generating(mock_pins, hub, keys, ledger) -> None:
    hub.update(activity=Activity.GENERATING)
    h = make_button(mock_pins, hub, keys, ledger)
    try:
        await h.press()
    finally:
        h.button.stop()
    [event] = ledger.pending_outbox()
    message = decode_message(json.loads(event.event_json)["content"])
    assert isinstance(message, Status) and message.status is MachineStatus.Working


async def test_second_press_within_min_interval_publishes_nothing(mock_pins, hub, keys, ledger) -> None:
    h = make_button(mock_pins, hub, keys, ledger, min_interval_seconds=60)
    try:
        await h.press()
        await h.press()
    finally:
        h.button.stop()
    assert len(ledger.pending_outbox()) == 1 and h.notified == [1]


async def test_press_after_min_interval_publishes_again(mock_pins, hub, keys, ledger) -> None:
    served = iter(range(1, 10))  # identical content within one second would be the same event (deduped)
    h = make_button(
        mock_pins, hub, keys, ledger, telemetry=lambda: Usage(next(served)), min_interval_seconds=0.1
    )
    try:
        await h.press()
        await asyncio.sleep(0.15)
        await h.press()
    finally:
        h.button.stop()
    assert len(ledger.pending_outbox()) == 2


async def test_hold_shows_pubkey_and_socket_and_publishes_nothing(
    mock_pins, hub, keys, ledger, pty_display
) -> None:
    cfg = DisplayConfig(enabled=True, port=pty_display.port, driver="line", columns=20, rows=4)
    display = DisplayIndicator(cfg, hub, scroll_seconds=30)
    display.start()
    h = make_button(mock_pins, hub, keys, ledger, display=display, hold_seconds=0.1)
    try:
        pty_display.read()
        h.pin.drive_low()
        await asyncio.sleep(0.3)
        h.pin.drive_high()
        await asyncio.sleep(0.05)
        await h.button.drain()
        text = (await asyncio.to_thread(pty_display.read)).decode()
    finally:
        h.button.stop()
        display.stop()
    pubkey = hub.current.machine_pubkey
    assert f"Key {pubkey[:16]}\r\nChat /run/pi-agent/c\r\n" in text
    assert ledger.pending_outbox() == []


async def test_press_flashes_the_display(mock_pins, hub, keys, ledger, pty_display) -> None:
    cfg = DisplayConfig(enabled=True, port=pty_display.port, driver="line", columns=16, rows=2)
    display = DisplayIndicator(cfg, hub)
    display.start()
    h = make_button(mock_pins, hub, keys, ledger, display=display)
    try:
        pty_display.read()
        await h.press()
        assert await asyncio.to_thread(pty_display.read) == b"Ready\r\nStatus sent\r\n"
    finally:
        h.button.stop()
        display.stop()


async def test_unusable_pin_gives_no_button_and_one_log_line(hub, keys, ledger, caplog) -> None:
    config = ButtonConfig(enabled=True, pin=PIN)
    signer = EventSigner(keys, session=SESSION, machine_pubkey=hub.current.machine_pubkey)
    button = build_button(  # no pin factory on this machine
        config,
        hub,
        loop=asyncio.get_running_loop(),
        signer=signer,
        outbox=ledger,
        notify_outbox=lambda: None,
        telemetry=Usage,
        chat_socket="/tmp/chat.sock",
    )
    assert button is None
    assert [getattr(r, "code", None) for r in caplog.records] == ["button_unavailable"]


def test_wait_for_helper_is_shared() -> None:
    assert wait_for(lambda: True)
