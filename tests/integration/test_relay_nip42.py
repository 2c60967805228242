"""NIP-42: the device and the user commands against a relay that requires authentication to read and write.

The relay is ``python -m device.relay.serve --nip42 both`` in a subprocess (an authenticator in the test
process risks a segfault at exit).  Without authentication it closes every REQ and refuses every EVENT with
``auth-required:``.
"""

from __future__ import annotations

from datetime import timedelta

from nostr_sdk import Keys, ReqTarget

from device.ledger import Ledger
from device.nostr_events import EventSigner
from device.protocol import DEFAULT_SESSION, Transaction
from device.relay import RelayLink
from device.wallet.recharge import RechargeTarget, recharge
from device.wallet.relay_client import connected_client, machine_filter
from tests.fixtures.recharge import PRICE, TOKENS_PER_LAMPORT, Rig, rig, server
from tests.fixtures.relay import SESSION, LogRecords, make_event, running_link, wait_for

__all__ = ["rig", "server"]  # fixtures used by name below

USER = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"


async def test_the_link_authenticates_with_the_machine_key_to_read_and_to_publish(
    nip42_relay: str, ledger: Ledger, machine: str
) -> None:
    device = Keys.generate()
    reply = EventSigner(device, session=SESSION, machine_pubkey=machine).sign(
        Transaction(user=USER, tokens=5)
    )
    ledger.enqueue(reply.outbox())
    user = Keys.generate()
    request = make_event(user, session=SESSION, machine=machine, content="hello")
    async with running_link([nip42_relay], ledger, machine, auth_keys=device) as t:
        async with connected_client([nip42_relay], auth_keys=user) as client:
            sent = await client.send_event(request)
            assert sent.success, sent.failed
        await wait_for(lambda: str(request.id().to_hex()) in t.consumer.ids, within=10, what="the request")
        await wait_for(lambda: not ledger.pending_outbox(), within=10, what="the reply acked")
    async with connected_client([nip42_relay]) as reader:
        stored = await reader.fetch_events(
            ReqTarget.auto([machine_filter(SESSION, machine, [device.public_key().to_hex()])]),
            timedelta(seconds=5),
        )
    assert [e.id().to_hex() for e in stored] == [reply.event_id]


async def test_without_a_key_the_link_is_refused(
    nip42_relay: str, ledger: Ledger, machine: str, relay_log: LogRecords
) -> None:
    async with running_link([nip42_relay], ledger, machine) as t:
        async with connected_client([nip42_relay]) as client:
            sent = await client.send_event(make_event(Keys.generate(), session=SESSION, machine=machine))
            assert sent.success
        await wait_for(lambda: "relay_subscribe_refused" in relay_log.codes(), what="the refusal")
        assert t.consumer.ids == []


async def test_user_recharge_is_granted_through_an_authenticating_relay(nip42_relay: str, rig: Rig) -> None:
    processor = rig.processor(background=True)
    target = RechargeTarget((nip42_relay,), DEFAULT_SESSION, rig.machine, rig.keys.nostr_pubkey_hex)
    link = RelayLink(
        [nip42_relay],
        ledger=rig.ledger,
        session=DEFAULT_SESSION,
        machine_pubkey=rig.machine,
        on_event=processor.handle,
        auth_keys=rig.keys.nostr,
        probe_interval=0.5,
    )
    await link.start()
    try:
        result = await recharge(rig.payload(), target, wait_seconds=20)
    finally:
        await link.stop()
        await processor.aclose()
    assert result.tokens == PRICE * TOKENS_PER_LAMPORT
    assert rig.ledger.balance(str(rig.user.pubkey())).total == PRICE * TOKENS_PER_LAMPORT
