"""Settlement cost per pay, each figure against a baseline measured in the same run.

    python benchmarks/settlement.py [--json PATH] [--iterations N] [--pays N]

Figures:

* **verify + build + sign** one ``pay`` (:func:`device.solana.client.build_signed_pay`: the local
  authorization check -- Keccak-256, base58, Ed25519 verify --, three PDAs, the instruction, one legacy
  message, the bot's signature), median over ``--iterations``; target ≤ 2 ms.  Baseline: a bare solders
  Ed25519 sign + verify of the same signed text -- the two signature operations the step cannot avoid.
* **pay + confirm** end to end against the localnet stand-in on 127.0.0.1 (``prepare_pay`` -- the chain
  reads -- then ``submit``: send with preflight, poll the status), median over ``--pays``.  Baseline: a bare
  ``getHealth`` round trip through the same solana-py client.  The stand-in finalizes at once, so this
  measures our client plus the RPC path, not a cluster's confirmation time.

Prints one markdown table; with ``--json PATH`` also writes its rows as JSON.  Writes nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _table
from solders.hash import Hash
from solders.keypair import Keypair
from solders.signature import Signature

from device.localnet import LocalnetServer, bootstrap_namespace, bootstrap_user
from device.solana import program as prog
from device.solana.authorization import sign_authorization, signed_message, signed_text
from device.solana.client import PayContext, SettlementClient, build_signed_pay
from device.solana.program import NamespaceAccount, ProgramRef, ProgramVersion, UserAccount

BUILD_TARGET_MS = 2.0
NAME = "Gacha"
AMOUNT = 5_000_000
V2 = ProgramVersion.V2


def median_ms(fn: Callable[[], Any], iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6


def build_rows(iterations: int) -> list[dict[str, Any]]:
    program = ProgramRef.default(V2)
    user, bot = Keypair(), Keypair()
    treasury, authority = Keypair().pubkey(), Keypair().pubkey()
    now = int(time.time())
    auth = sign_authorization(
        user, V2, nonce=7, deadline=now + 1800, extra_data=bytes(64), namespace_id=0, namespace_name=NAME
    )
    ctx = PayContext(
        operator=NamespaceAccount(0, NAME, authority, bot.pubkey(), treasury, now, now),
        user_account=UserAccount(7, 0, prog.vault_pda(program.program_id, user.pubkey())),
        vault_lamports=1_000_000_000,
        blockhash=Hash.new_unique(),
        last_valid_block_height=1_000,
    )
    text = signed_text(
        V2,
        signed_message(V2, extra_data=bytes(64), nonce=7, deadline=now + 1800, namespace_id=0),
        namespace_name=NAME,
    )
    pubkey = user.pubkey()

    def ours() -> None:
        build_signed_pay(
            program,
            namespace_id=0,
            bot=bot,
            ctx=ctx,
            user=pubkey,
            auth=auth,
            payload_nonce=7,
            amount=AMOUNT,
            now=now,
        )

    def bare() -> None:
        signature: Signature = user.sign_message(text)
        assert signature.verify(pubkey, text)

    for fn in (ours, bare):  # warm up
        median_ms(fn, max(10, iterations // 20))
    # Alternate rounds so that both figures see the same machine state.
    ours_ms, bare_ms = [], []
    for _ in range(5):
        ours_ms.append(median_ms(ours, iterations // 5))
        bare_ms.append(median_ms(bare, iterations // 5))
    value, baseline = statistics.median(ours_ms), statistics.median(bare_ms)
    return [
        _table.row(
            "verify + build + sign one pay (median)",
            value,
            "ms",
            baseline,
            "bare solders Ed25519 sign + verify of the signed text (ms)",
            f"<= {BUILD_TARGET_MS:g} ms",
            value <= BUILD_TARGET_MS,
        )
    ]


async def e2e_rows(pays: int) -> list[dict[str, Any]]:
    program = ProgramRef.default(V2)
    async with LocalnetServer() as server:
        authority, bot, user = Keypair(), Keypair(), Keypair()
        treasury = Keypair().pubkey()
        server.chain.airdrop(bot.pubkey(), 10_000_000_000)
        namespace_id = await bootstrap_namespace(server.url, authority, bot.pubkey(), treasury, NAME)
        await bootstrap_user(server.url, user, (pays + 2) * AMOUNT + 1_000_000, program=program)
        async with SettlementClient(
            server.url,
            program=program,
            namespace_id=namespace_id,
            commitment="confirmed",
            confirm_timeout=30.0,
            bot=bot,
            poll_interval=0.01,
        ) as client:
            rpc = client._rpc._client  # the same solana-py AsyncClient (connection pool) for the baseline
            await client.check_bot()
            await client.rent_exempt_minimum()
            health, e2e = [], []
            for nonce in range(pays):
                start = time.perf_counter_ns()
                assert await rpc.is_connected()
                health.append(time.perf_counter_ns() - start)
                auth = sign_authorization(
                    user,
                    V2,
                    nonce=nonce,
                    deadline=server.chain.unix_timestamp + 1800,
                    extra_data=bytes(64),
                    namespace_id=namespace_id,
                    namespace_name=NAME,
                )
                start = time.perf_counter_ns()
                signed = await client.prepare_pay(
                    user.pubkey(), auth, payload_nonce=nonce, amount=AMOUNT, now=server.chain.unix_timestamp
                )
                outcome = await client.submit(signed)
                e2e.append(time.perf_counter_ns() - start)
                assert outcome.ok, outcome
    value, baseline = statistics.median(e2e) / 1e6, statistics.median(health) / 1e6
    return [
        _table.row(
            f"pay + confirm against the localnet stand-in (median of {pays})",
            value,
            "ms",
            baseline,
            "bare getHealth round trip, same client (ms)",
            "information",
            None,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--iterations", type=int, default=2_000, help="verify+build+sign repetitions")
    parser.add_argument("--pays", type=int, default=100, help="end-to-end pays against the stand-in")
    args = parser.parse_args()
    rows = build_rows(args.iterations) + asyncio.run(e2e_rows(args.pays))
    print(_table.markdown(rows, "settlement", digits=3))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
