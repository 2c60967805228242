"""The balance-payment flows over JSON-RPC: real instruction bytes, solders signatures, solana-py AsyncClient,
against the loopback stand-in.  Balances, nonces and fees are checked to the lamport."""

from __future__ import annotations

import json
from typing import Any

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.keypair import Keypair
from solders.rpc.errors import SendTransactionPreflightFailureMessage

from device.localnet import LocalnetServer, rent_exempt_minimum
from device.localnet.ed25519 import decompress
from device.solana import program as bp
from device.solana.authorization import sign_authorization
from device.solana.program import ED25519RecoverInfo, ProgramVersion, error_number
from tests.fixtures.localnet import (
    FEE,
    SOL,
    Operator,
    balances,
    blockhash,
    build_tx,
    client,
    custom_error,
    make_operator,
    send_skip_preflight,
    server,
    user_state,
)

__all__ = ["client", "server"]  # fixtures used by name below

VERSIONS = [ProgramVersion.V2, ProgramVersion.V1]
USER_ACCOUNT_RENT = rent_exempt_minimum(bp.UserAccount.SIZE)


@pytest.mark.parametrize("version", VERSIONS)
async def test_register_deposit_pay_moves_exactly_the_amounts_and_fees(
    client: AsyncClient, version: ProgramVersion
) -> None:
    op = await make_operator(client, version, deposit=0)
    user_before = (await client.get_balance(op.user.pubkey())).value
    # register already happened in make_operator (deposit=0 skips the deposit); deposit now as the dApp does.
    deposit = bp.deposit(op.ref, user=op.user.pubkey(), payer=op.user.pubkey(), amount=40_000_000)
    await client.send_transaction(
        build_tx(await blockhash(client), op.user, [deposit]), TxOpts(skip_confirmation=False)
    )
    assert (await client.get_balance(op.user.pubkey())).value == user_before - 40_000_000 - FEE
    assert (await client.get_balance(op.vault)).value == 40_000_000
    assert (await user_state(client, op)) == bp.UserAccount(nonce=0, locked_amount=0, vault=op.vault)

    bot_before, treasury_before = await balances(client, op.bot.pubkey(), op.treasury.pubkey())
    deadline = 2**40  # far future
    recover_info = op.authorize(nonce=0, deadline=deadline)
    tx = build_tx(await blockhash(client), op.bot, [op.pay_ix(recover_info, 5_000_000)])
    result = await client.send_transaction(tx, TxOpts(skip_confirmation=False))
    assert result.value == tx.signatures[0]

    assert await balances(client, op.vault, op.treasury.pubkey(), op.bot.pubkey()) == [
        35_000_000,
        treasury_before + 5_000_000,
        bot_before - FEE,
    ]
    assert (await user_state(client, op)).nonce == 1
    status = (await client.get_signature_statuses([tx.signatures[0]])).value[0]
    assert status is not None and status.err is None


async def test_register_charges_the_user_account_rent_and_one_fee(client: AsyncClient) -> None:
    user = Keypair.from_seed(bytes([77]) * 32)
    signature = (await client.request_airdrop(user.pubkey(), SOL)).value
    await client.confirm_transaction(signature, sleep_seconds=0.01)
    ix = bp.register(bp.ProgramRef.default(ProgramVersion.V2), user=user.pubkey(), payer=user.pubkey())
    await client.send_transaction(
        build_tx(await blockhash(client), user, [ix]), TxOpts(skip_confirmation=False)
    )
    assert (await client.get_balance(user.pubkey())).value == SOL - USER_ACCOUNT_RENT - FEE
    info = (
        await client.get_account_info(bp.user_pda(bp.DEFAULT_PROGRAM_IDS[ProgramVersion.V2], user.pubkey()))
    ).value
    assert info is not None
    assert info.owner == bp.DEFAULT_PROGRAM_IDS[ProgramVersion.V2]
    assert info.lamports == USER_ACCOUNT_RENT and len(info.data) == bp.UserAccount.SIZE


