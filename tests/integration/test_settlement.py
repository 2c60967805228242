"""Settlement end to end: solana-py AsyncClient → JSON-RPC → the localnet stand-in (device.localnet).

The stand-in is a test double, not a validator (see ``device/localnet/__init__.py``): every accepted
transaction is final at once, slots follow a simulated 400 ms clock, and ``balance-payment`` is a Python model
of both versions.  What is real here: our instruction and transaction bytes, the signatures, solana-py over
HTTP, the RPC's error shapes, fees, rent and the program's checks as the model implements them.

Each failure is checked twice where the chain can be made to see it: the client refuses it locally
(nothing sent, the bot pays nothing), and -- built and signed by hand, bypassing the local check -- the
chain refuses it with the program's error, which the client maps to the same kind of typed error.  In
both cases no lamports leave the vault.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.models import TxOpts
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.transaction import VersionedTransaction

from device.localnet import (
    LocalnetServer,
)
from device.solana import program as prog
from device.solana.authorization import AuthorizationError, sign_authorization
from device.solana.client import (
    SignedPay,
    TxStatus,
)
from device.solana.errors import ChainUnavailable, SettlementError
from device.solana.program import PayArgs
from tests.fixtures.settlement import settlement_client
from tests.fixtures.settlement_world import (
    AMOUNT,
    DEPOSIT,
    EXTRA,
    FEE,
    NAME,
    V2,
    World,
    make_world,
    server,
    world,
)

__all__ = ["server", "world"]  # fixtures used by name below


# ---------------------------------------------------------------------------------------------------------
# The happy path


async def test_register_deposit_pay(world: World) -> None:
    before = world.balances()
    assert (before["vault"], before["nonce"], before["locked"]) == (DEPOSIT, 0, 0)
    assert await world.client.check_bot()
    assert await world.client.available(world.user.pubkey()) == DEPOSIT

    for nonce in (0, 1):
        signed = await world.client.prepare_pay(
            world.user.pubkey(),
            world.authorize(nonce=nonce),
            payload_nonce=nonce,
            amount=AMOUNT,
            now=world.now,
        )
        assert signed.nonce == nonce
        outcome = await world.client.submit(signed)
        assert outcome.ok, outcome
        assert outcome.signature == signed.signature

    after = world.balances()
    assert after["vault"] == DEPOSIT - 2 * AMOUNT
    assert after["treasury"] == before["treasury"] + 2 * AMOUNT
    assert after["bot"] == before["bot"] - 2 * FEE
    assert (after["nonce"], after["locked"], after["wallet"]) == (2, 0, before["wallet"])
    balance = await world.client.balance(world.user.pubkey())
    assert (balance.nonce, balance.available) == (2, DEPOSIT - 2 * AMOUNT)


async def test_the_transaction_bytes_decode_to_the_reference_account_layout(world: World) -> None:
    auth = world.authorize()
    signed = await world.client.prepare_pay(
        world.user.pubkey(), auth, payload_nonce=0, amount=AMOUNT, now=world.now
    )
    tx = VersionedTransaction.from_bytes(signed.tx_bytes)  # independent decode of what we send
    assert tx.verify_with_results() == [True]
    assert str(tx.signatures[0]) == signed.signature
    message = tx.message
    assert isinstance(message, Message)  # one legacy message
    assert message.header.num_required_signatures == 1
    assert len(message.instructions) == 1
    keys = message.account_keys
    assert keys[0] == world.bot.pubkey()  # fee payer = bot
    ix = message.instructions[0]
    assert keys[ix.program_id_index] == world.program.program_id
    pid = world.program.program_id
    user = world.user.pubkey()
    operator = prog.namespace_pda(pid, world.namespace_id) if world.version is V2 else prog.global_pda(pid)
    # Reference §6.4 (pay): operator · user_account(W) · user(W) · treasury(W) · vault(W) · bot(S) ·
    # payer(W,S) · system_program; the bot is also the payer.
    expected = [
        (operator, False, False),
        (prog.user_pda(pid, user), False, True),
        (user, False, True),
        (world.treasury, False, True),
        (prog.vault_pda(pid, user), False, True),
        (world.bot.pubkey(), True, True),
        (world.bot.pubkey(), True, True),
        (SYSTEM_PROGRAM_ID, False, False),
    ]
    header = message.header  # flags straight from the header, as a validator reads them
    signed_n, ro_signed, ro_unsigned = (
        header.num_required_signatures,
        header.num_readonly_signed_accounts,
        header.num_readonly_unsigned_accounts,
    )

    def flags(i: int) -> tuple[Pubkey, bool, bool]:
        signer = i < signed_n
        writable = i < signed_n - ro_signed if signer else i < len(keys) - ro_unsigned
        return keys[i], signer, writable

    got = [flags(i) for i in bytes(ix.accounts)]
    assert got == expected
    assert prog.decode_instruction(world.version, bytes(ix.data)) == PayArgs(auth, AMOUNT, world.namespace_id)
    assert len(bytes(ix.data)) == (160 if world.version is V2 else 152)
    outcome = await world.client.submit(signed)
    assert outcome.ok
    record = world.server.chain.record(tx.signatures[0])
    assert record is not None


# ---------------------------------------------------------------------------------------------------------
# Failures: refused locally (nothing sent) and, forced past the local check, refused by the chain


@dataclass(frozen=True)
class Case:
    name: str
    local_code: str
    chain_code: str


CASES = [
    Case("expired deadline", "signature_expired", "signature_expired"),
    Case("wrong signature", "signature_invalid", "signature_mismatch"),
    Case("replayed nonce", "nonce_mismatch", "signature_mismatch"),
    Case("insufficient funds", "insufficient_funds", "insufficient_funds"),
    Case("wrong bot", "bot_not_registered", "constraint_has_one"),
    Case("unregistered user", "account_not_initialized", "account_not_initialized"),
]


async def _setup_case(world: World, case: Case) -> dict[str, Any]:
    """Arrange the chain for ``case``; returns the arguments of the failing pay."""
    user = world.user.pubkey()
    if case.name == "expired deadline":
        return {"auth": world.authorize(deadline=world.now - 5), "payload_nonce": 0, "amount": AMOUNT}
    if case.name == "wrong signature":
        return {"auth": world.authorize(signer=Keypair()), "payload_nonce": 0, "amount": AMOUNT}
    if case.name == "replayed nonce":
        auth = world.authorize(nonce=0)
        signed = await world.client.prepare_pay(user, auth, payload_nonce=0, amount=AMOUNT, now=world.now)
        assert (await world.client.submit(signed)).ok
        # A new blockhash: the replay must be a different transaction (identical bytes would be deduplicated
        # by signature -- already_processed -- and report the original, landed pay).
        world.server.chain.advance_clock(1)
        return {"auth": auth, "payload_nonce": 0, "amount": AMOUNT}
    if case.name == "insufficient funds":
        return {"auth": world.authorize(), "payload_nonce": 0, "amount": DEPOSIT + 1}
    if case.name == "wrong bot":
        intruder = Keypair()
        world.server.chain.airdrop(intruder.pubkey(), 1_000_000_000)
        return {"auth": world.authorize(), "payload_nonce": 0, "amount": AMOUNT, "bot": intruder}
    assert case.name == "unregistered user"
    stranger = Keypair()
    auth = sign_authorization(
        stranger,
        world.version,
        nonce=0,
        deadline=world.now + 1800,
        extra_data=EXTRA,
        namespace_id=world.namespace_id,
        namespace_name=NAME if world.version is V2 else None,
    )
    return {"auth": auth, "payload_nonce": 0, "amount": AMOUNT, "user": stranger.pubkey()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_refused_locally_sends_nothing(world: World, case: Case) -> None:
    spec = await _setup_case(world, case)
    before = world.balances()
    bot = spec.get("bot")
    client = world.client_for(bot) if bot is not None else world.client
    try:
        with pytest.raises((AuthorizationError, SettlementError)) as info:
            await client.prepare_pay(
                spec.get("user", world.user.pubkey()),
                spec["auth"],
                payload_nonce=spec["payload_nonce"],
                amount=spec["amount"],
                now=world.now,
            )
    finally:
        if client is not world.client:
            await client.close()
    assert info.value.code == case.local_code
    assert world.balances() == before  # not even a fee


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_refused_by_the_chain_is_typed_and_moves_nothing(world: World, case: Case) -> None:
    spec = await _setup_case(world, case)
    bot: Keypair = spec.get("bot", world.bot)
    forced = world.forced_pay(spec["auth"], spec["amount"], bot=bot, user=spec.get("user"))
    before = world.balances()
    bot_before = world.server.chain.balance(bot.pubkey())
    outcome = await world.client.submit(forced)
    assert outcome.status is TxStatus.FAILED
    assert outcome.error is not None
    assert outcome.error.code == case.chain_code, outcome.error
    assert outcome.error.landed is False  # refused in preflight: the fee is not charged either
    assert outcome.error.signature == forced.signature
    assert world.balances() == before
    assert world.server.chain.balance(bot.pubkey()) == bot_before


async def test_landed_with_a_program_error_charges_only_the_fee(world: World) -> None:
    """skip_preflight (not something the client does): the failing pay lands, the fee is paid, the vault is
    untouched, and resume() reports the program error with landed=True."""
    forced = world.forced_pay(world.authorize(deadline=world.now - 5), AMOUNT)
    before = world.balances()
    async with AsyncClient(world.server.url) as raw:
        await raw.send_raw_transaction(forced.tx_bytes, TxOpts(skip_preflight=True))
    outcome = await world.client.resume(forced.signature, forced.last_valid_block_height)
    assert outcome.status is TxStatus.FAILED
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.landed) == ("signature_expired", True)
    assert outcome.fee_charged
    after = world.balances()
    assert after["bot"] == before["bot"] - FEE
    assert {k: v for k, v in after.items() if k != "bot"} == {k: v for k, v in before.items() if k != "bot"}


async def test_one_authorization_prepared_twice_is_charged_once(world: World) -> None:
    """Two Requests carrying the same authorization race: both pass the local check (same nonce), the
    second one's preflight fails once the first has landed (the nonce moved)."""
    user = world.user.pubkey()
    auth = world.authorize()
    first = await world.client.prepare_pay(user, auth, payload_nonce=0, amount=AMOUNT, now=world.now)
    world.server.chain.advance_clock(1)  # a new blockhash, so the second transaction differs
    second = await world.client.prepare_pay(user, auth, payload_nonce=0, amount=AMOUNT, now=world.now)
    assert first.signature != second.signature
    assert (await world.client.submit(first)).ok
    outcome = await world.client.submit(second)
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.landed) == ("signature_mismatch", False)
    after = world.balances()
    assert (after["vault"], after["nonce"]) == (DEPOSIT - AMOUNT, 1)


