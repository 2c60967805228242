"""A real recharge behind a flood of junk Requests against a quiet baseline; ledger size after junk and chats.

    python benchmarks/flood.py [--json PATH] [--junk N] [--rounds R] [--recharges K]
                               [--bytes-junk N] [--chats N]

**Announce latency under a flood.**  The device is started as :mod:`recharge` (the sibling benchmark) starts
it -- :class:`EmbeddedRelay`, the localnet stand-in, :class:`RechargeProcessor` with background settlement
and :class:`RelayLink`, wired as the agent wires them.  Each of ``--rounds`` rounds first runs ``--recharges``
real recharges on a quiet relay (the baseline), then publishes ``--junk`` junk Requests (default 10,000) as
fast as the relay takes them while the same number of real recharges run one after another behind and
between them.  A recharge is timed from its Request's publish to the subscriber receiving the device's
``Transaction``.  The junk is a mix of what a stranger sends for free: content that is not JSON, JSON
that is no message, Requests whose payload does not decode, Requests for another namespace, a user's
"stop" -- each from a throw-away key, all addressed to this machine.  Target: the flood's p99 ≤ 2 s.

**Ledger bytes.**  A separate ledger (fake clock) behind a :class:`RechargeProcessor`: ``--bytes-junk``
junk Requests (default 100,000) are handed to ``handle`` as the relay link would, then ``--chats`` chat
debits (default 10,000: reserve → commit with a signed ``Transaction{−used}`` in the outbox, acknowledged
as the publisher does); the clock then moves past ``ledger.retention_seconds`` and the agent's
:class:`LedgerPruner` runs.  Rows: bytes after the junk, after the chats, after the prune, against the
fresh ledger's bytes.  What remains after the prune is the ``ops`` table: money history, never pruned.

Prints progress to stderr and one markdown table to stdout; with ``--json PATH`` also writes the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import itertools
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import _table
from nostr_sdk import Client, Event, EventBuilder, Keys, Kind, RelayUrl, Tag
from recharge import PRICE, one_recharge, percentile, release_client, start_device
from solders.keypair import Keypair

from device.config import Config, LedgerConfig
from device.keys import KeyStore
from device.ledger import LEDGER_FILE, Ledger
from device.nostr_events import EventSigner
from device.protocol import (
    DEFAULT_SESSION,
    KIND,
    ZERO_EVENT_ID,
    MachineStatus,
    Reason,
    Request,
    Transaction,
    encode_message,
)
from device.recharge import RechargeProcessor
from device.relay import IncomingEvent
from device.retention import LedgerPruner
from device.solana.client import SettlementClient
from device.state import StateHub

P99_TARGET_S = 2.0
PUBLISH_BATCH = 200  # junk events awaiting the relay's OK at once
NOTE = (
    "Junk is dropped by the cheap checks: no ledger write, no signature, no reply (one WARNING log line per "
    "code and minute).  Grants and debits are published before refusals and one at a time, in order; "
    "refusals (not in this junk) several at a time.  The byte rows count the database file plus its WAL; "
    "after the prune only the `ops` table (one row per grant or debit) and the cursor remain."
)


def progress(text: str) -> None:
    """One line of progress on stderr (stdout carries only the table)."""
    print(f"[flood] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ junk
def junk_contents(machine: str) -> itertools.cycle[str]:
    """The kinds of junk, in turn: each fails a different cheap check."""
    user = str(Keypair().pubkey())

    def request(payload: str, to_status: MachineStatus = MachineStatus.Working) -> str:
        return encode_message(Request(to_status, Reason.UserRequest, ZERO_EVENT_ID, payload))

    return itertools.cycle(
        [
            "not json at all",
            '{"Request": [1, 2, 3]}',
            request('{"user": "nobody", "nonce": 0}'),
            request(json.dumps({"namespace_id": 999, "user": user, "nonce": 0, "recover_info": "{}"})),
            request(json.dumps({"user": user, "nonce": 0, "recover_info": "x"}), MachineStatus.Available),
            "x" * 8_000,  # large, and not JSON
        ]
    )


def junk_events(machine: str, n: int) -> list[Event]:
    """``n`` signed junk events addressed to ``machine``, from throw-away keys (a new one every 50)."""
    contents = junk_contents(machine)
    tags = [Tag.parse(["s", DEFAULT_SESSION]), Tag.parse(["p", machine])]
    events: list[Event] = []
    keys = Keys.generate()
    for i in range(n):
        if i % 50 == 0:
            keys = Keys.generate()
        events.append(EventBuilder(Kind(KIND), f"{next(contents)} {i}"[:9_000]).tags(tags).finalize(keys))
    return events


async def publish_all(attacker: Client, events: list[Event]) -> float:
    """Publish ``events`` through the attacker's own client, ``PUBLISH_BATCH`` awaiting their OK at once;
    returns the seconds it took."""
    start = time.perf_counter()
    for i in range(0, len(events), PUBLISH_BATCH):
        await asyncio.gather(*(attacker.send_event(e) for e in events[i : i + PUBLISH_BATCH]))
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------- announce latency
async def measure_latency(junk: int, rounds: int, recharges: int) -> tuple[list[float], list[float], float]:
    """(quiet samples ms, flood samples ms, junk events per second the relay took)."""
    quiet: list[float] = []
    flood: list[float] = []
    rates: list[float] = []
    n_users = 2 * recharges
    deposit = (rounds + 1) * 2 * PRICE + 10_000_000
    with tempfile.TemporaryDirectory(prefix="flood-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            device = await start_device(stack, Path(tmp) / ".xephy-device", n_users, deposit)
            machine = device.target.machine_pubkey
            attacker = Client()  # the flood comes over its own connection, as a stranger's would
            stack.push_async_callback(release_client, attacker)
            await attacker.add_relay(RelayUrl.parse(device.target.relays[0]))
            await attacker.connect(timedelta(seconds=5))
            progress("warm-up: one recharge per user")
            await asyncio.gather(*(one_recharge(device, u) for u in device.users))
            for r in range(1, rounds + 1):
                for user in device.users[:recharges]:
                    quiet.append(await one_recharge(device, user))
                events = junk_events(machine, junk)
                flooding = asyncio.create_task(publish_all(attacker, events))
                for user in device.users[recharges:]:
                    await asyncio.sleep(0.05)
                    flood.append(await one_recharge(device, user))
                took = await flooding
                rates.append(junk / took)
                progress(
                    f"round {r}/{rounds}: quiet p50 {percentile(quiet, 50):.0f} ms, flood max "
                    f"{max(flood):.0f} ms; {junk} junk published in {took:.1f} s"
                )
            progress("stopping")
        gc.collect()
    return quiet, flood, sum(rates) / len(rates)


# ------------------------------------------------------------------------------------------ ledger bytes
class Clock:
    """The time the bytes phase runs at (moved past the retention to age rows out)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def junk_incoming(machine: str, n: int, start: int) -> list[IncomingEvent]:
    """``n`` junk events as the relay link hands them over (ids made up: ``handle`` does not verify
    signatures -- the link did -- and signing 100,000 events would only time nostr-sdk)."""
    contents = junk_contents(machine)
    tags = (("s", DEFAULT_SESSION), ("p", machine))
    now = int(time.time())
    return [
        IncomingEvent(
            hashlib.sha256(f"junk {i}".encode()).hexdigest(),
            hashlib.sha256(f"author {i // 50}".encode()).hexdigest(),
            now,
            KIND,
            tags,
            f"{next(contents)} {i}",
            "ws://relay.bench",
        )
        for i in range(start, start + n)
    ]


