"""The pure chain model in-process (no HTTP): Anchor constraint errors, the System program, the clock,
extra program ids, snapshots.  Transactions are still real signed bytes."""

from __future__ import annotations

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.transaction import VersionedTransaction

from device.localnet import (
    Chain,
    LocalnetError,
    PreflightFailure,
    bootstrap_global_v1,
    bootstrap_namespace,
    rent_exempt_minimum,
)
from device.solana import program as bp
from device.solana.program import ProgramRef, ProgramVersion, error_number
from tests.fixtures.clock import FakeClock
from tests.fixtures.localnet import (
    FEE,
    SOL,
    V1,
    V2,
    Operator,
    build_tx,
    make_operator,
    stored,
)


@pytest.fixture
def chain() -> Chain:
    return Chain(clock=FakeClock())


def land(
    chain: Chain, payer: Keypair, instructions: list[Instruction], signers: list[Keypair] | None = None
) -> object:
    """Send with skip_preflight; return the landed transaction's err JSON (None = success).

    The clock moves one slot first: with a frozen clock, identical instructions would otherwise make an
    identical transaction, which the chain (rightly) treats as a duplicate.
    """
    chain.advance_clock(0.4)
    tx = build_tx(chain.latest_blockhash()[0], payer, instructions, signers or [])
    dropped = len(chain.dropped)
    signature = chain.send_transaction(tx, skip_preflight=True)
    assert len(chain.dropped) == dropped, chain.dropped[-1].reason
    record = chain.record(signature)
    assert record is not None and record.transaction == tx
    return None if record.result.err is None else record.result.err.json


def logs_of(chain: Chain) -> tuple[str, ...]:
    return list(chain.records())[-1].result.logs


def custom(code: int) -> dict[str, object]:
    return {"InstructionError": [0, {"Custom": code}]}


def with_account(ix: Instruction, index: int, meta: AccountMeta) -> Instruction:
    accounts = list(ix.accounts)
    accounts[index] = meta
    return Instruction(ix.program_id, bytes(ix.data), accounts)


def funded(chain: Chain, seed: int) -> Keypair:
    keypair = Keypair.from_seed(bytes([seed]) * 32)
    chain.airdrop(keypair.pubkey(), SOL)
    return keypair


async def operator(chain: Chain, version: ProgramVersion = ProgramVersion.V2) -> Operator:
    return await make_operator(chain, version)


# --------------------------------------------------------------------------------------------------------
# Genesis, clock, blockhashes


def test_genesis_deploys_both_programs_and_the_system_program(chain: Chain) -> None:
    for version in ProgramVersion:
        account = chain.account(bp.DEFAULT_PROGRAM_IDS[version])
        assert account is not None and account.executable
        assert str(account.owner) == "BPFLoaderUpgradeab1e11111111111111111111111"
    system = chain.account(SYSTEM_PROGRAM_ID)
    assert system is not None and system.executable


def test_clock_moves_timestamp_and_slots_together() -> None:
    clock = FakeClock()
    chain = Chain(clock=clock)
    assert chain.slot == 0
    clock.now += 4.0
    assert chain.slot == 10
    start = chain.unix_timestamp
    chain.advance_clock(60)
    assert chain.unix_timestamp == start + 60
    assert chain.slot == 160
    with pytest.raises(LocalnetError):
        chain.advance_clock(-1)
    clock.now -= 100  # a wall clock stepping back never moves slots backwards
    assert chain.slot == 160


def test_blockhashes_expire_after_150_slots(chain: Chain) -> None:
    blockhash, last_valid = chain.latest_blockhash()
    assert last_valid == chain.slot + 150
    chain.advance_clock(60)  # 150 slots
    assert chain.is_blockhash_valid(blockhash)
    chain.advance_clock(0.4)
    assert not chain.is_blockhash_valid(blockhash)


def test_identical_airdrops_get_distinct_signatures(chain: Chain) -> None:
    key = Keypair().pubkey()
    first = chain.request_airdrop(key, SOL)
    second = chain.request_airdrop(key, SOL)
    assert first != second
    assert chain.balance(key) == 2 * SOL


# --------------------------------------------------------------------------------------------------------
# Program model: constraints and errors