# --------------------------------------------------------------------------------------------------------
# Failures: the right error, and no lamports move except the fee


def _r_off_curve(recover_info: ED25519RecoverInfo) -> ED25519RecoverInfo:
    off = next(bytes([y]) + bytes(31) for y in range(2, 256) if decompress(bytes([y]) + bytes(31)) is None)
    return ED25519RecoverInfo(
        off + recover_info.signature[32:], recover_info.extra_data, recover_info.deadline
    )


FAILURES = [
    "expired_deadline",
    "wrong_signature",
    "signature_format",
    "replayed_nonce",
    "insufficient_funds",
    "wrong_bot",
    "unregistered_user",
    "treasury_mismatch",
]


async def _failing_pay(
    client: AsyncClient, server: LocalnetServer, op: Operator, case: str
) -> tuple[Any, Keypair, str]:
    """Prepare ``case``; return (transaction, the fee payer, the expected error code name)."""
    chain = server.chain
    now = chain.unix_timestamp
    good = op.authorize(nonce=0, deadline=now + 3_600)
    bot = op.bot
    if case == "expired_deadline":
        ix = op.pay_ix(op.authorize(nonce=0, deadline=now + 10), 1_000_000)
        chain.advance_clock(11)
        code = "signature_expired"
    elif case == "wrong_signature":
        ix = op.pay_ix(op.authorize(nonce=0, deadline=now + 3_600, signer=Keypair()), 1_000_000)
        code = "signature_mismatch"
    elif case == "signature_format":
        ix = op.pay_ix(_r_off_curve(good), 1_000_000)
        code = "signature_format_invalid"
    elif case == "replayed_nonce":
        first = build_tx(await blockhash(client), op.bot, [op.pay_ix(good, 1_000_000)])
        await client.send_transaction(first, TxOpts(skip_confirmation=False))
        ix = op.pay_ix(good, 1_000_001)  # same recover_info; different amount -> different transaction
        code = "signature_mismatch"
    elif case == "insufficient_funds":
        ix = op.pay_ix(good, 50_000_001)
        code = "insufficient_funds"
    elif case == "wrong_bot":
        bot = Keypair.from_seed(bytes([201]) * 32)
        chain.airdrop(bot.pubkey(), SOL)
        ix = op.pay_ix(good, 1_000_000, bot=bot)
        code = "constraint_has_one"
    elif case == "unregistered_user":
        stranger = Keypair.from_seed(bytes([202]) * 32)
        recover_info = sign_authorization(
            stranger,
            op.ref.version,
            nonce=0,
            deadline=now + 3_600,
            extra_data=bytes(64),
            namespace_id=op.namespace_id,
            namespace_name=op.name,
        )
        ix = op.pay_ix(recover_info, 1_000_000, user=stranger.pubkey())
        code = "account_not_initialized"
    else:
        assert case == "treasury_mismatch"
        ix = op.pay_ix(good, 1_000_000, treasury=Keypair().pubkey())
        code = "constraint_raw"
    return build_tx(await blockhash(client), bot, [ix]), bot, code


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", FAILURES)
async def test_failed_pay_lands_with_its_error_and_only_the_fee_moves(
    client: AsyncClient, server: LocalnetServer, version: ProgramVersion, case: str
) -> None:
    op = await make_operator(client, version)
    tx, bot, code = await _failing_pay(client, server, op, case)
    watched = [op.vault, op.treasury.pubkey(), bot.pubkey(), op.user.pubkey()]
    before = await balances(client, *watched)
    nonce_before = (await user_state(client, op)).nonce

    _, err = await send_skip_preflight(client, tx)

    assert err == custom_error(error_number(version, code))
    after = await balances(client, *watched)
    assert after == [before[0], before[1], before[2] - FEE, before[3]]
    assert (await user_state(client, op)).nonce == nonce_before
    meta = (await client.get_transaction(tx.signatures[0])).value
    assert meta is not None and meta.transaction.meta is not None
    assert meta.transaction.meta.fee == FEE
    assert (
        f"failed: custom program error: {error_number(version, code):#x}"
        in meta.transaction.meta.log_messages[-1]
    )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", FAILURES)
