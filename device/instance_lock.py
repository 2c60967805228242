"""One agent per state directory: an exclusive ``flock`` on ``state_dir/agent.lock``.

``xephy-device run`` takes the lock before it starts anything (keys, ledger, relay,
chain, socket), so a second ``run`` on the same directory fails at once with
``agent_already_running`` and touches nothing.  The kernel drops the lock when the
process exits, even on ``kill -9``: a stale file never blocks a restart.  The file
holds the owner's pid, for the error message only; the lock itself is the flock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Final

from device.errors import DeviceError

__all__ = ["LOCK_FILE", "AgentAlreadyRunning", "InstanceLock"]

LOCK_FILE: Final = "agent.lock"


class AgentAlreadyRunning(DeviceError):
    """Another process holds the state directory's lock."""

    code = "agent_already_running"


class InstanceLock:
    """An exclusive, non-blocking lock on a state directory; ``with InstanceLock.acquire(dir): …``."""

    def __init__(self, path: Path, fd: int) -> None:
        """Use :meth:`acquire`."""
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> InstanceLock:
        """Take the lock or raise :class:`AgentAlreadyRunning` (nothing else is created or changed)."""
        path = state_dir / LOCK_FILE
        writable = True
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # A read-only state directory (a remounted card) still gets one agent, which then serves
            # read-only (chats refused ``ledger_unavailable``): an existing lock file can be locked unwritten.
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                writable = False
            except OSError:
                raise DeviceError(
                    f"cannot create the lock file in {state_dir}: {exc}", code="state_dir_unusable"
                ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            who = f"pid {owner}" if owner else "another process"
            raise AgentAlreadyRunning(
                f"{who} is already running an agent on {state_dir} (lock {path})"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise DeviceError(f"cannot lock {path}: {exc}", code="state_dir_unusable") from exc
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @staticmethod
    def holder(state_dir: Path) -> int | None:
        """The pid holding ``state_dir``'s lock, or None when no process holds it."""
        try:
            fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd) or -1
        finally:
            os.close(fd)
        return None

    def release(self) -> None:
        """Drop the lock (the file stays; its content is stale from now on)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_owner(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