async def test_initialize_twice_fails_already_in_use(chain: Chain) -> None:
    op = await operator(chain)
    err = land(chain, op.authority, [bp.initialize(V2, payer=op.authority.pubkey())])
    assert err == custom(0)
    global_key = bp.global_pda(V2.program_id)
    assert f"Allocate: account Address {{ address: {global_key}, base: None }} already in use" in logs_of(
        chain
    )


async def test_namespaces_count_up_and_names_are_checked(chain: Chain) -> None:
    op = await operator(chain)
    authority, bot, treasury = op.authority, op.bot.pubkey(), op.treasury.pubkey()
    assert await bootstrap_namespace(chain, authority, bot, treasury, "DeCharge") == 1
    namespace = chain.account(bp.namespace_pda(V2.program_id, 1))
    assert namespace is not None
    decoded = bp.NamespaceAccount.decode(namespace.data)
    assert (decoded.id, decoded.name, decoded.bot, decoded.created_at) == (
        1,
        "DeCharge",
        bot,
        chain.unix_timestamp,
    )

    def create(name: str, namespace_id: int = 2, *, bot_key: Pubkey = bot) -> object:
        ix = bp.create_namespace(
            V2,
            namespace_id=namespace_id,
            name=name,
            authority=authority.pubkey(),
            treasury=treasury,
            bot=bot_key,
            payer=authority.pubkey(),
        )
        return land(chain, authority, [ix])

    assert create("ab") == custom(error_number(ProgramVersion.V2, "name_too_short"))
    assert create("x" * 51) == custom(3004)  # does not fit the 182-byte account
    assert create("abc", namespace_id=5) == custom(2006)  # not the global nonce
    assert create("abc", bot_key=op.user_account) == custom(2003)  # bot must be data-empty
    assert create("abc") is None
    assert bp.GlobalAccountV2.decode(stored(chain, bp.global_pda(V2.program_id))).namespace_nonce == 3


async def test_register_twice_and_deposit_unregistered(chain: Chain) -> None:
    op = await operator(chain)
    again = bp.register(V2, user=op.user.pubkey(), payer=op.user.pubkey())
    assert land(chain, op.user, [again]) == custom(0)
    stranger = funded(chain, 90)
    deposit = bp.deposit(V2, user=stranger.pubkey(), payer=stranger.pubkey(), amount=RENT)
    assert land(chain, stranger, [deposit]) == custom(3012)
    assert any("AnchorError caused by account: user_account." in line for line in logs_of(chain))


RENT = rent_exempt_minimum(0)


async def test_account_constraint_errors_on_pay(chain: Chain) -> None:
    op = await operator(chain)
    good = op.authorize(nonce=0, deadline=chain.unix_timestamp + 60)
    pay = op.pay_ix(good, 1_000_000)

    # has_one bot, with Left/Right pubkeys logged
    other_bot = funded(chain, 91)
    assert land(chain, other_bot, [op.pay_ix(good, 1_000_000, bot=other_bot)]) == custom(2001)
    logs = logs_of(chain)
    assert "Program log: Left:" in logs and f"Program log: {other_bot.pubkey()}" in logs

    # seeds: the namespace account of id 0 with namespace_id 1 in the data
    data = bytearray(bytes(pay.data))
    data[8:16] = (1).to_bytes(8, "little")
    assert land(chain, op.bot, [Instruction(pay.program_id, bytes(data), list(pay.accounts))]) == custom(2006)

    # mut: user_account passed read-only
    readonly = with_account(pay, 1, AccountMeta(op.user_account, is_signer=False, is_writable=False))
    assert land(chain, op.bot, [readonly]) == custom(2000)

    # signer: bot not signing (someone else pays)
    payer = funded(chain, 92)
    unsigned_bot = with_account(
        with_account(pay, 5, AccountMeta(op.bot.pubkey(), is_signer=False, is_writable=False)),
        6,
        AccountMeta(payer.pubkey(), is_signer=True, is_writable=True),
    )
    assert land(chain, payer, [unsigned_bot]) == custom(3010)

    # system_program replaced
    not_system = with_account(pay, 7, AccountMeta(Keypair().pubkey(), is_signer=False, is_writable=False))
    assert land(chain, op.bot, [not_system]) == custom(3008)

    # too few accounts
    short = Instruction(pay.program_id, bytes(pay.data), list(pay.accounts)[:4])
    assert land(chain, op.bot, [short]) == custom(3005)

    # nothing above moved the vault or the nonce
    assert chain.balance(op.vault) == 50_000_000
    assert bp.UserAccount.decode(stored(chain, op.user_account)).nonce == 0


