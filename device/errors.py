"""The root of every domain error the agent raises.

Every error that crosses a module boundary is a :class:`DeviceError` with a
stable, machine-readable ``code`` (``snake_case``, documented in
``docs/errors.md``).  Log lines, reply events and HTTP errors carry that code,
so operators and client software can react to it without parsing messages.
"""

from __future__ import annotations


class DeviceError(Exception):
    """A failure with a stable ``code`` and a one-line human ``message``."""

    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class UsageError(DeviceError):
    """The command line asks for something impossible; the CLI exits 2 (a usage error), not 1."""

    code = "usage_error"
