"""Sockets handed over by systemd socket activation (``sd_listen_fds`` without libsystemd).

``xephy-device.socket`` listens on ``/run/xephy-device/chat.sock`` and passes the listening
socket to the service as file descriptor 3, announced by ``LISTEN_PID`` (must be this process),
``LISTEN_FDS`` (how many, starting at fd 3) and ``LISTEN_FDNAMES`` (colon-separated names from
``FileDescriptorName=``; ours is ``chat``).  The chat server then serves on that socket instead of
binding its own, so clients can connect while the model loads and across restarts.

The caller should not pass these variables on to child processes (systemd's
``unset_environment``): pass a copy of the environment without them.
"""

from __future__ import annotations

import fcntl
import socket
from collections.abc import Mapping
from typing import Final

from device.errors import DeviceError

#: The first passed file descriptor (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START: Final = 3
#: The variables that announce passed sockets.
LISTEN_VARIABLES: Final = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class SystemdSocketError(DeviceError):
    """``LISTEN_FDS`` / ``LISTEN_FDNAMES`` are malformed, or a passed descriptor is not a socket."""

    code = "systemd_sockets_invalid"


def sockets_from_systemd(
    environ: Mapping[str, str], pid: int, *, name: str | None = None
) -> list[socket.socket]:
    """The sockets systemd passed to process ``pid``, in fd order (``[]`` when none were passed).

    With ``name``, only the descriptors whose ``LISTEN_FDNAMES`` entry equals it.  The descriptors
    get ``FD_CLOEXEC`` so they do not leak into child processes.  Raises
    :class:`SystemdSocketError` for malformed variables or a descriptor that is not a socket.
    """
    if environ.get("LISTEN_PID", "") != str(pid):
        return []
    count_text = environ.get("LISTEN_FDS", "")
    try:
        count = int(count_text)
    except ValueError:
        raise SystemdSocketError(f"LISTEN_FDS is not a number: {count_text!r}") from None
    if count < 0:
        raise SystemdSocketError(f"LISTEN_FDS is negative: {count}")
    names_text = environ.get("LISTEN_FDNAMES")
    names = names_text.split(":") if names_text else ["unknown"] * count
    if len(names) != count:
        raise SystemdSocketError(f"LISTEN_FDNAMES has {len(names)} names for LISTEN_FDS={count}")
    chosen: list[socket.socket] = []
    for offset, fd_name in enumerate(names):
        fd = LISTEN_FDS_START + offset
        if name is not None and fd_name != name:
            continue
        chosen.append(_adopt(fd))
    return chosen


def _adopt(fd: int) -> socket.socket:
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        return socket.socket(fileno=fd)
    except OSError as exc:
        raise SystemdSocketError(f"passed file descriptor {fd} is not a usable socket: {exc}") from exc


def environ_without_listen(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without the socket-activation variables, for child processes."""
    return {k: v for k, v in environ.items() if k not in LISTEN_VARIABLES}


__all__ = [
    "LISTEN_FDS_START",
    "LISTEN_VARIABLES",
    "SystemdSocketError",
    "environ_without_listen",
    "sockets_from_systemd",
]