async def test_preflight_refuses_a_failing_pay_and_charges_nothing(
    client: AsyncClient, server: LocalnetServer, version: ProgramVersion, case: str
) -> None:
    op = await make_operator(client, version)
    tx, bot, code = await _failing_pay(client, server, op, case)
    watched = [op.vault, op.treasury.pubkey(), bot.pubkey()]
    before = await balances(client, *watched)

    with pytest.raises(RPCException) as caught:
        await client.send_transaction(tx)

    failure = caught.value.args[0]
    assert isinstance(failure, SendTransactionPreflightFailureMessage)
    number = error_number(version, code)
    assert json.loads(failure.data.to_json())["err"] == custom_error(number)
    assert failure.message.endswith(f"custom program error: {number:#x}")
    assert any(f"custom program error: {number:#x}" in line for line in failure.data.logs or [])
    assert await balances(client, *watched) == before
    assert (await client.get_signature_statuses([tx.signatures[0]])).value[0] is None


async def test_the_error_logs_are_what_a_real_node_prints(
    client: AsyncClient, server: LocalnetServer
) -> None:
    op = await make_operator(client, ProgramVersion.V2)
    ix = op.pay_ix(op.authorize(nonce=0, deadline=server.chain.unix_timestamp - 1), 1_000_000)
    tx = build_tx(await blockhash(client), op.bot, [ix])
    _, err = await send_skip_preflight(client, tx)
    assert err == {"InstructionError": [0, {"Custom": 6008}]}
    found = (await client.get_transaction(tx.signatures[0])).value
    assert found is not None and found.transaction.meta is not None
    logs = found.transaction.meta.log_messages
    assert logs is not None
    program = op.ref.program_id
    assert logs[0] == f"Program {program} invoke [1]"
    assert logs[1] == "Program log: Instruction: Pay"
    assert logs[2] == (
        "Program log: AnchorError occurred. Error Code: SignatureExpired. Error Number: 6008. "
        "Error Message: Signature expired."
    )
    assert logs[3].startswith(f"Program {program} consumed ")
    assert logs[4] == f"Program {program} failed: custom program error: 0x1778"


# --------------------------------------------------------------------------------------------------------
# lock -> settle


