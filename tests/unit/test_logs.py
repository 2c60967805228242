"""Log lines: a code on every line; journald's format under systemd; never glued onto the live status
line; identical lines rate-limited with a count of the ones left out."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.indicators import ConsoleIndicator
from device.logs import CodeFormatter, JournalFormatter, RepeatLimiter, configure_logging, stderr_is_journal
from device.state import DeviceState, StateHub
from tests.fixtures.hardware import PtyDisplay


def record(level: int, message: str, code: str | None = "relay_unreachable") -> logging.LogRecord:
    rec = logging.LogRecord("device.relay", level, __file__, 1, message, None, None)
    if code is not None:
        rec.code = code
    return rec


@pytest.mark.parametrize(
    ("level", "prefix"),
    [(logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"), (logging.ERROR, "<3>"),
     (logging.CRITICAL, "<2>")],
)  # fmt: skip
def test_journal_lines_carry_the_syslog_priority_and_no_timestamp(level: int, prefix: str) -> None:
    line = JournalFormatter().format(record(level, "relay dropped"))
    assert line == f"{prefix}device.relay [relay_unreachable] relay dropped"


def test_every_line_of_a_traceback_keeps_the_priority() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record(logging.ERROR, "failed", code=None)
        rec.exc_info = sys.exc_info()
    lines = JournalFormatter().format(rec).splitlines()
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)
    assert lines[0] == "<3>device.relay [-] failed"


def test_terminal_lines_keep_their_utc_timestamp() -> None:
    line = CodeFormatter().format(record(logging.WARNING, "relay dropped"))
    assert line.endswith("Z WARNING device.relay [relay_unreachable] relay dropped")


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        info = os.fstat(stream.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)
        assert not stderr_is_journal({}, stream)


def test_under_systemd_the_agent_logs_in_the_journals_format(tmp_path: Path) -> None:
    """A process whose stderr is the stream JOURNAL_STREAM names (as systemd sets it up)."""
    path = tmp_path / "journal"
    script = (
        "import logging; from device.logs import configure_logging; configure_logging('info');"
        "logging.getLogger('device.x').warning('careful', extra={'code': 'relay_unreachable'});"
        "logging.getLogger('device.x').info('fine')"
    )
    with path.open("w") as stderr:
        info = os.fstat(stderr.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        subprocess.run([sys.executable, "-c", script], stderr=stderr, env=env, check=True, timeout=60)
    assert path.read_text().splitlines() == [
        "<4>device.x [relay_unreachable] careful",
        "<6>device.x [-] fine",
    ]


@pytest.fixture
def device_logger() -> Iterator[logging.Logger]:
    """The ``device`` logger, restored afterwards (configure_logging replaces its handlers)."""
    logger = logging.getLogger("device")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield logger
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def pty_stream() -> Iterator[tuple[PtyDisplay, object]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    stream = open(slave, "w", closefd=False)  # noqa: SIM115 - closed below
    try:
        yield PtyDisplay(master, slave, os.ttyname(slave)), stream
    finally:
        stream.close()
        os.close(master)
        os.close(slave)


def test_a_log_line_is_never_glued_onto_the_live_status_line(
    pty_stream: tuple[PtyDisplay, object], monkeypatch: pytest.MonkeyPatch, device_logger: logging.Logger
) -> None:
    reader, stream = pty_stream
    monkeypatch.setattr(sys, "stderr", stream)  # log and console share the terminal, as in `make run`
    configure_logging("info", environ={})
    hub = StateHub(DeviceState(started_at=time.time()))
    console = ConsoleIndicator(hub, stream, refresh_seconds=0.05)  # type: ignore[arg-type]
    console.start()
    try:
        reader.drain(0.2)
        logging.getLogger("device.relay").warning("relay dropped", extra={"code": "relay_unreachable"})
        text = reader.drain(0.2).decode()
    finally:
        console.stop()
    _, sep, after = text.partition("\r\x1b[K")  # the live line is erased first …
    assert sep, text
    log_line, newline, rest = after.partition("\n")  # … then the log line alone on its line …
    assert newline and log_line.endswith("WARNING device.relay [relay_unreachable] relay dropped")
    assert "|" not in log_line
    assert rest.startswith("\rConnecting | led slow blink")  # … then the live line again


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def repeated(message: str, code: str = "-") -> logging.LogRecord:
    made = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)
    made.code = code
    return made


def test_identical_lines_are_written_once_per_window_then_counted() -> None:
    clock = Clock()
    limiter = RepeatLimiter(10.0, clock=clock)
    line = "socket.accept() out of system resource: [Errno 24] Too many open files"
    assert limiter.filter(repeated(line)) is True
    assert [limiter.filter(repeated(line)) for _ in range(86_686)] == [False] * 86_686
    assert limiter.filter(repeated("another line")) is True  # other lines are not held back
    clock.now = 15.0
    again = repeated(line)
    assert limiter.filter(again) is True
    assert again.getMessage() == f"{line} [repeated 86686 times in 15 s]"


def test_a_line_repeated_after_the_window_without_repeats_is_unchanged() -> None:
    clock = Clock()
    limiter = RepeatLimiter(10.0, clock=clock)
    assert limiter.filter(repeated("chat settled", "chat_settled")) is True
    clock.now = 11.0
    later = repeated("chat settled", "chat_settled")
    assert limiter.filter(later) is True
    assert later.getMessage() == "chat settled"
