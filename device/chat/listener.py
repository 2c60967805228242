"""Binding the chat server's Unix socket safely.

The socket appears at its path already carrying its final mode: it is bound under a temporary
name in the same directory, ``chmod``-ed, then renamed into place.  A leftover socket file from a
crashed run is replaced; a socket some live process still answers on is not (``chat_socket_in_use``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from device.errors import DeviceError

__all__ = ["ListenError", "bind_unix_socket"]

_BACKLOG = 64


class ListenError(DeviceError):
    """The chat socket cannot be created."""

    code = "chat_socket_error"


def _in_use(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_unix_socket(path: Path, mode: int) -> socket.socket:
    """A listening Unix stream socket at ``path`` with permissions ``mode``."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    if info is not None:
        if not stat.S_ISSOCK(info.st_mode):
            raise ListenError(f"{path} exists and is not a socket; refusing to replace it")
        if _in_use(path):
            raise ListenError(
                f"{path}: another process is serving this socket (is the agent already running?)",
                code="chat_socket_in_use",
            )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock.bind(str(tmp))
        tmp.chmod(mode)
        tmp.replace(path)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ListenError(f"cannot listen on {path}: {exc}") from exc
    return sock