async def test_expired_blockhash_before_sending(world: World) -> None:
    signed = await world.client.prepare_pay(
        world.user.pubkey(), world.authorize(), payload_nonce=0, amount=AMOUNT, now=world.now
    )
    before = world.balances()
    world.server.chain.advance_clock(61)  # 152 slots: past the 150-slot blockhash window
    outcome = await world.client.submit(signed)
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.landed) == ("blockhash_not_found", False)
    assert world.balances() == before


# ---------------------------------------------------------------------------------------------------------
# Restart: resume with a new client instance


async def test_resume_after_restart_finds_the_landed_signature(world: World) -> None:
    signed = await world.client.prepare_pay(
        world.user.pubkey(), world.authorize(), payload_nonce=0, amount=AMOUNT, now=world.now
    )
    assert (await world.client.submit(signed)).ok
    await world.client.close()
    persisted = (signed.signature, signed.last_valid_block_height)  # what the caller kept
    after_first = world.balances()
    async with world.client_for() as fresh:
        outcome = await fresh.resume(*persisted, tx_bytes=signed.tx_bytes)
    assert outcome.ok
    assert world.balances() == after_first  # nothing charged twice


async def test_crash_before_send_resume_sends_the_persisted_bytes(world: World) -> None:
    signed = await world.client.prepare_pay(
        world.user.pubkey(), world.authorize(), payload_nonce=0, amount=AMOUNT, now=world.now
    )
    await world.client.close()  # "crash" after persisting, before submit
    async with world.client_for() as fresh:
        outcome = await fresh.resume(
            signed.signature, signed.last_valid_block_height, tx_bytes=signed.tx_bytes
        )
        again = await fresh.resume(signed.signature, signed.last_valid_block_height, tx_bytes=signed.tx_bytes)
    assert outcome.ok and again.ok
    after = world.balances()
    assert (after["vault"], after["nonce"]) == (DEPOSIT - AMOUNT, 1)


