"""RelayLink receiving against real relays: delivery, checks, catch-up, reconnects, state, handler errors."""

from __future__ import annotations

import asyncio
import json
import time

from nostr_sdk import Keys

from device.ledger import Ledger
from device.relay import Backoff, EmbeddedRelay, IncomingEvent, RelayLink
from device.state import LinkStatus
from tests.fixtures.relay import (
    FAST,
    SESSION,
    Consumer,
    RelayProcess,
    ScriptedRelay,
    event_id,
    free_port,
    make_event,
    peer,
    raw_publish,
    running_link,
    wait_for,
)
from tests.fixtures.relay import LogRecords as _LogRecords


def _now() -> int:
    return int(time.time())


# ------------------------------------------------------------------------------------------ delivery
async def test_matching_event_is_delivered_once_with_its_fields(
    embedded_relay: str, second_embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    user = Keys.generate()
    event = make_event(user, machine=machine, content='{"hello":1}')
    async with running_link([embedded_relay, second_embedded_relay], ledger, machine) as t:
        await t.wait_state(LinkStatus.READY)
        async with peer(embedded_relay) as a, peer(second_embedded_relay) as b:
            await a.publish(event)
            await b.publish(event)  # the same event on both relays
            await a.publish(event)  # and again (the relay answers duplicate)
        await t.wait_events(1)
        await asyncio.sleep(0.3)
        assert t.consumer.ids == [event_id(event)]
        got = t.consumer.events[0]
        assert got.author == user.public_key().to_hex()
        assert got.kind == 1573
        assert got.content == '{"hello":1}'
        assert got.tags == (("s", SESSION), ("p", machine))
        assert got.created_at == event.created_at().as_secs()
        assert got.relay_url in (embedded_relay, second_embedded_relay)


async def test_wrong_session_machine_or_kind_is_not_delivered(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    user = Keys.generate()
    other_machine = Keys.generate().public_key().to_hex()
    foreign = [
        make_event(user, machine=machine, session="dephy-gacha-controller"),
        make_event(user, machine=other_machine),
        make_event(user, machine=machine, kind=1),
    ]
    good = make_event(user, machine=machine, content="good")
    async with running_link([embedded_relay], ledger, machine) as t:
        await t.wait_state(LinkStatus.READY)
        async with peer(embedded_relay) as p:
            for event in [*foreign, good]:
                await p.publish(event)
        await t.wait_events(1)
        await asyncio.sleep(0.3)
        assert t.consumer.ids == [event_id(good)]


async def test_forged_signature_is_refused_and_never_delivered(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    user = Keys.generate()
    forged = json.loads(make_event(user, machine=machine, content="original").as_json())
    forged["content"] = "tampered"  # id no longer matches
    bad_sig = json.loads(make_event(user, machine=machine, content="sig").as_json())
    bad_sig["sig"] = "00" * 64
    good = make_event(user, machine=machine, content="good")
    async with running_link([embedded_relay], ledger, machine) as t:
        await t.wait_state(LinkStatus.READY)
        for bad in (forged, bad_sig):
            ok = await raw_publish(embedded_relay, bad)
            assert ok[2] is False and ok[3].startswith("invalid"), ok
        async with peer(embedded_relay) as p:
            await p.publish(good)
        await t.wait_events(1)
        await asyncio.sleep(0.2)
        assert t.consumer.ids == [event_id(good)]


async def test_a_misbehaving_relay_cannot_push_forged_or_foreign_events(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str, relay_log: _LogRecords
) -> None:
    # This relay ignores the filter and serves everything, as some relay software does for live events.
    user = Keys.generate()
    other_machine = Keys.generate().public_key().to_hex()
    good = make_event(user, machine=machine, content="good")
    forged = json.loads(make_event(user, machine=machine, content="x").as_json())
    forged["content"] = "y"
    scripted_relay.stored = [
        forged,
        json.loads(make_event(user, machine=machine, session="other-session").as_json()),
        json.loads(make_event(user, machine=other_machine).as_json()),
        json.loads(make_event(user, machine=machine, kind=7).as_json()),
        json.loads(
            make_event(
                user, machine=machine, tags=[["s", SESSION], ["p", other_machine], ["p", machine]]
            ).as_json()
        ),
        json.loads(make_event(user, machine=machine, tags=[["p", machine]]).as_json()),
        json.loads(good.as_json()),
    ]
    async with running_link([scripted_relay.url], ledger, machine) as t:
        await t.wait_events(1)
        await asyncio.sleep(0.3)
        assert t.consumer.ids == [event_id(good)]
        # the five well-signed strangers are each logged once, with a stable code
        assert relay_log.codes().count("relay_event_foreign") == 5


async def test_the_consumers_screen_drops_junk_before_delivery(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str
) -> None:
    user = Keys.generate()
    junk = make_event(user, machine=machine, content="junk")
    good = make_event(user, machine=machine, content="good")
    scripted_relay.stored = [json.loads(junk.as_json()), json.loads(good.as_json())]
    screened: list[str] = []

    def screen(event: IncomingEvent) -> bool:
        screened.append(event.content)
        return event.content != "junk"

    async with running_link([scripted_relay.url], ledger, machine, screen=screen) as t:
        await t.wait_events(1)
        await asyncio.sleep(0.3)
        assert t.consumer.ids == [event_id(good)]
    assert sorted(screened) == ["good", "junk"]


# ------------------------------------------------------------------------------------------ catch-up
async def test_events_published_while_stopped_are_delivered_oldest_first(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    now = _now()
    ledger.advance_cursor(now - 60)
    user = Keys.generate()
    newer = make_event(user, machine=machine, created_at=now - 5, content="newer")
    older = make_event(user, machine=machine, created_at=now - 50, content="older")
    too_old = make_event(user, machine=machine, created_at=now - 60 - 700, content="before the overlap")
    async with peer(embedded_relay) as p:
        for event in (newer, older, too_old):
            await p.publish(event)
    async with running_link([embedded_relay], ledger, machine) as t:
        await t.wait_events(2)
        await asyncio.sleep(0.2)
        assert t.consumer.ids == [event_id(older), event_id(newer)]
        await wait_for(lambda: ledger.cursor() == now - 5, what="cursor at the newest handled event")


async def test_catch_up_pages_past_the_relays_per_request_cap(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    # LocalRelay answers a REQ with at most 500 stored events; 620 must still all arrive, in order.
    now = _now()
    ledger.advance_cursor(now - 300)
    user = Keys.generate()
    # two events per second, so pages also meet events that share their boundary second
    events = [
        make_event(user, machine=machine, created_at=now - 590 + i // 2, content=str(i)) for i in range(620)
    ]
    async with peer(embedded_relay) as p:
        await asyncio.gather(*(p.publish(e) for e in events))
    expected = sorted(events, key=lambda e: (e.created_at().as_secs(), event_id(e)))
    async with running_link([embedded_relay], ledger, machine, page_limit=100) as t:
        await t.wait_events(620, within=15)
        assert t.consumer.ids == [event_id(e) for e in expected]
        await wait_for(lambda: ledger.cursor() == now - 590 + 309, what="cursor at the newest event")


async def test_relay_restart_goes_backing_off_then_ready_and_catches_up(
    relay_process: RelayProcess, ledger: Ledger, machine: str, relay_log: _LogRecords
) -> None:
    user = Keys.generate()
    before, while_down, after = (make_event(user, machine=machine, content=c) for c in ("1", "2", "3"))
    # A 1 s reconnect delay leaves time to publish to the restarted relay before the link is back.
    slow = Backoff(initial=1.0, factor=1.0, cap=1.0, jitter=0.0)
    async with running_link([relay_process.url], ledger, machine, backoff=slow) as t:
        await t.wait_state(LinkStatus.READY)
        async with peer(relay_process.url) as p:
            await p.publish(before)
        await t.wait_events(1)

        await relay_process.stop()
        await t.wait_state(LinkStatus.BACKING_OFF)
        await relay_process.start()  # same port, same LMDB directory
        async with peer(relay_process.url) as p:
            await p.publish(while_down)
        await t.wait_state(LinkStatus.READY)
        await t.wait_events(2)
        async with peer(relay_process.url) as p:
            await p.publish(after)
        await t.wait_events(3)
        await asyncio.sleep(0.2)
        # the catch-up after the reconnect also returned `before`: dropped as a repeat
        assert t.consumer.ids == [event_id(e) for e in (before, while_down, after)]
        ready = [i for i, s in enumerate(t.states) if s is LinkStatus.READY]
        assert len(ready) >= 2
        assert LinkStatus.BACKING_OFF in t.states[ready[0] : ready[-1]]
    assert {"relay_unreachable", "relay_reconnected"} <= set(relay_log.codes())
    assert relay_process.exit_codes == [0]


async def test_persistent_relay_delivers_what_was_published_while_the_device_was_off(
    relay_process: RelayProcess, ledger: Ledger, machine: str
) -> None:
    user = Keys.generate()
    now = _now()
    first = make_event(user, machine=machine, created_at=now - 10, content="a")
    second = make_event(user, machine=machine, created_at=now - 5, content="b")
    async with running_link([relay_process.url], ledger, machine) as t:
        await t.wait_state(LinkStatus.READY)
        async with peer(relay_process.url) as p:
            await p.publish(first)
        await t.wait_events(1)
    # device off; an event arrives; the relay is restarted (it keeps its events) before the device is back
    async with peer(relay_process.url) as p:
        await p.publish(second)
    await relay_process.restart()
    async with running_link([relay_process.url], ledger, machine) as t:
        await t.wait_events(2)  # `first` again (the durable dedupe is the consumer's), then `second`
        assert t.consumer.ids == [event_id(first), event_id(second)]


async def test_killed_relay_is_detected_and_new_events_flow_after_it_returns(
    relay_process: RelayProcess, ledger: Ledger, machine: str
) -> None:
    user = Keys.generate()
    async with running_link([relay_process.url], ledger, machine) as t:
        await t.wait_state(LinkStatus.READY)
        await relay_process.kill()
        await t.wait_state(LinkStatus.BACKING_OFF)
        await relay_process.start()
        await t.wait_state(LinkStatus.READY)
        event = make_event(user, machine=machine)
        async with peer(relay_process.url) as p:
            await p.publish(event)
        await t.wait_events(1)
        assert t.consumer.ids == [event_id(event)]


# ---------------------------------------------------------------------------------------- connection
async def test_start_with_a_dead_relay_returns_at_once_and_connects_when_it_appears(
    ledger: Ledger, machine: str
) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    began = time.monotonic()
    async with running_link([url], ledger, machine) as t:
        assert time.monotonic() - began < 0.5
        await wait_for(lambda: t.states.count(LinkStatus.BACKING_OFF) >= 2, what="repeated backoff")
        assert t.states[:3] == [LinkStatus.CONNECTING, LinkStatus.BACKING_OFF, LinkStatus.CONNECTING]
        assert LinkStatus.READY not in t.states
        async with EmbeddedRelay(port=port) as relay:
            await t.wait_state(LinkStatus.READY)
            event = make_event(Keys.generate(), machine=machine)
            async with peer(relay.url) as p:
                await p.publish(event)
            await t.wait_events(1)
    assert t.states[-1] is LinkStatus.STOPPED


async def test_one_dead_relay_of_two_does_not_hold_the_link_back(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    async with running_link([dead, embedded_relay], ledger, machine) as t:
        await t.wait_state(LinkStatus.READY)
        assert t.link.connected_relays == (embedded_relay,)
        event = make_event(Keys.generate(), machine=machine)
        async with peer(embedded_relay) as p:
            await p.publish(event)
        await t.wait_events(1)
        assert t.consumer.events[0].relay_url == embedded_relay


async def test_a_relay_that_stops_answering_is_dropped_by_the_probe(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str, relay_log: _LogRecords
) -> None:
    async with running_link([scripted_relay.url], ledger, machine, probe_timeout=0.3) as t:
        await t.wait_state(LinkStatus.READY)
        scripted_relay.silent = True  # the socket stays open, nothing answers: half-open
        await t.wait_state(LinkStatus.BACKING_OFF)
        assert "relay_unreachable" in relay_log.codes()
        scripted_relay.silent = False
        await t.wait_state(LinkStatus.READY)


async def test_a_relay_that_refuses_the_subscription_is_retried_ever_more_slowly(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str, relay_log: _LogRecords
) -> None:
    scripted_relay.closed = "auth-required: members only"
    async with running_link([scripted_relay.url], ledger, machine) as t:
        await asyncio.sleep(1.5)
        assert "relay_subscribe_refused" in relay_log.codes()
        assert t.link.state is not LinkStatus.READY or not t.link.connected_relays
        # backoff 0.05 s doubling to 0.3 s: a handful of subscribe attempts, not one every 50 ms
        # (liveness probes, which ask for ids [0…0], are not subscribe attempts)
        subscribes = [r for r in scripted_relay.reqs if "ids" not in r[2]]
        assert 2 <= len(subscribes) <= 12
        scripted_relay.closed = None
        await t.wait_state(LinkStatus.READY)
        await asyncio.sleep(0.3)
        assert t.link.state is LinkStatus.READY


async def test_states_are_reported_and_stop_is_clean(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    seen: list[LinkStatus] = []

    def on_state(status: LinkStatus) -> None:
        seen.append(status)
        raise RuntimeError("a faulty indicator must not break the link")

    link = RelayLink(
        [embedded_relay],
        ledger=ledger,
        session=SESSION,
        machine_pubkey=machine,
        on_event=Consumer(),
        on_state=on_state,
        **FAST,
    )
    assert link.state is LinkStatus.STOPPED
    await link.start()
    await wait_for(lambda: link.state is LinkStatus.READY, what="READY")
    await link.stop()
    await link.stop()  # idempotent
    assert seen == [LinkStatus.CONNECTING, LinkStatus.READY, LinkStatus.STOPPED]
    assert link.state is LinkStatus.STOPPED
    # and it can start again
    await link.start()
    await wait_for(lambda: link.state is LinkStatus.READY, what="READY again")
    await link.stop()


async def test_handler_errors_do_not_stop_delivery_and_the_cursor_moves_only_for_handled_events(
    embedded_relay: str, ledger: Ledger, machine: str, relay_log: _LogRecords
) -> None:
    now = _now()
    user = Keys.generate()
    failing = make_event(user, machine=machine, created_at=now - 2, content="boom")
    handled = make_event(user, machine=machine, created_at=now - 20, content="fine")
    consumer = Consumer(fail=lambda e: e.content == "boom")
    async with running_link([embedded_relay], ledger, machine, consumer=consumer) as t:
        await t.wait_state(LinkStatus.READY)
        async with peer(embedded_relay) as p:
            await p.publish(failing)
            await wait_for(lambda: consumer.calls == 1, what="the failing call")
            await p.publish(handled)
        await t.wait_events(1)
        assert t.consumer.ids == [event_id(handled)]
        assert t.link.state is LinkStatus.READY
        await wait_for(lambda: ledger.cursor() == now - 20, what="cursor at the handled event")
        await asyncio.sleep(0.2)
        assert ledger.cursor() == now - 20  # not the failed, newer one
    assert "relay_handler_failed" in relay_log.codes()

    # The cursor stayed behind the failed event, so a restarted link is handed it again.
    retry = Consumer()
    async with running_link([embedded_relay], ledger, machine, consumer=retry) as t:
        await t.wait_events(2)
        assert set(retry.ids) == {event_id(failing), event_id(handled)}
        await wait_for(lambda: ledger.cursor() == now - 2, what="cursor after the retry")


async def test_the_cursor_never_passes_an_event_still_being_handled(
    embedded_relay: str, second_embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    # Relay A holds an older event whose handling is slow; relay B delivers a newer one meanwhile.
    # Were the cursor moved to B's event, a crash now would put A's event outside the next catch-up.
    now = _now()
    ledger.advance_cursor(now - 100)
    user = Keys.generate()
    slow = make_event(user, machine=machine, created_at=now - 50, content="slow")
    fast = make_event(user, machine=machine, created_at=now, content="fast")
    gate = asyncio.Event()
    handled: list[str] = []

    async def consumer(event: IncomingEvent) -> None:
        if event.content == "slow":
            await gate.wait()
        handled.append(event.content)

    async with peer(embedded_relay) as a:
        await a.publish(slow)
    async with running_link([embedded_relay, second_embedded_relay], ledger, machine, on_event=consumer) as t:
        await t.wait_state(LinkStatus.READY)
        await wait_for(lambda: len(t.link.connected_relays) == 2, what="both relays")
        async with peer(second_embedded_relay) as b:
            await b.publish(fast)
        await wait_for(lambda: handled == ["fast"], what="the fast event handled")
        await asyncio.sleep(0.2)
        cursor = ledger.cursor()
        assert cursor is not None and cursor <= now - 50  # held at or below the event in progress
        gate.set()
        await wait_for(lambda: ledger.cursor() == now, what="the cursor once both are handled")


async def test_event_dated_in_the_future_does_not_push_the_cursor_past_now(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    future = _now() + 86_400
    event = make_event(Keys.generate(), machine=machine, created_at=future)
    async with running_link([embedded_relay], ledger, machine) as t:
        await t.wait_state(LinkStatus.READY)
        async with peer(embedded_relay) as p:
            await p.publish(event)
        await t.wait_events(1)
        await wait_for(lambda: ledger.cursor() is not None, what="cursor")
        cursor = ledger.cursor()
        assert cursor is not None and cursor <= _now()