async def test_instruction_data_errors(chain: Chain) -> None:
    op = await operator(chain)
    pay = op.pay_ix(op.authorize(nonce=0, deadline=chain.unix_timestamp + 60), 1)
    accounts = list(pay.accounts)
    assert land(chain, op.bot, [Instruction(pay.program_id, b"\x01\x02", accounts)]) == custom(100)
    assert land(chain, op.bot, [Instruction(pay.program_id, bytes(8), accounts)]) == custom(101)
    assert land(chain, op.bot, [Instruction(pay.program_id, bytes(pay.data)[:-1], accounts)]) == custom(102)
    update = bp.instruction_discriminator("update_namespace") + bytes(13)
    err = land(chain, op.bot, [Instruction(pay.program_id, update, accounts)])
    assert err == {"InstructionError": [0, "InvalidInstructionData"]}
    assert "Program log: localnet: update_namespace is not modeled by this stand-in" in logs_of(chain)


async def test_unknown_program_fails_but_charges_the_fee(chain: Chain) -> None:
    payer = funded(chain, 93)
    ix = Instruction(Keypair().pubkey(), b"", [])
    assert land(chain, payer, [ix]) == "ProgramAccountNotFound"
    assert chain.balance(payer.pubkey()) == SOL - FEE


async def test_preflight_failure_carries_the_result(chain: Chain) -> None:
    op = await operator(chain)
    tx = build_tx(chain.latest_blockhash()[0], op.bot, [op.pay_ix(op.authorize(nonce=5, deadline=2**40), 1)])
    with pytest.raises(PreflightFailure) as caught:
        chain.send_transaction(tx)
    assert caught.value.result.err is not None
    assert caught.value.result.err.custom_code == error_number(ProgramVersion.V2, "signature_mismatch")
    assert caught.value.code == "preflight_failed"


async def test_v1_bootstrap_is_idempotent_and_refuses_a_different_operator(chain: Chain) -> None:
    op = await operator(chain, ProgramVersion.V1)
    await bootstrap_global_v1(chain, op.authority, op.bot.pubkey(), op.treasury.pubkey())
    with pytest.raises(LocalnetError) as caught:
        await bootstrap_global_v1(chain, op.authority, Keypair().pubkey(), op.treasury.pubkey())
    assert caught.value.code == "bootstrap_failed"
    found = bp.GlobalAccountV1.decode(stored(chain, bp.global_pda(V1.program_id)))
    assert (found.authority, found.bot, found.treasury) == (
        op.authority.pubkey(),
        op.bot.pubkey(),
        op.treasury.pubkey(),
    )


async def test_extra_program_ids_run_the_same_model() -> None:
    extra = Keypair().pubkey()
    chain = Chain(programs={extra: ProgramVersion.V2}, clock=FakeClock())
    ref = ProgramRef(ProgramVersion.V2, extra)
    authority, bot, treasury = funded(chain, 94), Keypair(), Keypair()
    assert (
        await bootstrap_namespace(chain, authority, bot.pubkey(), treasury.pubkey(), "Extra", program=ref)
        == 0
    )
    assert chain.account(bp.namespace_pda(extra, 0)) is not None
    assert chain.account(bp.global_pda(V2.program_id)) is None  # the default deployment is untouched


async def test_snapshot_round_trip(chain: Chain) -> None:
    op = await operator(chain)
    auth = op.authorize(nonce=0, deadline=chain.unix_timestamp + 60)
    assert land(chain, op.bot, [op.pay_ix(auth, 1_000_000)]) is None
    copy = Chain.from_snapshot(chain.snapshot(), clock=FakeClock())
    assert copy.accounts() == chain.accounts()
    assert [r.signature for r in copy.records()] == [r.signature for r in chain.records()]
    assert [r.result for r in copy.records()] == [r.result for r in chain.records()]
    assert copy.latest_blockhash() == chain.latest_blockhash()


async def test_v0_message_pay(chain: Chain) -> None:
    op = await operator(chain)
    auth = op.authorize(nonce=0, deadline=chain.unix_timestamp + 60)
    tx = build_tx(chain.latest_blockhash()[0], op.bot, [op.pay_ix(auth, 1_000_000)], v0=True)
    assert isinstance(tx, VersionedTransaction)
    chain.send_transaction(tx)
    assert chain.balance(op.vault) == 49_000_000