async def test_crash_before_send_without_bytes_expires_then_the_user_can_pay_again(world: World) -> None:
    user = world.user.pubkey()
    auth = world.authorize()
    signed = await world.client.prepare_pay(user, auth, payload_nonce=0, amount=AMOUNT, now=world.now)
    before = world.balances()
    world.server.chain.advance_clock(61)
    async with world.client_for() as fresh:
        outcome = await fresh.resume(signed.signature, signed.last_valid_block_height)
        assert outcome.error is not None
        assert (outcome.error.code, outcome.error.landed) == ("blockhash_expired", False)
        assert world.balances() == before
        # Nothing was charged, so the same authorization (still within its deadline) can be settled anew.
        retry = await fresh.prepare_pay(user, auth, payload_nonce=0, amount=AMOUNT, now=world.now)
        assert (await fresh.submit(retry)).ok
    assert world.balances()["vault"] == DEPOSIT - AMOUNT


async def test_resume_across_a_stand_in_restart_with_a_state_file(tmp_path: Path) -> None:
    state = tmp_path / "chain.json"
    async with LocalnetServer(state_file=state) as first:
        w = await make_world(first, V2)
        signed: SignedPay = await w.client.prepare_pay(
            w.user.pubkey(), w.authorize(), payload_nonce=0, amount=AMOUNT, now=w.now
        )
        assert (await w.client.submit(signed)).ok
        await w.client.close()
    async with (
        LocalnetServer(state_file=state) as second,
        settlement_client(second.url, program=w.program, namespace_id=w.namespace_id, bot=w.bot) as fresh,
    ):
        outcome = await fresh.resume(signed.signature, signed.last_valid_block_height)
        assert outcome.ok
        balance = await fresh.balance(w.user.pubkey())
    assert (balance.nonce, balance.vault_lamports) == (1, DEPOSIT - AMOUNT)