@pytest.mark.parametrize("version", VERSIONS)
async def test_lock_then_settle_creates_then_closes_the_lock_and_unlocks_the_rest(
    client: AsyncClient, server: LocalnetServer, version: ProgramVersion
) -> None:
    op = await make_operator(client, version)
    recover_info = op.authorize(nonce=0, deadline=server.chain.unix_timestamp + 600)
    lock_key = bp.lock_pda(op.ref.program_id, op.user.pubkey(), 0)
    lock_rent = rent_exempt_minimum(
        (bp.LockAccountV2 if version is ProgramVersion.V2 else bp.LockAccountV1).SIZE
    )
    bot_before = (await client.get_balance(op.bot.pubkey())).value

    tx = build_tx(await blockhash(client), op.bot, [op.lock_ix(recover_info, 10_000_000, nonce=0)])
    await client.send_transaction(tx, TxOpts(skip_confirmation=False))

    info = (await client.get_account_info(lock_key)).value
    assert info is not None and info.owner == op.ref.program_id and info.lamports == lock_rent
    if version is ProgramVersion.V2:
        assert bp.LockAccountV2.decode(bytes(info.data)) == bp.LockAccountV2(
            namespace_id=0, amount=10_000_000
        )
    else:
        assert bp.LockAccountV1.decode(bytes(info.data)) == bp.LockAccountV1(amount=10_000_000)
    assert (await user_state(client, op)) == bp.UserAccount(nonce=1, locked_amount=10_000_000, vault=op.vault)
    assert (await client.get_balance(op.bot.pubkey())).value == bot_before - FEE - lock_rent

    # Locked lamports are not available: a pay for more than vault - locked fails.
    second = op.authorize(nonce=1, deadline=server.chain.unix_timestamp + 600)
    _, err = await send_skip_preflight(
        client, build_tx(await blockhash(client), op.bot, [op.pay_ix(second, 40_000_001)])
    )
    assert err == custom_error(error_number(version, "insufficient_funds"))

    treasury_before = (await client.get_balance(op.treasury.pubkey())).value
    bot_before = (await client.get_balance(op.bot.pubkey())).value
    settle = build_tx(await blockhash(client), op.bot, [op.settle_ix(0, 4_000_000)])
    await client.send_transaction(settle, TxOpts(skip_confirmation=False))

    assert (await client.get_account_info(lock_key)).value is None
    assert (await user_state(client, op)) == bp.UserAccount(nonce=1, locked_amount=0, vault=op.vault)
    assert await balances(client, op.vault, op.treasury.pubkey(), op.bot.pubkey()) == [
        46_000_000,
        treasury_before + 4_000_000,
        bot_before - FEE + lock_rent,
    ]
    # The remainder is unlocked again: a pay of all of it now succeeds.
    third = op.authorize(nonce=1, deadline=server.chain.unix_timestamp + 600)
    await client.send_transaction(
        build_tx(await blockhash(client), op.bot, [op.pay_ix(third, 46_000_000)]),
        TxOpts(skip_confirmation=False),
    )
    assert (await client.get_balance(op.vault)).value == 0


@pytest.mark.parametrize("version", VERSIONS)
async def test_settle_of_more_than_the_lock_or_a_missing_lock_fails(
    client: AsyncClient, server: LocalnetServer, version: ProgramVersion
) -> None:
    op = await make_operator(client, version)
    recover_info = op.authorize(nonce=0, deadline=server.chain.unix_timestamp + 600)
    await client.send_transaction(
        build_tx(await blockhash(client), op.bot, [op.lock_ix(recover_info, 10_000_000, nonce=0)]),
        TxOpts(skip_confirmation=False),
    )
    _, err = await send_skip_preflight(
        client, build_tx(await blockhash(client), op.bot, [op.settle_ix(0, 10_000_001)])
    )
    assert err == custom_error(error_number(version, "insufficient_funds"))
    _, err = await send_skip_preflight(
        client, build_tx(await blockhash(client), op.bot, [op.settle_ix(7, 1)])
    )
    # v2 reads the namespace id from the (missing) lock: AccountNotInitialized on the lock either way.
    assert err == custom_error(3012)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "case", ["expired_deadline", "wrong_signature", "insufficient_funds", "replayed_nonce"]
)
async def test_lock_checks_the_authorization_like_pay_and_locks_nothing_on_failure(
    client: AsyncClient, server: LocalnetServer, version: ProgramVersion, case: str
) -> None:
    op = await make_operator(client, version)
    chain, now = server.chain, server.chain.unix_timestamp
    good = op.authorize(nonce=0, deadline=now + 3_600)
    nonce, amount, code = 0, 1_000_000, case
    if case == "expired_deadline":
        good = op.authorize(nonce=0, deadline=now + 10)
        chain.advance_clock(11)
        code = "signature_expired"
    elif case == "wrong_signature":
        good = op.authorize(nonce=0, deadline=now + 3_600, signer=Keypair())
        code = "signature_mismatch"
    elif case == "insufficient_funds":
        amount = 50_000_001
    else:  # the same authorization again after a lock used its nonce
        first = build_tx(await blockhash(client), op.bot, [op.lock_ix(good, 1_000_000, nonce=0)])
        await client.send_transaction(first, TxOpts(skip_confirmation=False))
        nonce, amount, code = 1, 1_000_001, "signature_mismatch"
    state_before = await user_state(client, op)

    _, err = await send_skip_preflight(
        client, build_tx(await blockhash(client), op.bot, [op.lock_ix(good, amount, nonce=nonce)])
    )

    assert err == custom_error(error_number(version, code))
    assert await user_state(client, op) == state_before  # nonce and locked amount unchanged
    assert (
        await client.get_account_info(bp.lock_pda(op.ref.program_id, op.user.pubkey(), nonce))
    ).value is None


