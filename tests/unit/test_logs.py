"""Log lines: identical lines are rate-limited with a count of the ones left out."""

from __future__ import annotations

import logging

from device.logs import RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(message: str, code: str = "-") -> logging.LogRecord:
    made = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)
    made.code = code
    return made


def test_identical_lines_are_written_once_per_window_then_counted() -> None:
    clock = Clock()
    limiter = RepeatLimiter(10.0, clock=clock)
    line = "socket.accept() out of system resource: [Errno 24] Too many open files"
    assert limiter.filter(record(line)) is True
    assert [limiter.filter(record(line)) for _ in range(86_686)] == [False] * 86_686
    assert limiter.filter(record("another line")) is True  # other lines are not held back
    clock.now = 15.0
    again = record(line)
    assert limiter.filter(again) is True
    assert again.getMessage() == f"{line} [repeated 86686 times in 15 s]"


def test_a_line_repeated_after_the_window_without_repeats_is_unchanged() -> None:
    clock = Clock()
    limiter = RepeatLimiter(10.0, clock=clock)
    assert limiter.filter(record("chat settled", "chat_settled")) is True
    clock.now = 11.0
    later = record("chat settled", "chat_settled")
    assert limiter.filter(later) is True
    assert later.getMessage() == "chat settled"