async def test_unreachable_after_the_stand_in_stops(world: World) -> None:
    signed = await world.client.prepare_pay(
        world.user.pubkey(), world.authorize(), payload_nonce=0, amount=AMOUNT, now=world.now
    )
    url = world.server.url
    await world.server.stop()
    with pytest.raises(ChainUnavailable) as info:
        await world.client.submit(signed)
    assert info.value.code == "rpc_unreachable"
    assert info.value.signature == signed.signature
    assert url.startswith("http://127.0.0.1:")


async def test_raw_send_shape_is_what_the_stand_in_accepts(world: World) -> None:
    """Guard for the raw sendTransaction the client issues (base64 + config object)."""
    signed = await world.client.prepare_pay(
        world.user.pubkey(), world.authorize(), payload_nonce=0, amount=AMOUNT, now=world.now
    )
    async with AsyncClient(world.server.url) as raw:
        resp = await raw.send_raw_transaction(signed.tx_bytes, TxOpts(skip_preflight=False))
    assert str(resp.value) == signed.signature
    assert base64.b64encode(signed.tx_bytes)


async def test_submitting_the_same_bytes_again_is_idempotent(world: World) -> None:
    """The stand-in answers the duplicate's preflight with AlreadyProcessed; the client reports the original
    landing instead of a failure, and nothing is charged twice."""
    signed = await world.client.prepare_pay(
        world.user.pubkey(), world.authorize(), payload_nonce=0, amount=AMOUNT, now=world.now
    )
    assert (await world.client.submit(signed)).ok
    after_first = world.balances()
    again = await world.client.submit(signed)
    assert again.ok and again.signature == signed.signature
    assert world.balances() == after_first