@pytest.mark.parametrize("version", VERSIONS)
async def test_only_the_operators_bot_settles_and_only_to_its_treasury(
    client: AsyncClient, server: LocalnetServer, version: ProgramVersion
) -> None:
    op = await make_operator(client, version)
    recover_info = op.authorize(nonce=0, deadline=server.chain.unix_timestamp + 600)
    await client.send_transaction(
        build_tx(await blockhash(client), op.bot, [op.lock_ix(recover_info, 10_000_000, nonce=0)]),
        TxOpts(skip_confirmation=False),
    )
    stranger = Keypair.from_seed(bytes([203]) * 32)
    server.chain.airdrop(stranger.pubkey(), SOL)

    def settle(bot: Keypair, treasury: Any) -> Any:
        return bp.settle(
            op.ref,
            user=op.user.pubkey(),
            nonce=0,
            treasury=treasury,
            bot=bot.pubkey(),
            payer=bot.pubkey(),
            amount=1,
            namespace_id=op.namespace_id,
        )

    _, err = await send_skip_preflight(
        client, build_tx(await blockhash(client), stranger, [settle(stranger, op.treasury.pubkey())])
    )
    assert err == custom_error(2001)  # has_one bot
    _, err = await send_skip_preflight(
        client, build_tx(await blockhash(client), op.bot, [settle(op.bot, Keypair().pubkey())])
    )
    assert err == custom_error(2003)  # treasury is not the operator's
    assert (await user_state(client, op)).locked_amount == 10_000_000


async def test_withdraw_keeps_locked_lamports(client: AsyncClient, server: LocalnetServer) -> None:
    op = await make_operator(client, ProgramVersion.V2)
    recover_info = op.authorize(nonce=0, deadline=server.chain.unix_timestamp + 600)
    await client.send_transaction(
        build_tx(await blockhash(client), op.bot, [op.lock_ix(recover_info, 30_000_000, nonce=0)]),
        TxOpts(skip_confirmation=False),
    )
    too_much = bp.withdraw(op.ref, user=op.user.pubkey(), payer=op.user.pubkey(), amount=20_000_001)
    _, err = await send_skip_preflight(client, build_tx(await blockhash(client), op.user, [too_much]))
    assert err == custom_error(error_number(ProgramVersion.V2, "insufficient_funds"))
    user_before = (await client.get_balance(op.user.pubkey())).value
    ok = bp.withdraw(op.ref, user=op.user.pubkey(), payer=op.user.pubkey(), amount=19_000_000)
    await client.send_transaction(
        build_tx(await blockhash(client), op.user, [ok]), TxOpts(skip_confirmation=False)
    )
    assert (await client.get_balance(op.user.pubkey())).value == user_before + 19_000_000 - FEE
    assert (await client.get_balance(op.vault)).value == 31_000_000


async def test_a_pay_that_leaves_the_vault_below_rent_fails_for_rent(
    client: AsyncClient, server: LocalnetServer
) -> None:
    op = await make_operator(client, ProgramVersion.V2, deposit=2_000_000)
    recover_info = op.authorize(nonce=0, deadline=server.chain.unix_timestamp + 600)
    tx = build_tx(await blockhash(client), op.bot, [op.pay_ix(recover_info, 1_500_000)])
    _, err = await send_skip_preflight(client, tx)
    vault_index = list(tx.message.account_keys).index(op.vault)
    assert err == {"InsufficientFundsForRent": {"account_index": vault_index}}
    assert (await client.get_balance(op.vault)).value == 2_000_000
    assert (await user_state(client, op)).nonce == 0
