"""Notifier and Watchdog against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.systemd_notify import Notifier, Watchdog, watchdog_interval
from tests.fixtures.clock import FakeClock


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2)
    return False


def test_ready_sends_ready_and_status(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert Notifier.from_environ({"NOTIFY_SOCKET": path}).ready("model loaded")
    assert received(sock) == ["READY=1", "STATUS=model loaded"]


def test_watchdog_sends_watchdog_1(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert Notifier(path).watchdog()
    assert received(sock) == ["WATCHDOG=1"]


def test_stopping_and_extend_timeout(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier(path)
    notifier.stopping()
    notifier.extend_timeout(90_000_000)
    assert received(sock) == ["STOPPING=1"]
    assert received(sock) == ["EXTEND_TIMEOUT_USEC=90000000"]


def test_status_is_flattened_to_one_line(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    Notifier(path).status("relay\ndown,  retrying")
    assert received(sock) == ["STATUS=relay down, retrying"]


def test_abstract_socket_address_with_at_sign() -> None:
    name = f"xephy-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]


def test_no_notify_socket_is_a_silent_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_unreachable_socket_returns_false_instead_of_raising(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "gone")).ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}, 42) == 30.0


def test_watchdog_interval_none_for_other_pid_or_unset() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}, 42) is None


def test_watchdog_pings_when_both_heartbeats_fresh(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    clock = FakeClock(1000.0)
    dog = Watchdog(Notifier(path), 30.0, clock=clock)
    dog.heartbeat("loop")
    dog.heartbeat("inference")
    clock.now += 29
    assert dog.tick()
    assert received(sock) == ["WATCHDOG=1"]


def test_watchdog_refuses_to_ping_when_inference_heartbeat_is_stale(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    clock = FakeClock(1000.0)
    dog = Watchdog(Notifier(path), 30.0, clock=clock)
    dog.heartbeat("inference")
    clock.now += 31
    dog.heartbeat("loop")
    assert dog.stale_sources() == ("inference",)
    assert not dog.tick()
    assert nothing_waiting(sock)


def test_watchdog_refuses_to_ping_when_loop_heartbeat_is_stale(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    clock = FakeClock(1000.0)
    dog = Watchdog(Notifier(path), 30.0, clock=clock)
    dog.heartbeat("loop")
    clock.now += 31
    dog.heartbeat("inference")
    assert not dog.tick()
    assert nothing_waiting(sock)


def test_watchdog_requires_loop_before_its_first_beat(notify_socket: tuple[socket.socket, str]) -> None:
    _sock, path = notify_socket
    dog = Watchdog(Notifier(path), 30.0, clock=FakeClock(1000.0))
    assert dog.stale_sources() == ("loop",)
    assert not dog.tick()


def test_watchdog_inference_not_required_until_it_beats(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    dog = Watchdog(Notifier(path), 30.0, clock=FakeClock(1000.0))
    dog.heartbeat("loop")
    assert dog.tick()
    assert received(sock) == ["WATCHDOG=1"]


def test_watchdog_forget_stops_requiring_a_source(notify_socket: tuple[socket.socket, str]) -> None:
    _sock, path = notify_socket
    clock = FakeClock(1000.0)
    dog = Watchdog(Notifier(path), 30.0, clock=clock)
    dog.heartbeat("inference")
    clock.now += 100
    dog.heartbeat("loop")
    dog.forget("inference")
    assert dog.tick()


def test_watchdog_rejects_unknown_source() -> None:
    dog = Watchdog(Notifier(None), 30.0)
    with pytest.raises(ValueError, match="relay"):
        dog.heartbeat("relay")


async def test_watchdog_run_pings_from_the_event_loop(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    dog = Watchdog(Notifier(path), 0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(dog.run(stop))
    await asyncio.sleep(0.12)
    stop.set()
    await task
    assert received(sock) == ["WATCHDOG=1"]