async def measure_bytes(n_junk: int, n_chats: int) -> dict[str, int]:
    """Ledger bytes: fresh, after the junk, after the chats, after the retention's prune."""
    sizes: dict[str, int] = {}
    clock = Clock()
    retention = LedgerConfig().retention_seconds
    with tempfile.TemporaryDirectory(prefix="flood-bytes-") as tmp:
        state = Path(tmp) / ".xephy-device"
        keys, _ = KeyStore(state).init()
        machine = keys.nostr_pubkey_hex
        signer = EventSigner(keys.nostr, session=DEFAULT_SESSION, machine_pubkey=machine)
        config = Config()
        with Ledger.open(state / LEDGER_FILE, clock=clock) as ledger:
            sizes["fresh"] = ledger.file_bytes()
            settlement = SettlementClient.from_config(config.solana, keys.bot, rpc_url="http://127.0.0.1:9")
            processor = RechargeProcessor(
                ledger, settlement, signer, config, StateHub(), notify_outbox=lambda: None, clock=clock
            )
            with logging_quiet():
                for start in range(0, n_junk, 10_000):
                    for event in junk_incoming(machine, min(10_000, n_junk - start), start):
                        await processor.handle(event)
                    progress(f"junk handed over: {min(start + 10_000, n_junk)}")
            await processor.aclose()
            await settlement.close()
            sizes["after junk"] = ledger.file_bytes()
            users = [str(Keypair().pubkey()) for _ in range(20)]
            for user in users:
                ledger.grant(f"grant-{user}", user, 10_000_000)
            for i in range(n_chats):
                user = users[i % len(users)]
                hold = ledger.reserve(user, 600, key=f"chat-{i}")
                debit = signer.sign(Transaction(user=user, tokens=-(200 + i % 300)))
                ledger.commit(hold, 200 + i % 300, event_id=debit.event_id, outbox=[debit.outbox()])
                ledger.mark_acked(debit.event_id, "ws://relay.bench")
                if (i + 1) % 2_000 == 0:
                    progress(f"chats debited: {i + 1}")
            sizes["after chats"] = ledger.file_bytes()
            clock.now += retention + 1
            await LedgerPruner(ledger, retention_seconds=retention, clock=clock).prune_once()
            sizes["after prune"] = ledger.file_bytes()
    return sizes


