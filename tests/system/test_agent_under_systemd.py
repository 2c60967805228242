"""The agent as systemd runs it: a passed chat socket (socket activation), READY=1, WATCHDOG=1, STOPPING=1."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.agent import write_config


def read_notifications(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """Datagrams received on the notify socket up to (and including) one containing ``until``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            datagram = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(datagram)
        if until in datagram.splitlines():
            return seen
    raise AssertionError(f"no {until!r} within {timeout} s; got {seen}")


def http_get(path: Path, target: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield sock, path
    finally:
        sock.close()


@pytest.fixture
def chat_listener(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    path = tmp_path / "chat.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    try:
        yield sock, path
    finally:
        sock.close()


def start_like_systemd(workdir: Path, chat: socket.socket, notify_path: Path) -> subprocess.Popen[str]:
    """Spawn ``xephy-device run`` with the chat socket as fd 3 and the LISTEN_*/NOTIFY_* variables set."""
    fd = chat.fileno()

    def in_child() -> None:  # runs after fork, before exec: LISTEN_PID must be the child's own pid
        os.dup2(fd, 3)
        stderr = os.fstat(2)  # already the pipe: systemd names the journal stream it connects stderr to
        os.environ.update(
            JOURNAL_STREAM=f"{stderr.st_dev}:{stderr.st_ino}",
            LISTEN_FDS="1",
            LISTEN_PID=str(os.getpid()),
            LISTEN_FDNAMES="chat",
            NOTIFY_SOCKET=str(notify_path),
            WATCHDOG_USEC="2000000",
        )

    return subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(write_config(workdir))],
        cwd=workdir,
        pass_fds=(fd, 3),  # 3 is what in_child dup2s onto: keep it open through close_fds
        preexec_fn=in_child,  # single-threaded test process at this point
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_agent_notifies_ready_feeds_the_watchdog_and_serves_the_passed_socket(
    tmp_path: Path, notify_socket: tuple[socket.socket, Path], chat_listener: tuple[socket.socket, Path]
) -> None:
    notify, notify_path = notify_socket
    chat, chat_path = chat_listener
    proc = start_like_systemd(tmp_path, chat, notify_path)
    try:
        ready = read_notifications(notify, "READY=1", timeout=60) if proc.poll() is None else []
        statuses = [line for d in ready for line in d.splitlines() if line.startswith("STATUS=")]
        assert any(s.startswith("STATUS=Loading ") for s in statuses), ready  # before READY=1, not after
        read_notifications(notify, "WATCHDOG=1", timeout=10)
        read_notifications(notify, "WATCHDOG=1", timeout=10)  # keeps feeding it
        health = http_get(chat_path, "/healthz")
        assert health.startswith("HTTP/1.1 200")
        proc.send_signal(signal.SIGTERM)
        read_notifications(notify, "STOPPING=1", timeout=30)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert "Traceback" not in log
    lines = log.splitlines()
    assert lines and all(re.match(r"<[0-7]>device\.\S+ \[\w+\] ", line) for line in lines), (
        log
    )  # journal format
    assert chat_path.exists()  # the socket belongs to systemd: the agent must not remove it
