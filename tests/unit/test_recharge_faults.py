"""Fault points: inert unless armed through XEPHY_DEVICE_FAULT, and then they kill at that step only."""

from __future__ import annotations

import pytest

from device.recharge import FAULT_ENV, FaultPoints


def test_unset_env_arms_nothing() -> None:
    assert FaultPoints.from_env({}).armed == frozenset()


def test_env_arms_the_named_points() -> None:
    assert FaultPoints.from_env({FAULT_ENV: "after_submit, after_grant"}).armed == {
        "after_submit",
        "after_grant",
    }


def test_an_unknown_point_is_refused() -> None:
    with pytest.raises(ValueError, match="after_lunch"):
        FaultPoints.from_env({FAULT_ENV: "after_lunch"})


def test_an_armed_point_kills_and_others_do_not() -> None:
    kills: list[int] = []
    faults = FaultPoints(["after_landed"], kill=lambda: kills.append(1))
    faults.reached("before_pay")
    faults.reached("after_landed")
    assert kills == [1]
