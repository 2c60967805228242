"""The depth rule of the fuzz suite and the adding-up of ``make fuzz-deep``'s shards."""

from __future__ import annotations

import pytest

from tests.fuzz import LONG, Tally, depth_factor, examples_for
from tests.fuzz.summary import table_lines


@pytest.mark.skipif(LONG, reason="long mode adds a floor of examples per target")
def test_a_factor_scales_every_target_and_costly_ones_stop_at_their_cap() -> None:
    assert examples_for(400, factor=1) == 400
    assert examples_for(400, factor=25) == 10_000
    assert examples_for(300, 20_000, factor=25) == 7_500
    assert examples_for(100, 5_000, factor=100) == 5_000
    assert examples_for(150, 10_000, factor=0.5) == 75


def test_the_factor_comes_from_the_environment() -> None:
    assert depth_factor({"XEPHY_FUZZ_FACTOR": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="positive"):
        depth_factor({"XEPHY_FUZZ_FACTOR": "0"})


def test_tallies_of_shards_add_up_in_one_table() -> None:
    first, second = Tally(), Tally()
    first.tried("protocol.decode_message")
    first.refused("protocol.decode_message", "malformed_json")
    second.tried("protocol.decode_message")
    second.accepted("protocol.decode_message")
    second.tried("chat.http")
    second.crash("chat.http", ValueError("boom"))
    combined = Tally()
    combined.add_json(first.to_json())
    combined.add_json(second.to_json())
    message = combined["protocol.decode_message"]
    assert (message.tried, message.accepted, dict(message.refusals)) == (2, 1, {"malformed_json": 1})
    assert combined["chat.http"].crashes == 1
    lines = table_lines(combined)
    assert lines[-1].split()[:4] == ["TOTAL", "3", "1", "1"]
    assert any("first problem: crash: ValueError('boom')" in line for line in lines)
