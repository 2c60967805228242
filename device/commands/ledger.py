"""``xephy-device ledger …``: rebuild balances from the relays and the chain; compare with the local ledger.

``ledger rebuild`` reads every ``Transaction`` event about this machine that the device itself or a
``nostr.trusted_authors`` key signed (never anyone else's) and every ``pay`` transaction the device's bot
signed (``getSignaturesForAddress`` + ``getTransaction`` on ``solana.rpc_url``), replays them into a fresh
ledger (``--output PATH`` keeps it, otherwise it is temporary) and prints, per user, the local total, the
rebuilt total and the difference.  Exit 0 when they agree, 1 when any user differs.

Grants are keyed by their pay signature (``pay:<signature>``, see :mod:`device.ledger`): a grant the
chain shows and a relay's Transaction event naming the same pay are one grant.  A pay no relay has a
Transaction for (the ledger was lost with the event still in its outbox) is granted from the chain, and
a Transaction event for it, signed by the device, is queued in the rebuilt ledger's outbox: a ledger
restored with ``--output <state_dir>/ledger.sqlite3`` (agent stopped) publishes it when the agent starts.
Debits come from the relays only.  ``--no-chain`` replays the relays alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import tempfile
from pathlib import Path

from device.commands.arguments import relay_url
from device.config import EMBEDDED, Config
from device.endpoints import Endpoints
from device.errors import DeviceError
from device.instance_lock import InstanceLock
from device.keys import DeviceKeys, KeyStore
from device.ledger import LEDGER_FILE, ChainGrant, Ledger, TransactionRecord
from device.nostr_events import EventSigner
from device.protocol import Transaction, pay_reference_tag
from device.solana.pay_history import PaidRecharge, fetch_pays
from device.wallet.transaction_feed import fetch_transactions


def _relays(args: argparse.Namespace, config: Config) -> tuple[str, ...]:
    if args.relay:
        return tuple(args.relay)
    configured = tuple(url for url in config.nostr.relays if url != EMBEDDED)
    if configured:
        return configured
    try:
        return Endpoints.read(config.device.state_dir).relays
    except DeviceError as exc:
        raise DeviceError(
            f"nostr.relays is 'embedded' and {exc.message}; pass --relay URL", code="relay_unreachable"
        ) from exc


def _rpc_url(args: argparse.Namespace, config: Config) -> str:
    if args.rpc_url:
        return str(args.rpc_url)
    if config.solana.rpc_url != EMBEDDED:
        return config.solana.rpc_url
    try:
        return Endpoints.read(config.device.state_dir).rpc_url
    except DeviceError as exc:
        raise DeviceError(
            f"solana.rpc_url is 'embedded' and {exc.message}; pass --rpc-url URL (or --no-chain)",
            code="rpc_url_required",
        ) from exc


def compare(local: dict[str, int], rebuilt: dict[str, int]) -> list[tuple[str, int, int]]:
    """``(user, local, rebuilt)`` for every user whose totals differ, sorted by user."""
    users = sorted(set(local) | set(rebuilt))
    return [(u, local.get(u, 0), rebuilt.get(u, 0)) for u in users if local.get(u, 0) != rebuilt.get(u, 0)]


def chain_grants(
    pays: list[PaidRecharge], records: list[TransactionRecord], signer: EventSigner, tokens_per_lamport: int
) -> list[ChainGrant]:
    """Grants for the pays no relay event names, each with a signed Transaction that names its pay."""
    named = {r.pay_signature for r in records if r.pay_signature is not None}
    grants = []
    for pay in pays:
        if pay.signature in named:
            continue
        tokens = pay.lamports * tokens_per_lamport
        event = signer.sign(
            Transaction(user=pay.user, tokens=tokens), extra_tags=[pay_reference_tag(pay.signature)]
        )
        grants.append(ChainGrant(pay.signature, pay.user, tokens, pay.block_time, event.outbox()))
    return grants


def name_announced_pays(records: list[TransactionRecord], pays: dict[str, str]) -> list[TransactionRecord]:
    """``records`` with the pay that the local ledger says each grant event announced (older events lack
    the ``i`` tag, so without this a grant and its pay would count twice while the local ledger exists)."""
    return [
        dataclasses.replace(r, pay_signature=pays[r.event_id])
        if r.pay_signature is None and r.tokens > 0 and r.event_id in pays
        else r
        for r in records
    ]


def _read_chain(args: argparse.Namespace, config: Config, keys: DeviceKeys) -> list[PaidRecharge]:
    if args.no_chain:
        return []
    return asyncio.run(
        fetch_pays(
            _rpc_url(args, config),
            program=config.solana.program_ref,
            bot=keys.bot_pubkey,
            namespace_id=config.solana.namespace_id,
        )
    )


def cmd_ledger_rebuild(args: argparse.Namespace, config: Config) -> int:
    """Rebuild balances from trusted Transaction events and the bot's pays; report differences."""
    state_dir = config.device.state_dir
    keys = KeyStore(state_dir).load()
    machine = config.nostr.machine_pubkey or keys.nostr_pubkey_hex
    authors = [keys.nostr_pubkey_hex, *config.nostr.trusted_authors]
    relays = _relays(args, config)
    local_path = state_dir / LEDGER_FILE
    restoring = args.output is not None and args.output.resolve() == local_path.resolve()
    with contextlib.ExitStack() as stack:
        if restoring:  # the agent's own file: only while no agent runs on this state directory
            stack.enter_context(InstanceLock.acquire(state_dir))
        records = asyncio.run(
            fetch_transactions(relays, authors=authors, session=config.nostr.session, machine=machine)
        )
        with Ledger.open(local_path) as local:
            records = name_announced_pays(records, local.announced_pays())
        pays = _read_chain(args, config, keys)
        signer = EventSigner(keys.nostr, session=config.nostr.session, machine_pubkey=machine)
        recovered = chain_grants(pays, records, signer, config.pricing.tokens_per_lamport)
        scratch = stack.enter_context(tempfile.TemporaryDirectory())
        target = args.output if args.output is not None else Path(scratch) / "rebuilt.sqlite3"
        with Ledger.open(target) as rebuilt:
            report = rebuilt.rebuild(records, chain_grants=recovered)
            rebuilt_totals = rebuilt.totals()
        with Ledger.open(local_path) as local:
            local_totals = local.totals()
    differences = compare(local_totals, rebuilt_totals)
    if args.json:
        print(
            json.dumps(
                {
                    "events": len(records),
                    "pays": len(pays),
                    "applied": report.applied,
                    "recovered_from_chain": list(report.recovered),
                    "users": len(rebuilt_totals),
                    "negative_users": list(report.negative_users),
                    "differences": [{"user": u, "local": a, "rebuilt": b} for u, a, b in differences],
                }
            )
        )
        return 1 if differences else 0
    chain = "chain not read" if args.no_chain else f"{len(pays)} pay transactions on chain"
    print(f"{len(records)} Transaction events from {', '.join(relays)}; {chain}; {len(rebuilt_totals)} users")
    if report.recovered:
        kept = f"queued in {args.output}" if args.output is not None else "not kept: pass --output PATH"
        print(f"{len(report.recovered)} paid grants are on chain only; their Transaction events are {kept}")
    for user in report.negative_users:
        print(f"warning: {user} would be below zero in the rebuilt history")
    if not differences:
        print("local ledger agrees with the relays and the chain")
    for user, local_total, rebuilt_total in differences:
        print(
            f"{user}  local {local_total:,}  rebuilt {rebuilt_total:,}  diff {rebuilt_total - local_total:+,}"
        )
    if args.output is not None:
        print(f"rebuilt ledger written to {args.output}")
    return 1 if differences else 0


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``ledger rebuild [--relay URL]… [--rpc-url URL | --no-chain] [--output PATH] [--json]``."""
    actions = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    rebuild = actions.add_parser(
        "rebuild",
        parents=[common],
        help="replay trusted Transaction events and the bot's pays; exit 1 if the local ledger differs",
        description="Replay Transaction events signed by this device or trusted_authors, and the pay "
        "transactions of the device's bot, into a fresh ledger and compare.",
    )
    rebuild.add_argument(
        "--relay", action="append", type=relay_url, metavar="URL", help="relay URL or host (repeatable)"
    )
    rebuild.add_argument(
        "--rpc-url", default=None, metavar="URL", help="Solana JSON-RPC URL (default: solana.rpc_url)"
    )
    rebuild.add_argument("--no-chain", action="store_true", help="replay the relays only")
    rebuild.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="PATH",
        help="keep the rebuilt ledger here (the state dir's ledger.sqlite3 restores it; agent stopped)",
    )
    rebuild.add_argument("--json", action="store_true", help="print one JSON object")
    rebuild.set_defaults(handler=cmd_ledger_rebuild)
