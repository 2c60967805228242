"""RelayLink publishing side: only the ledger outbox, same signed event, acks, outages, refusals, order,
priorities, several publishes in flight."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from nostr_sdk import Event, Filter, Keys, Kind

from device.ledger import Ledger, OutboxEvent, OutboxPriority
from device.nostr_events import EventSigner, SignedEvent
from device.protocol import KIND, Transaction
from device.relay import Backoff, EmbeddedRelay
from device.state import LinkStatus
from tests.fixtures.relay import (
    P_TAG,
    S_TAG,
    SESSION,
    ScriptedRelay,
    free_port,
    peer,
    running_link,
    wait_for,
)
from tests.fixtures.relay import LogRecords as _LogRecords

USER = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"


def _signed(machine: str, n: int, keys: Keys | None = None) -> list[SignedEvent]:
    signer = EventSigner(keys or Keys.generate(), session=SESSION, machine_pubkey=machine)
    return [signer.sign(Transaction(user=USER, tokens=i + 1)) for i in range(n)]


def _pending(ledger: Ledger) -> list[str]:
    return [row.event_id for row in ledger.pending_outbox()]


def _acked_by(path: Path, event_id: str) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT acked_by FROM outbox WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else row[0]


def _attempts(ledger: Ledger, event_id: str) -> int:
    return next(r.attempts for r in ledger.pending_outbox() if r.event_id == event_id)


async def test_enqueued_event_is_published_verbatim_and_acked(
    embedded_relay: str, ledger: Ledger, machine: str, tmp_path: Path
) -> None:
    (signed,) = _signed(machine, 1)
    ledger.enqueue(signed.outbox())
    async with running_link([embedded_relay], ledger, machine) as t:
        t.link.notify_outbox()
        await wait_for(lambda: not _pending(ledger), what="the ack")
        async with peer(embedded_relay) as observer:
            stored = await observer.fetch_ids([signed.event_id])
        assert json.loads(stored[signed.event_id].as_json()) == json.loads(signed.event_json)  # not re-signed
        assert _acked_by(tmp_path / "ledger.sqlite3", signed.event_id) == embedded_relay
        # The device's own events match its subscription, so they come back to the consumer too:
        # the consumer must recognise and skip them (they are not Requests).
        await t.wait_events(1)
        assert t.consumer.events[0].event_id == signed.event_id


async def test_outbox_waits_while_every_relay_is_down_and_goes_out_when_one_returns(
    ledger: Ledger, machine: str
) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    early, late = _signed(machine, 2)
    ledger.enqueue(early.outbox())
    async with running_link([url], ledger, machine) as t:
        # 1. never connected yet
        t.link.notify_outbox()
        await asyncio.sleep(0.4)
        assert _pending(ledger) == [early.event_id]
        async with EmbeddedRelay(port=port):
            await wait_for(lambda: not _pending(ledger), what="the first ack")
        # 2. connected, then the relay went away
        await t.wait_state(LinkStatus.BACKING_OFF)
        ledger.enqueue(late.outbox())
        t.link.notify_outbox()
        await asyncio.sleep(0.4)
        assert _pending(ledger) == [late.event_id]
        async with EmbeddedRelay(port=port) as relay:  # a fresh relay on the same port (memory: empty)
            await wait_for(lambda: not _pending(ledger), what="the ack after the outage")
            async with peer(relay.url) as observer:
                assert set(await observer.fetch_ids([late.event_id])) == {late.event_id}


async def test_a_relay_that_already_has_the_event_counts_as_an_ack(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    (signed,) = _signed(machine, 1)
    async with peer(embedded_relay) as other:  # e.g. published before a crash, ack never stored
        await other.publish(Event.from_json(signed.event_json))
    ledger.enqueue(signed.outbox())
    async with running_link([embedded_relay], ledger, machine) as t:
        t.link.notify_outbox()
        await wait_for(lambda: not _pending(ledger), what="the duplicate ack")


async def test_ok_false_with_a_duplicate_message_counts_as_an_ack(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str, tmp_path: Path
) -> None:
    scripted_relay.answer = lambda _e: (False, "duplicate: already have this event")
    (signed,) = _signed(machine, 1)
    ledger.enqueue(signed.outbox())
    async with running_link([scripted_relay.url], ledger, machine) as t:
        t.link.notify_outbox()
        await wait_for(lambda: not _pending(ledger), what="the ack")
    assert _acked_by(tmp_path / "ledger.sqlite3", signed.event_id) == scripted_relay.url
    assert len(scripted_relay.published) == 1


async def test_events_go_out_in_the_order_they_were_stored(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    events = _signed(machine, 12)
    for signed in events:
        ledger.enqueue(signed.outbox())
    async with peer(embedded_relay) as observer:
        await observer.watch(Filter().kind(Kind(KIND)).custom_tag(S_TAG, SESSION).custom_tag(P_TAG, machine))
        async with running_link([embedded_relay], ledger, machine) as t:
            t.link.notify_outbox()
            await wait_for(lambda: len(observer.received) == 12, what="12 events at the observer")
        assert [str(e.id().to_hex()) for e in observer.received] == [s.event_id for s in events]


async def test_a_refused_event_is_retried_less_often_and_does_not_block_the_others(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str, relay_log: _LogRecords
) -> None:
    first, refused, third, fourth = _signed(machine, 4)
    scripted_relay.answer = lambda e: (
        (False, "blocked: not on the list") if e["id"] == refused.event_id else (True, "")
    )
    for signed in (first, refused, third, fourth):
        ledger.enqueue(signed.outbox())
    slow = Backoff(initial=0.6, factor=1.0, cap=0.6, jitter=0.0)
    async with running_link([scripted_relay.url], ledger, machine, refused_backoff=slow) as t:
        t.link.notify_outbox()
        await wait_for(lambda: _pending(ledger) == [refused.event_id], what="the others acked")
        sent = [e["id"] for e in scripted_relay.published]
        assert sent[:4] == [first.event_id, refused.event_id, third.event_id, fourth.event_id]
        await asyncio.sleep(0.3)
        assert sent.count(refused.event_id) == 1 == _attempts(ledger, refused.event_id)  # not hammered
        await wait_for(lambda: _attempts(ledger, refused.event_id) >= 2, what="a later retry")
        # once the relay accepts it, it goes out like any other
        scripted_relay.answer = lambda _e: (True, "")
        await wait_for(lambda: not _pending(ledger), within=3, what="the refused event acked")
    assert "relay_publish_refused" in relay_log.codes()


async def test_with_one_publish_in_flight_a_transient_failure_keeps_order_until_the_event_looks_stuck(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str, relay_log: _LogRecords
) -> None:
    head, behind = _signed(machine, 2)
    scripted_relay.answer = lambda e: (
        (False, "error: database busy") if e["id"] == head.event_id else (True, "")
    )
    ledger.enqueue(head.outbox())
    ledger.enqueue(behind.outbox())
    async with running_link([scripted_relay.url], ledger, machine, stuck_after=3, publish_window=1) as t:
        t.link.notify_outbox()
        await wait_for(lambda: _pending(ledger) == [head.event_id], what="the event behind acked")
        sent = [e["id"] for e in scripted_relay.published]
        assert sent[:4] == [head.event_id] * 3 + [behind.event_id]
    assert "relay_publish_failed" in relay_log.codes()
    assert "relay_publish_refused" in relay_log.codes()


async def test_a_transient_failure_does_not_hold_back_the_refusals_in_flight_beside_it(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str
) -> None:
    head, *behind = _signed(machine, 3)
    scripted_relay.answer = lambda e: (
        (False, "error: database busy") if e["id"] == head.event_id else (True, "")
    )
    for signed in (head, *behind):
        ledger.enqueue(signed.outbox(OutboxPriority.LOW))
    async with running_link([scripted_relay.url], ledger, machine, stuck_after=3) as t:
        t.link.notify_outbox()
        await wait_for(lambda: _pending(ledger) == [head.event_id], what="the events behind acked")
        await wait_for(lambda: _attempts(ledger, head.event_id) >= 3, what="the head retried")
    sent = [e["id"] for e in scripted_relay.published]
    assert sent[:3] == [head.event_id, *(s.event_id for s in behind)]  # started in stored order


async def test_refusals_go_out_several_at_once_and_grants_one_at_a_time_in_order(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str
) -> None:
    scripted_relay.ok_delay = 0.2
    refusals = _signed(machine, 12)
    for signed in refusals:
        ledger.enqueue(signed.outbox(OutboxPriority.LOW))
    async with running_link([scripted_relay.url], ledger, machine, publish_window=4) as t:
        t.link.notify_outbox()
        await wait_for(lambda: not _pending(ledger), what="all 12 acked")
        assert scripted_relay.most_unanswered == 4
        grant = _signed(machine, 3)
        scripted_relay.most_unanswered = 0
        ledger.grant("req-1", USER, 7, outbox=[s.outbox() for s in grant])
        t.link.notify_outbox()
        await wait_for(lambda: not _pending(ledger), what="the grant acked")
    assert scripted_relay.most_unanswered == 1
    assert [e["id"] for e in scripted_relay.published[-3:]] == [s.event_id for s in grant]


async def test_grants_and_debits_go_out_before_refusals_stored_earlier(
    scripted_relay: ScriptedRelay, ledger: Ledger, machine: str
) -> None:
    *refusals, grant = _signed(machine, 4)
    for signed in refusals:
        ledger.enqueue(signed.outbox(OutboxPriority.LOW))
    ledger.enqueue(grant.outbox())
    async with running_link([scripted_relay.url], ledger, machine, publish_window=1) as t:
        t.link.notify_outbox()
        await wait_for(lambda: not _pending(ledger), what="all acked")
    assert [e["id"] for e in scripted_relay.published] == [grant.event_id, *(s.event_id for s in refusals)]


async def test_a_corrupt_outbox_row_is_set_aside_and_the_queue_goes_on(
    embedded_relay: str, ledger: Ledger, machine: str, relay_log: _LogRecords
) -> None:
    broken, fine = _signed(machine, 2)
    tampered = json.loads(broken.event_json)
    tampered["content"] = tampered["content"].replace("1", "9")
    ledger.enqueue(OutboxEvent(event_id=broken.event_id, event_json=json.dumps(tampered)))
    ledger.enqueue(fine.outbox())
    async with running_link([embedded_relay], ledger, machine) as t:
        t.link.notify_outbox()
        await wait_for(lambda: _pending(ledger) == [broken.event_id], what="the good row acked")
    assert "relay_outbox_invalid" in relay_log.codes()


async def test_notify_outbox_works_from_another_thread(
    embedded_relay: str, ledger: Ledger, machine: str
) -> None:
    (signed,) = _signed(machine, 1)
    async with running_link([embedded_relay], ledger, machine, probe_interval=30.0) as t:
        await t.wait_state(LinkStatus.READY)
        await asyncio.sleep(0.1)  # the publisher's first pass found nothing and now idles for 30 s
        await asyncio.to_thread(ledger.enqueue, signed.outbox())
        await asyncio.to_thread(t.link.notify_outbox)
        await wait_for(lambda: not _pending(ledger), within=2, what="the ack")
