"""Outgoing events: signed once, tagged s/p, content exactly the wire encoding."""

from __future__ import annotations

import json

import pytest
from nostr_sdk import Keys

from device.nostr_events import EventSigner, parse_signed_event
from device.protocol import KIND, Transaction, decode_message

MACHINE = "d041ea9854f2117b82452457c4e6d6593a96524027cd4032d2f40046deb78d93"
USER = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"


@pytest.fixture
def signer() -> EventSigner:
    return EventSigner(Keys.generate(), session="dephy-dsproxy-controller", machine_pubkey=MACHINE)


def test_signed_event_carries_session_and_machine_tags_in_order(signer: EventSigner) -> None:
    event = json.loads(signer.sign(Transaction(user=USER, tokens=5_000_000)).event_json)
    assert event["kind"] == KIND
    assert event["tags"] == [["s", "dephy-dsproxy-controller"], ["p", MACHINE]]


def test_signed_event_content_decodes_to_the_message(signer: EventSigner) -> None:
    signed = signer.sign(Transaction(user=USER, tokens=-1234))
    assert decode_message(json.loads(signed.event_json)["content"]) == Transaction(user=USER, tokens=-1234)


def test_signed_event_verifies_and_is_authored_by_the_device(signer: EventSigner) -> None:
    signed = signer.sign(Transaction(user=USER, tokens=1))
    event = parse_signed_event(signed.event_json)
    assert event.id().to_hex() == signed.event_id
    assert event.author().to_hex() == signer.author == signed.author


def test_outbox_row_holds_the_same_id_and_json(signer: EventSigner) -> None:
    signed = signer.sign(Transaction(user=USER, tokens=1))
    row = signed.outbox()
    assert (row.event_id, row.event_json) == (signed.event_id, signed.event_json)


def test_injected_clock_sets_created_at(signer: EventSigner) -> None:
    fixed = EventSigner(Keys.generate(), session="s", machine_pubkey=MACHINE, clock=lambda: 1_741_234_000)
    assert fixed.sign(Transaction(user=USER, tokens=1)).created_at == 1_741_234_000


def test_tampered_event_json_is_refused(signer: EventSigner) -> None:
    event = json.loads(signer.sign(Transaction(user=USER, tokens=1)).event_json)
    event["content"] = event["content"].replace("1", "2")
    with pytest.raises(ValueError, match="verify"):
        parse_signed_event(json.dumps(event))


def test_equal_messages_in_the_same_second_get_distinct_ids() -> None:
    fixed = EventSigner(Keys.generate(), session="s", machine_pubkey=MACHINE, clock=lambda: 1_741_234_000)
    debit = Transaction(user=USER, tokens=-42)
    ids = {fixed.sign(debit).event_id for _ in range(5)}
    assert len(ids) == 5


def test_a_repeated_message_is_stamped_one_second_after_the_previous() -> None:
    fixed = EventSigner(Keys.generate(), session="s", machine_pubkey=MACHINE, clock=lambda: 1_741_234_000)
    stamps = [fixed.sign(Transaction(user=USER, tokens=-1)).created_at for _ in range(3)]
    assert stamps == [1_741_234_000, 1_741_234_001, 1_741_234_002]


def test_different_messages_keep_the_clock_time() -> None:
    fixed = EventSigner(Keys.generate(), session="s", machine_pubkey=MACHINE, clock=lambda: 1_741_234_000)
    stamps = {fixed.sign(Transaction(user=USER, tokens=-n)).created_at for n in range(1, 4)}
    assert stamps == {1_741_234_000}
