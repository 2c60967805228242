"""One relay's catch-up as a state machine: paging backwards, delivery order, cursor holds, interruptions.

No sockets and no sleeps: the relay and the consumer are the recording fakes of tests/fixtures/catchup.py;
the cursor keeper is the real one.  tests/integration/test_relay_link.py runs the same machine inside
RelayLink against real relays.
"""

from __future__ import annotations

import pytest

from device.relay.catchup import CatchupState
from tests.fixtures.catchup import NOW, CatchupRig, wire
from tests.fixtures.relay import LogRecords

BASE = NOW - 100
SINCE = BASE - 600


@pytest.fixture
def rig() -> CatchupRig:
    return CatchupRig()


# ------------------------------------------------------------------------------------------ order


async def test_stored_events_are_handed_over_oldest_first_then_live_ones_as_they_arrive(
    rig: CatchupRig,
) -> None:
    assert rig.catchup.state is CatchupState.IDLE
    await rig.subscribe("xephy-1")
    assert rig.catchup.state is CatchupState.PAGING
    await rig.catchup.event("xephy-1", wire(3, BASE - 10))
    await rig.catchup.event("xephy-1", wire(1, BASE - 30))
    assert rig.delivered == []  # nothing before EOSE: the backlog must be complete and ordered first
    await rig.catchup.end_of_stored("xephy-1")
    assert rig.requests == [("xephy-1.2", SINCE, BASE - 30)]  # maybe the relay capped the answer
    assert rig.delivered == []
    await rig.page("xephy-1.2")  # nothing older: the backlog is complete
    assert rig.delivered == [1, 3]
    assert rig.catchup.state is CatchupState.LIVE
    await rig.catchup.event("xephy-1", wire(9, NOW))
    await rig.catchup.event("xephy-1", wire(8, NOW - 1))
    assert rig.delivered == [1, 3, 9, 8]


async def test_events_of_one_second_are_ordered_by_id_and_repeats_in_the_backlog_count_once(
    rig: CatchupRig,
) -> None:
    await rig.subscribe("xephy-1")
    await rig.page("xephy-1", wire(0xB, BASE), wire(0xA, BASE), wire(0xB, BASE))
    await rig.page("xephy-1.2", wire(0xA, BASE))
    assert rig.delivered == [0xA, 0xB]


async def test_events_of_a_subscription_that_is_not_ours_are_ignored(rig: CatchupRig) -> None:
    await rig.catchup.event("xephy-1", wire(1, BASE))  # not subscribed yet
    await rig.subscribe("xephy-2")
    await rig.page("xephy-2")
    await rig.catchup.event("xephy-1", wire(2, NOW))  # an older subscription's late event
    await rig.catchup.event("other", wire(3, NOW))
    assert rig.delivered == []


# ------------------------------------------------------------------------------------------ pager


async def test_while_a_page_brings_older_events_the_next_older_page_is_asked_for(
    rig: CatchupRig,
) -> None:
    await rig.subscribe("xephy-1")
    await rig.page("xephy-1", wire(5, BASE - 1), wire(6, BASE - 2), wire(7, BASE - 3))
    assert rig.requests == [("xephy-1.2", SINCE, BASE - 3)]  # same since, until the oldest so far
    assert rig.delivered == []
    await rig.page("xephy-1.2", wire(7, BASE - 3), wire(3, BASE - 40), wire(4, BASE - 50))
    assert rig.closes == ["xephy-1.2"]  # a finished page is closed; the subscription stays open
    assert rig.requests[-1] == ("xephy-1.3", SINCE, BASE - 50)
    await rig.page("xephy-1.3", wire(4, BASE - 50))  # nothing older: the backlog is complete
    assert rig.catchup.pages == 3
    assert rig.delivered == [4, 3, 7, 6, 5]
    assert rig.closes == ["xephy-1.2", "xephy-1.3"]
    assert rig.catchup.state is CatchupState.LIVE


async def test_paging_stops_at_the_subscriptions_since(rig: CatchupRig) -> None:
    await rig.subscribe("xephy-1")
    await rig.page("xephy-1", wire(1, SINCE), wire(2, SINCE + 1))
    assert rig.requests == []
    assert rig.delivered == [1, 2]


async def test_a_full_page_that_brings_nothing_older_ends_the_catch_up_with_a_warning(
    rig: CatchupRig, relay_log: LogRecords
) -> None:
    await rig.subscribe("xephy-1")
    await rig.page("xephy-1", wire(1, BASE), wire(2, BASE), wire(3, BASE))
    await rig.page("xephy-1.2", wire(1, BASE), wire(2, BASE), wire(3, BASE))  # a relay ignoring `until`
    assert len(rig.requests) == 1
    assert rig.delivered == [1, 2, 3]
    assert "relay_catchup_incomplete" in relay_log.codes()


