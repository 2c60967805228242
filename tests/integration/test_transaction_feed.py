"""Reading Transaction events back from a real relay: trusted authors only, all pages."""

from __future__ import annotations

import pytest
from nostr_sdk import Event, Keys

from device.nostr_events import EventSigner
from device.protocol import Transaction, pay_reference_tag
from device.wallet.transaction_feed import FeedError, fetch_transactions, token_total
from tests.fixtures.relay import peer

SESSION = "dephy-dsproxy-controller"
USER = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
OTHER_USER = "ED8s9pa1X4upkCCTk5HEkmCnGGAs8Ymm4HbyqP53pHcb"


async def publish(url: str, events: list[Event]) -> None:
    async with peer(url) as user:
        for event in events:
            await user.publish(event)


def signer(keys: Keys, machine: str, session: str = SESSION, at: int | None = None) -> EventSigner:
    return EventSigner(keys, session=session, machine_pubkey=machine, clock=(lambda: at) if at else None)


async def test_only_device_and_trusted_authors_count(embedded_relay: str) -> None:
    device, trusted, stranger, machine = Keys.generate(), Keys.generate(), Keys.generate(), "ab" * 32
    events = [
        signer(device, machine).sign(Transaction(user=USER, tokens=100)),
        signer(trusted, machine).sign(Transaction(user=USER, tokens=-30)),
        signer(stranger, machine).sign(Transaction(user=USER, tokens=1_000_000)),
    ]
    await publish(embedded_relay, [Event.from_json(e.event_json) for e in events])
    records = await fetch_transactions(
        [embedded_relay],
        authors=[device.public_key().to_hex(), trusted.public_key().to_hex()],
        session=SESSION,
        machine=machine,
    )
    assert sorted(r.tokens for r in records) == [-30, 100]


async def test_other_machines_sessions_and_users_are_filtered_out(embedded_relay: str) -> None:
    device, machine = Keys.generate(), "ab" * 32
    author = [device.public_key().to_hex()]
    events = [
        signer(device, machine).sign(Transaction(user=USER, tokens=7)),
        signer(device, "cd" * 32).sign(Transaction(user=USER, tokens=8)),
        signer(device, machine, session="other").sign(Transaction(user=USER, tokens=9)),
        signer(device, machine).sign(Transaction(user=OTHER_USER, tokens=10)),
    ]
    await publish(embedded_relay, [Event.from_json(e.event_json) for e in events])
    records = await fetch_transactions(
        [embedded_relay], authors=author, session=SESSION, machine=machine, user=USER
    )
    assert [r.tokens for r in records] == [7]


async def test_history_longer_than_one_relay_page_is_read_completely(embedded_relay: str) -> None:
    device, machine = Keys.generate(), "ab" * 32
    base = 1_760_000_000
    events = [
        Event.from_json(
            signer(device, machine, at=base + i // 3).sign(Transaction(user=USER, tokens=i + 1)).event_json
        )
        for i in range(1200)
    ]
    await publish(embedded_relay, events)
    records = await fetch_transactions(
        [embedded_relay], authors=[device.public_key().to_hex()], session=SESSION, machine=machine
    )
    assert len(records) == 1200
    assert sum(r.tokens for r in records) == sum(range(1, 1201))


async def test_unreachable_relay_is_a_feed_error() -> None:
    with pytest.raises(FeedError) as err:
        await fetch_transactions(
            ["ws://127.0.0.1:9"], authors=["ab" * 32], session=SESSION, machine="ab" * 32
        )
    assert err.value.code == "relay_unreachable"


async def test_a_grant_announced_twice_counts_once_and_names_its_pay(embedded_relay: str) -> None:
    device, machine = Keys.generate(), "ab" * 32
    pay = "5" * 88
    grant, names_pay = Transaction(user=USER, tokens=50), [pay_reference_tag("5" * 88)]
    events = [
        signer(device, machine, at=100).sign(grant, extra_tags=names_pay),
        signer(device, machine, at=200).sign(grant, extra_tags=names_pay),  # announced again
        signer(device, machine, at=300).sign(Transaction(user=USER, tokens=-20)),
    ]
    await publish(embedded_relay, [Event.from_json(e.event_json) for e in events])
    records = await fetch_transactions(
        [embedded_relay], authors=[device.public_key().to_hex()], session=SESSION, machine=machine
    )
    assert [r.pay_signature for r in records] == [pay, pay, None]
    assert token_total(records) == 30  # the re-announcement (a restored ledger's) is the same grant
