"""A ledger lost with grants still in its outbox is rebuilt from the relay AND the chain: no paid grant is
lost, none is counted twice, and the rebuilt ledger publishes what the relay lacks.

Real parts: the recharge processor paying over JSON-RPC on the localnet stand-in (both program versions),
an in-process ``LocalRelay``, the relay link publishing the outbox, SQLite ledgers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from device.cli import main
from device.commands.ledger import chain_grants
from device.ledger import LEDGER_FILE, Ledger, TransactionRecord
from device.nostr_events import EventSigner
from device.protocol import DEFAULT_SESSION
from device.solana.pay_history import PaidRecharge, fetch_pays
from device.wallet.transaction_feed import fetch_transactions
from tests.fixtures.recharge import (
    MAX_RECHARGE,
    TOKENS_PER_LAMPORT,
    Rig,
    both,
    grant_tokens,
    rig,
    server,
)
from tests.fixtures.relay import running_link, wait_for

__all__ = ["both", "rig", "server"]  # fixtures used by name below


async def relay_records(rig: Rig, url: str) -> list[TransactionRecord]:
    return await fetch_transactions(
        [url], authors=[rig.machine], session=DEFAULT_SESSION, machine=rig.machine
    )


async def chain_pays(rig: Rig) -> list[PaidRecharge]:
    return await fetch_pays(
        rig.server.url, program=rig.program, bot=rig.keys.bot.pubkey(), namespace_id=rig.namespace_id
    )


def signer(rig: Rig) -> EventSigner:
    return EventSigner(rig.keys.nostr, session=DEFAULT_SESSION, machine_pubkey=rig.machine)


def lose(ledger: Ledger, rig: Rig) -> None:
    ledger.close()
    for suffix in ("", "-wal", "-shm"):
        (rig.state_dir / f"{LEDGER_FILE}{suffix}").unlink(missing_ok=True)


async def test_a_lost_ledger_is_rebuilt_from_relay_and_chain_and_republishes_the_missing_grant(
    both: Rig, embedded_relay: str
) -> None:
    rig = both
    user = str(rig.user.pubkey())
    processor = rig.processor()
    first = rig.request(rig.payload(nonce=0))
    await processor.handle(first)
    async with running_link([embedded_relay], rig.ledger, rig.machine):
        await wait_for(lambda: not rig.ledger.pending_outbox(), 10, "the first grant's events published")
    second = rig.request(rig.payload(nonce=1))
    await processor.handle(second)
    paid = [rig.ledger.recharge(r.event_id) for r in (first, second)]
    signatures = [row.signature for row in paid if row is not None]
    assert len(signatures) == 2 and len(rig.ledger.pending_outbox()) == 3  # the second grant never left
    lose(rig.ledger, rig)

    records, pays = await relay_records(rig, embedded_relay), await chain_pays(rig)
    assert [r.pay_signature for r in records] == signatures[:1]
    assert [(p.signature, p.user, p.lamports) for p in pays] == [
        (s, user, grant_tokens() // TOKENS_PER_LAMPORT) for s in signatures
    ]
    with Ledger.open(rig.state_dir / LEDGER_FILE) as rebuilt:
        recovered = chain_grants(pays, records, signer(rig), TOKENS_PER_LAMPORT)
        report = rebuilt.rebuild(records, chain_grants=recovered)
        assert rebuilt.balance(user).total == 2 * grant_tokens()  # not 1 (lost) and not 3 (counted twice)
        assert report.recovered == (signatures[1],)
        (queued,) = rebuilt.pending_outbox()
        announcement = json.loads(queued.event_json)
        assert json.loads(announcement["content"]) == {
            "Transaction": {"user": user, "tokens": grant_tokens()}
        }
        assert ["i", f"solana:tx:{signatures[1]}"] in announcement["tags"]

        resigned = chain_grants(pays, records, signer(rig), TOKENS_PER_LAMPORT)  # new events, same pays
        again = rebuilt.rebuild(records, chain_grants=resigned)
        assert (again.applied, again.recovered) == (0, ())  # idempotent
        assert rebuilt.balance(user).total == 2 * grant_tokens()

        async with running_link([embedded_relay], rebuilt, rig.machine):
            await wait_for(lambda: not rebuilt.pending_outbox(), 10, "the recovered grant published")

    records = await relay_records(rig, embedded_relay)
    assert sorted(r.pay_signature or "" for r in records) == sorted(signatures)
    assert chain_grants(pays, records, signer(rig), TOKENS_PER_LAMPORT) == []  # the relay has them all now
    with Ledger.open(rig.state_dir / "from-the-relay-alone.sqlite3") as from_relay:
        from_relay.rebuild(records)
        assert from_relay.balance(user).total == 2 * grant_tokens()


async def test_the_chain_history_lists_each_landed_pay_of_this_bot_and_namespace_once(both: Rig) -> None:
    rig = both
    processor = rig.processor()
    await processor.handle(rig.request(rig.payload(nonce=0)))
    await processor.handle(rig.request(rig.payload(nonce=0)))  # a replayed nonce: refused, never paid
    pays = await chain_pays(rig)
    assert len(pays) == 1 and pays[0].block_time > 0
    other_namespace = await fetch_pays(
        rig.server.url, program=rig.program, bot=rig.keys.bot.pubkey(), namespace_id=rig.namespace_id + 1
    )
    assert other_namespace == []  # another namespace's (or program's) pays are not this device's


def rig_config_file(rig: Rig, relay_url: str) -> Path:
    """The device's config with real endpoints: this relay, this chain, the rig's program and pricing."""
    path = rig.state_dir.parent / "config.yaml"
    path.write_text(
        f"device:\n  state_dir: {rig.state_dir}\n"
        f"nostr:\n  relays: [{relay_url}]\n"
        f"solana:\n  rpc_url: {rig.server.url}\n  program: {rig.version.value}\n"
        f"  namespace_id: {rig.namespace_id}\n"
        f"pricing:\n  tokens_per_lamport: {TOKENS_PER_LAMPORT}\n  max_recharge_lamports: {MAX_RECHARGE}\n"
    )
    return path


async def test_ledger_rebuild_restores_a_lost_ledger_in_place_with_the_grant_the_relay_lacks(
    rig: Rig, embedded_relay: str, capsys: pytest.CaptureFixture[str]
) -> None:
    processor = rig.processor()
    await processor.handle(rig.request(rig.payload(nonce=0)))
    async with running_link([embedded_relay], rig.ledger, rig.machine):
        await wait_for(lambda: not rig.ledger.pending_outbox(), 10, "the first grant's events published")
    second = rig.request(rig.payload(nonce=1))
    await processor.handle(second)
    row = rig.ledger.recharge(second.event_id)
    assert row is not None and row.signature is not None
    lose(rig.ledger, rig)
    config = rig_config_file(rig, embedded_relay)
    live = rig.state_dir / LEDGER_FILE
    argv = ["ledger", "rebuild", "--config", str(config), "--output", str(live), "--json"]

    capsys.readouterr()
    assert await asyncio.to_thread(main, argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["events"], report["pays"], report["recovered_from_chain"]) == (1, 2, [row.signature])
    with Ledger.open(live) as restored:
        assert restored.balance(str(rig.user.pubkey())).total == 2 * grant_tokens()
        assert len(restored.pending_outbox()) == 1  # published by the next `run`

    assert await asyncio.to_thread(main, argv) == 0  # again: nothing new, nothing queued twice
    assert json.loads(capsys.readouterr().out)["recovered_from_chain"] == []
    with Ledger.open(live) as restored:
        assert restored.balance(str(rig.user.pubkey())).total == 2 * grant_tokens()
        assert len(restored.pending_outbox()) == 1