@contextlib.contextmanager
def logging_quiet() -> Iterator[None]:
    """Silence the per-code drop lines while a hundred thousand junk events go through."""
    logger = logging.getLogger("device")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# ------------------------------------------------------------------------------------------------ table
def rows(
    quiet: list[float],
    flood: list[float],
    rate: float,
    junk: int,
    sizes: dict[str, int],
    n_junk: int,
    chats: int,
) -> list[dict[str, Any]]:
    """The table rows."""
    q50, q99 = percentile(quiet, 50), percentile(quiet, 99)
    f50, f99 = percentile(flood, 50), percentile(flood, 99)
    fresh = sizes["fresh"]
    kib = 1024
    per_chat = (sizes["after prune"] - fresh) / max(chats, 1)
    return [
        _table.row(
            f"recharge p50 behind {junk:,} junk Requests ({len(flood)} recharges, junk at {rate:,.0f}/s)",
            f50 / 1e3,
            "s",
            q50 / 1e3,
            "quiet recharge p50 (s)",
            "information",
            None,
        ),
        _table.row(
            f"recharge p99 behind {junk:,} junk Requests",
            f99 / 1e3,
            "s",
            q99 / 1e3,
            "quiet recharge p99 (s)",
            f"<= {P99_TARGET_S:g} s",
            f99 / 1e3 <= P99_TARGET_S,
        ),
        _table.row(
            f"ledger bytes after {n_junk:,} junk Requests",
            sizes["after junk"] / kib,
            "KiB",
            fresh / kib,
            "fresh ledger (KiB)",
            "no growth (junk stores nothing)",
            sizes["after junk"] <= fresh * 1.05 + 64 * kib,
        ),
        _table.row(
            f"ledger bytes after {n_junk:,} junk + {chats:,} chats",
            sizes["after chats"] / kib,
            "KiB",
            fresh / kib,
            "fresh ledger (KiB)",
            "information (within the retention window)",
            None,
        ),
        _table.row(
            f"ledger bytes once the retention pruned them ({per_chat:.0f} B per chat remain: ops)",
            sizes["after prune"] / kib,
            "KiB",
            sizes["after chats"] / kib,
            "before the prune (KiB)",
            "bounded: ≤ 40 % of the unpruned size",
            sizes["after prune"] <= 0.4 * sizes["after chats"],
        ),
    ]


def main() -> None:
    """Parse the arguments, run both measurements, print the table (and write the JSON)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--junk", type=int, default=10_000, help="junk Requests per flood round")
    parser.add_argument("--rounds", type=int, default=2, help="quiet + flood rounds")
    parser.add_argument("--recharges", type=int, default=5, help="real recharges per phase and round")
    parser.add_argument("--bytes-junk", type=int, default=100_000, help="junk Requests for the bytes rows")
    parser.add_argument("--chats", type=int, default=10_000, help="chat debits for the bytes rows")
    args = parser.parse_args()
    if min(args.junk, args.rounds, args.recharges, args.bytes_junk, args.chats) < 1:
        parser.error("every count must be at least 1")
    quiet, flood, rate = asyncio.run(measure_latency(args.junk, args.rounds, args.recharges))
    sizes = asyncio.run(measure_bytes(args.bytes_junk, args.chats))
    table = rows(quiet, flood, rate, args.junk, sizes, args.bytes_junk, args.chats)
    print("\n".join([_table.markdown(table, "flood"), "", NOTE]))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
