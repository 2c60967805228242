"""Refusal rate limits (token buckets per author and overall) and the drop log's once-a-minute lines."""

from __future__ import annotations

import logging

import pytest

from device.recharge.drops import DropLog
from device.recharge.refusal_limit import RefusalLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_author_gets_a_burst_of_its_rate_then_one_per_refill() -> None:
    clock = Clock()
    limiter = RefusalLimiter(per_author_per_minute=3, per_minute=100, clock=clock)

    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    clock.now += 20  # a third of a minute refills one
    assert [limiter.allow("a") for _ in range(2)] == [True, False]


def test_the_overall_limit_holds_whatever_the_number_of_authors() -> None:
    limiter = RefusalLimiter(per_author_per_minute=5, per_minute=3, clock=Clock())

    assert [limiter.allow(f"key-{i}") for i in range(5)] == [True, True, True, False, False]


def test_a_refusal_one_bucket_denies_takes_nothing_from_the_other() -> None:
    limiter = RefusalLimiter(per_author_per_minute=1, per_minute=2, clock=Clock())

    assert limiter.allow("a") is True
    assert limiter.allow("a") is False  # a's bucket is empty; the overall one keeps its token
    assert limiter.allow("b") is True


def test_zero_answers_nothing() -> None:
    limiter = RefusalLimiter(per_author_per_minute=0, per_minute=0, clock=Clock())
    assert limiter.allow("a") is False


def test_the_authors_remembered_are_bounded() -> None:
    limiter = RefusalLimiter(per_author_per_minute=1, per_minute=1_000, clock=Clock(), max_authors=2)
    for author in ("a", "b", "c"):
        limiter.allow(author)
    assert limiter.allow("a") is True  # forgotten, so a fresh bucket


def test_drops_are_logged_at_warning_once_a_minute_per_code_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    drops = DropLog(logging.getLogger("test.drops"), clock=clock)
    with caplog.at_level(logging.DEBUG, logger="test.drops"):
        for i in range(5):
            drops.drop(f"ev{i}", "malformed_json", "not JSON")
        drops.drop("ev5", "invalid_field", "bad user")
        clock.now += 61
        drops.drop("ev6", "malformed_json", "not JSON")

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [getattr(r, "code", "") for r in warnings] == ["malformed_json", "invalid_field", "malformed_json"]
    assert "4 more dropped" in warnings[2].getMessage()
