"""The relay cursor: forward only, never past now, never past an event still being handled."""

from __future__ import annotations

from tests.fixtures.catchup import NOW, CatchupRig
from tests.fixtures.relay import LogRecords


async def test_nothing_is_stored_before_an_event_was_handled() -> None:
    rig = CatchupRig()
    await rig.cursor.advance()
    await rig.cursor.release(rig.cursor.hold(NOW - 5))
    assert rig.stored == []


async def test_the_cursor_follows_the_newest_handled_event_forward_only() -> None:
    rig = CatchupRig(written=NOW - 50)
    await rig.cursor.handled(rig.cursor.hold(NOW - 60), NOW - 60)  # older than the stored cursor
    await rig.cursor.handled(rig.cursor.hold(NOW - 10), NOW - 10)
    await rig.cursor.handled(rig.cursor.hold(NOW - 20), NOW - 20)  # handled late: no step back
    assert rig.stored == [NOW - 10]
    assert rig.cursor.written == NOW - 10


async def test_an_event_dated_in_the_future_moves_the_cursor_only_to_now() -> None:
    rig = CatchupRig()
    await rig.cursor.handled(rig.cursor.hold(NOW + 3600), NOW + 3600)
    assert rig.stored == [NOW]


async def test_a_hold_keeps_the_cursor_below_it_until_released() -> None:
    rig = CatchupRig()
    open_event = rig.cursor.hold(NOW - 30)  # still being handled elsewhere
    await rig.cursor.handled(rig.cursor.hold(NOW - 10), NOW - 10)
    assert rig.stored == [NOW - 30]
    rig.cursor.move(open_event, NOW - 20)
    await rig.cursor.advance()
    assert rig.stored == [NOW - 30, NOW - 20]
    await rig.cursor.release(open_event)
    assert rig.stored == [NOW - 30, NOW - 20, NOW - 10]


async def test_a_dropped_hold_takes_effect_at_the_next_advance() -> None:
    rig = CatchupRig()
    failed = rig.cursor.hold(NOW - 30)
    await rig.cursor.handled(rig.cursor.hold(NOW - 10), NOW - 10)
    rig.cursor.drop(failed)
    assert rig.stored == [NOW - 30]
    await rig.cursor.advance()
    assert rig.stored == [NOW - 30, NOW - 10]


async def test_a_failed_write_is_logged_and_retried_at_the_next_advance(relay_log: LogRecords) -> None:
    rig = CatchupRig(store_fails=True)
    await rig.cursor.handled(rig.cursor.hold(NOW - 10), NOW - 10)
    assert rig.stored == [] and rig.cursor.written is None
    assert "relay_cursor_failed" in relay_log.codes()
    rig.store_fails = False
    await rig.cursor.advance()
    assert rig.stored == [NOW - 10]
