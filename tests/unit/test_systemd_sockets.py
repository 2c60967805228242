"""sockets_from_systemd: environment parsing (in-process) and a real fd 3 hand-over (subprocess)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from device.systemd_sockets import SystemdSocketError, environ_without_listen, sockets_from_systemd

SERVER = textwrap.dedent(
    """
    import os, sys
    from device.systemd_sockets import sockets_from_systemd
    socks = sockets_from_systemd(os.environ, os.getpid(), name=sys.argv[1] if len(sys.argv) > 1 else None)
    print(len(socks), flush=True)
    conn, _ = socks[0].accept()
    conn.sendall(b"hello from fd %d" % socks[0].fileno())
    conn.close()
    """
)


def test_no_sockets_when_listen_pid_is_another_process() -> None:
    assert sockets_from_systemd({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, 4242) == []


def test_no_sockets_when_variables_unset() -> None:
    assert sockets_from_systemd({}, 4242) == []


def test_malformed_listen_fds_is_refused() -> None:
    with pytest.raises(SystemdSocketError, match="LISTEN_FDS"):
        sockets_from_systemd({"LISTEN_PID": "7", "LISTEN_FDS": "two"}, 7)


def test_names_count_must_match_fds() -> None:
    with pytest.raises(SystemdSocketError, match="LISTEN_FDNAMES"):
        sockets_from_systemd({"LISTEN_PID": "7", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"}, 7)


def test_environ_without_listen_drops_activation_variables() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "chat", "PATH": "/bin"}
    assert environ_without_listen(env) == {"PATH": "/bin"}


def _connect(path: Path) -> bytes:
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        while True:
            try:
                client.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.settimeout(10)
        return client.recv(100)


def test_listening_socket_passed_as_fd_3_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "chat.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    # The wrapper puts the socket on fd 3 and sets LISTEN_PID to the pid the exec'd server keeps,
    # as systemd does between fork and exec.
    wrapper = (
        "import os, sys; fd = int(sys.argv[1]); fd != 3 and (os.dup2(fd, 3), os.close(fd)); "
        "os.environ['LISTEN_PID'] = str(os.getpid()); "
        "os.execv(sys.executable, [sys.executable, '-c', sys.argv[2], 'chat'])"
    )
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "chat"}
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper, str(listener.fileno()), SERVER],
        pass_fds=[listener.fileno()],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    listener.close()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "1"
        assert _connect(path) == b"hello from fd 3"
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate absent")
def test_systemd_socket_activate_hands_over_the_chat_socket(tmp_path: Path) -> None:
    path = tmp_path / "chat.sock"
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", str(path), "--fdname=chat", sys.executable, "-c", SERVER, "chat"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # systemd-socket-activate only starts the program on the first connection.
        assert _connect(path) == b"hello from fd 3"
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "1"
    finally:
        proc.kill()
        proc.wait()
