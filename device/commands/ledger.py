"""``xephy-device ledger …``: rebuild balances from the relays and compare with the local ledger.

``ledger rebuild`` reads every ``Transaction`` event about this machine that the
device itself or a ``nostr.trusted_authors`` key signed (never anyone else's),
replays them into a fresh ledger (``--output PATH`` keeps it, otherwise it is
temporary) and prints, per user, the local total, the rebuilt total and the
difference.  Exit 0 when they agree, 1 when any user differs.

A rebuilt ledger keys its ops by Transaction event id, not by Request id; if you
ever swap it in for a lost ledger, the on-chain nonce is what still prevents a
replayed Request from being charged twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from device.commands.arguments import relay_url
from device.config import EMBEDDED, Config
from device.endpoints import Endpoints
from device.errors import DeviceError
from device.keys import KeyStore
from device.ledger import LEDGER_FILE, Ledger
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


def compare(local: dict[str, int], rebuilt: dict[str, int]) -> list[tuple[str, int, int]]:
    """``(user, local, rebuilt)`` for every user whose totals differ, sorted by user."""
    users = sorted(set(local) | set(rebuilt))
    return [(u, local.get(u, 0), rebuilt.get(u, 0)) for u in users if local.get(u, 0) != rebuilt.get(u, 0)]


def cmd_ledger_rebuild(args: argparse.Namespace, config: Config) -> int:
    """Rebuild balances from trusted Transaction events; report differences with the local ledger."""
    keys = KeyStore(config.device.state_dir).load()
    machine = config.nostr.machine_pubkey or keys.nostr_pubkey_hex
    authors = [keys.nostr_pubkey_hex, *config.nostr.trusted_authors]
    relays = _relays(args, config)
    records = asyncio.run(
        fetch_transactions(relays, authors=authors, session=config.nostr.session, machine=machine)
    )
    with tempfile.TemporaryDirectory() as scratch:
        target = args.output if args.output is not None else Path(scratch) / "rebuilt.sqlite3"
        with Ledger.open(target) as rebuilt:
            report = rebuilt.rebuild(records)
            rebuilt_totals = rebuilt.totals()
    with Ledger.open(config.device.state_dir / LEDGER_FILE) as local:
        local_totals = local.totals()
    differences = compare(local_totals, rebuilt_totals)
    if args.json:
        print(
            json.dumps(
                {
                    "events": len(records),
                    "applied": report.applied,
                    "users": len(rebuilt_totals),
                    "negative_users": list(report.negative_users),
                    "differences": [{"user": u, "local": a, "rebuilt": b} for u, a, b in differences],
                }
            )
        )
    else:
        print(f"{len(records)} Transaction events from {', '.join(relays)}; {len(rebuilt_totals)} users")
        for user in report.negative_users:
            print(f"warning: {user} would be below zero in the rebuilt history")
        if not differences:
            print("local ledger agrees with the relays")
        for user, local_total, rebuilt_total in differences:
            print(
                f"{user}  local {local_total:,}  relays {rebuilt_total:,}  "
                f"diff {rebuilt_total - local_total:+,}"
            )
        if args.output is not None:
            print(f"rebuilt ledger written to {args.output}")
    return 1 if differences else 0


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``ledger rebuild [--relay URL]… [--output PATH] [--json]``."""
    actions = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    rebuild = actions.add_parser(
        "rebuild",
        parents=[common],
        help="replay trusted Transaction events; exit 1 if the local ledger differs",
        description="Replay Transaction events signed by this device or trusted_authors and compare.",
    )
    rebuild.add_argument(
        "--relay", action="append", type=relay_url, metavar="URL", help="relay URL or host (repeatable)"
    )
    rebuild.add_argument(
        "--output", type=Path, default=None, metavar="PATH", help="keep the rebuilt ledger here"
    )
    rebuild.add_argument("--json", action="store_true", help="print one JSON object")
    rebuild.set_defaults(handler=cmd_ledger_rebuild)