async def test_the_number_of_pages_is_bounded() -> None:
    rig = CatchupRig(max_pages=2)
    await rig.subscribe("xephy-1")
    await rig.page("xephy-1", wire(1, BASE))
    await rig.page("xephy-1.2", wire(2, BASE - 1))  # still older, but the second page is the last
    assert [page for page, _, _ in rig.requests] == ["xephy-1.2"]
    assert rig.delivered == [2, 1]


async def test_a_closed_page_hands_over_what_arrived(rig: CatchupRig, relay_log: LogRecords) -> None:
    await rig.subscribe("xephy-1")
    await rig.page("xephy-1", wire(1, BASE))
    await rig.catchup.event("xephy-1.2", wire(2, BASE - 5))
    await rig.catchup.closed("xephy-1.2", "rate-limited: slow down")
    assert rig.delivered == [2, 1]
    assert rig.refused == []  # the subscription itself is still fine
    assert "relay_catchup_incomplete" in relay_log.codes()


async def test_a_closed_subscription_is_a_refusal_of_the_relay(
    rig: CatchupRig, relay_log: LogRecords
) -> None:
    await rig.subscribe("xephy-1")
    await rig.catchup.closed("xephy-1", "auth-required: sign in")
    assert rig.refused == ["subscription closed: auth-required: sign in"]
    assert "relay_subscribe_refused" in relay_log.codes()


# ------------------------------------------------------------------------------------------ cursor


async def test_the_cursor_is_held_at_the_base_while_paging_so_another_relay_cannot_move_it_past(
    rig: CatchupRig,
) -> None:
    await rig.subscribe("xephy-1", base=BASE)
    await rig.catchup.event("xephy-1", wire(1, BASE - 20))
    other = rig.machine("relay-b")
    await other.subscribed("b-1", since=SINCE, hold=rig.cursor.hold(BASE))
    await other.end_of_stored("b-1")
    await other.event("b-1", wire(9, NOW - 1))  # live on relay b while relay a is still paging
    assert rig.delivered == [9]
    assert rig.stored == [BASE]  # not NOW - 1: relay a's backlog below it is not handled yet
    await rig.catchup.end_of_stored("xephy-1")
    await rig.page("xephy-1.2")
    assert rig.delivered == [9, 1]
    assert rig.stored == [BASE, NOW - 1]
    assert rig.cursor.holds == ()


async def test_during_the_hand_over_the_hold_moves_to_each_event(rig: CatchupRig) -> None:
    await rig.subscribe("xephy-1", base=BASE)
    await rig.page("xephy-1", wire(1, BASE - 30), wire(2, BASE - 20), wire(3, BASE - 10))
    await rig.page("xephy-1.2")
    # the catch-up's hold and the event's own hold, both at the event being handled
    assert rig.holds_while_handling == [
        (BASE - 30, BASE - 30),
        (BASE - 20, BASE - 20),
        (BASE - 10, BASE - 10),
    ]
    assert rig.stored == [BASE - 30, BASE - 20, BASE - 10]


async def test_a_lost_connection_drops_the_unfinished_catch_up_and_its_hold(
    rig: CatchupRig, relay_log: LogRecords
) -> None:
    await rig.subscribe("xephy-1", base=BASE)
    await rig.catchup.event("xephy-1", wire(5, BASE - 1))  # the newest stored events arrive first
    rig.catchup.connection_lost()
    assert rig.catchup.state is CatchupState.IDLE
    assert rig.cursor.holds == ()
    assert rig.delivered == []  # delivering them alone could move the cursor past older ones
    assert "relay_catchup_incomplete" in relay_log.codes()
    await rig.catchup.end_of_stored("xephy-1")
    await rig.catchup.event("xephy-1", wire(6, NOW))
    assert rig.delivered == []
    await rig.subscribe("xephy-2", base=BASE)  # the next subscription asks again
    await rig.page("xephy-2", wire(4, BASE - 2), wire(5, BASE - 1))
    await rig.page("xephy-2.2")
    assert rig.delivered == [4, 5]


async def test_a_new_subscription_releases_the_previous_hold_and_closes_the_previous_subscription(
    rig: CatchupRig,
) -> None:
    await rig.subscribe("xephy-1", base=BASE)
    await rig.subscribe("xephy-2", base=BASE + 10)
    assert rig.closes == ["xephy-1"]
    assert rig.cursor.holds == (BASE + 10,)
    await rig.page("xephy-2")
    assert rig.cursor.holds == ()


async def test_a_stop_during_the_hand_over_hands_nothing_more_over_and_keeps_the_hold(
    rig: CatchupRig,
) -> None:
    rig.on_deliver.append(rig.catchup.stop)  # the link stops while the first event is being handled
    await rig.subscribe("xephy-1", base=BASE)
    await rig.page("xephy-1", wire(1, BASE - 30), wire(2, BASE - 20))
    await rig.page("xephy-1.2")
    assert rig.delivered == [1]
    assert rig.catchup.state is CatchupState.STOPPED
    assert rig.cursor.holds == (BASE - 30,)  # event 2 was not handled: the cursor may not pass it
    await rig.catchup.event("xephy-1", wire(3, NOW))
    assert rig.delivered == [1]
