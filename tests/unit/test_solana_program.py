"""Golden tests for device.solana.program against shared/reference/xephy-protocol.md section 6.

Every expected value is copied from the reference (sections 6.2-6.7), not computed by the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from device.errors import DeviceError
from device.solana import program as bp
from device.solana.program import ProgramRef, ProgramVersion

V1, V2 = ProgramVersion.V1, ProgramVersion.V2
SYSTEM = "11111111111111111111111111111111"
USER = Pubkey.from_string("AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9")

# section 6.2, for USER
PDAS = {
    V2: {
        "global": "7cMyxH8boxidgaKqgyLhi7VCDc1uhdyhZdPxxcMFyw3y",
        "namespace0": "7M6t7B4h3SWXEwPnBQKCfxZYgBqdJfQP229KQwfCEyn9",
        "user": "CwexcgYQ4avrkFoCzDscGWeAQ4s1Pt4tmq9pNLa6PTXo",
        "vault": "7Sb7PFDXLykYgaACB8a9eSmsfdokKeduZv1faAE9yGGa",
        "lock0": "A7PvarneTZsfyJjXpsL4X4Bm7YYobPfMLwNF5nN2FhyG",
    },
    V1: {
        "global": "8GcfxndW2cRYujP3oG36yfMgLiyWdS9EizGddZ7K3beK",
        "user": "ELAF3YguZ5mQfFi6GdMqrP1WEa5stKL8Y33avdxgfWVg",
        "vault": "22pc4rutW2MF8pYTZbLM44wBW1fSDqG82FFvpjXtzjji",
        "lock0": "CWS5N5kehCbwDSFBwHPWiopD67vvsRPffJ4Vv7ga42hQ",
    },
}

# section 6.7
SIGNATURE_V2 = bytes.fromhex(
    "4d0b4f42edf48cd4af2aef5e13d457643c0a7b414b9a3d635d0c9e1afa60e279"
    "313020e9cfa46f3cc0e108f49a393a3514066a984cdc3f37b46636ab52edc20c"
)
SIGNATURE_V1 = bytes.fromhex(
    "40a208e3addbfa7fd0496adc7f60aa0c2dc2812562063bd2854033cd0eb15e16"
    "4e76c4cca2e3ed2021acf9d8382a56800dda4b2aac08a88cb3d861698847e200"
)
EXTRA_DATA = bytes.fromhex("00112233445566778899aabbccddeeff") + bytes(48)
DEADLINE = 1741234567
PAY_AMOUNT = 5_000_000

BOT = Pubkey.from_string("9nyhqLqmbWoUuNXA1XCVnEqiS9UWvxFYa1yynVVFzR4D")
TREASURY = Pubkey.from_bytes(bytes(range(32)))
PAYER = Pubkey.from_bytes(bytes(range(1, 33)))
AUTHORITY = Pubkey.from_bytes(bytes(range(2, 34)))


def recover_info(signature: bytes = SIGNATURE_V2) -> bp.ED25519RecoverInfo:
    return bp.ED25519RecoverInfo(signature, EXTRA_DATA, DEADLINE)


def metas(ix: Instruction) -> list[tuple[str, bool, bool]]:
    """(pubkey, signer, writable) per account, in order."""
    return [(str(m.pubkey), m.is_signer, m.is_writable) for m in ix.accounts]


def code_of(exc: pytest.ExceptionInfo[DeviceError]) -> str:
    return exc.value.code


# ---------------------------------------------------------------------------------------------------------
# Program ids, discriminators, PDAs


def test_default_program_ids() -> None:
    assert str(bp.DEFAULT_PROGRAM_IDS[V1]) == "GguVKxU88NUe3GLtns7Uaa6a8Pjb9USKq3WD1rjZnPS9"
    assert str(bp.DEFAULT_PROGRAM_IDS[V2]) == "8Pna6CZRquk83XT6ecisT9TYVfN3hY299GH2yEJk73dL"
    assert ProgramVersion("v1") is V1 and ProgramVersion("v2") is V2
    assert ProgramRef.default(V2) == ProgramRef(V2, bp.DEFAULT_PROGRAM_IDS[V2])


@pytest.mark.parametrize(
    ("name", "hex_"),
    [
        ("initialize", "afaf6d1f0d989bed"),
        ("create_namespace", "cdbd23ffd674196b"),
        ("update_namespace", "3d6bcf4fef5824ff"),
        ("register", "d37c430fd3c2b2f0"),
        ("deposit", "f223c68952e1f2b6"),
        ("withdraw", "b712469c946da122"),
        ("lock", "1513d02bed3eff57"),
        ("settle", "af2ab957908366d4"),
        ("pay", "7712d841c0757adc"),
        ("set_bot", "88b963ecc883cc76"),
        ("set_treasury", "3961c45fc3ce6a88"),
    ],
)
def test_instruction_discriminators(name: str, hex_: str) -> None:
    assert bp.instruction_discriminator(name).hex() == hex_


@pytest.mark.parametrize(
    ("cls", "hex_", "size"),
    [
        (bp.GlobalAccountV2, "81697cabbd2a6c45", 16),
        (bp.GlobalAccountV1, "81697cabbd2a6c45", 104),
        (bp.UserAccount, "d3218810ba6ef27f", 56),
        (bp.LockAccountV2, "df40477cff5676c0", 24),
        (bp.LockAccountV1, "df40477cff5676c0", 16),
        (bp.NamespaceAccount, "835af9322b242689", 182),
    ],
)
def test_account_discriminators_and_sizes(cls: Any, hex_: str, size: int) -> None:
    assert cls.discriminator().hex() == hex_
    assert size == cls.SIZE


@pytest.mark.parametrize("version", [V1, V2])
def test_pdas_of_the_example_user(version: ProgramVersion) -> None:
    pid = bp.DEFAULT_PROGRAM_IDS[version]
    expected = PDAS[version]
    assert str(bp.global_pda(pid)) == expected["global"]
    assert str(bp.user_pda(pid, USER)) == expected["user"]
    assert str(bp.vault_pda(pid, USER)) == expected["vault"]
    assert str(bp.lock_pda(pid, USER, 0)) == expected["lock0"]
    if version is V2:
        assert str(bp.namespace_pda(pid, 0)) == expected["namespace0"]


def test_pda_seeds_are_little_endian_u64() -> None:
    pid = bp.DEFAULT_PROGRAM_IDS[V2]
    seeds = [b"LOCK", bytes(USER), (1).to_bytes(8, "little")]
    assert bp.lock_pda(pid, USER, 1) == Pubkey.find_program_address(seeds, pid)[0]
    assert (
        bp.namespace_pda(pid, 258)
        == Pubkey.find_program_address([b"NAMESPACE", b"\x02\x01" + bytes(6)], pid)[0]
    )
    with pytest.raises(bp.InvalidArgument):
        bp.lock_pda(pid, USER, -1)
    with pytest.raises(bp.InvalidArgument):
        bp.namespace_pda(pid, 2**64)


# ---------------------------------------------------------------------------------------------------------
# Instruction data: the section 6.7 golden bytes and the sizes of section 6.4


PAY_DATA_V2 = bytes.fromhex(
    "7712d841c0757adc"
    "0000000000000000" + SIGNATURE_V2.hex() + EXTRA_DATA.hex() + "8721c96700000000" + "404b4c0000000000"
)


def test_pay_data_v2_byte_for_byte() -> None:
    assert len(PAY_DATA_V2) == 160
    ix = bp.pay(
        ProgramRef.default(V2),
        user=USER,
        treasury=TREASURY,
        bot=BOT,
        payer=PAYER,
        recover_info=recover_info(),
        amount=PAY_AMOUNT,
        namespace_id=0,
    )
    assert bytes(ix.data) == PAY_DATA_V2
    assert ix.program_id == bp.DEFAULT_PROGRAM_IDS[V2]


def test_pay_data_v1_has_no_namespace_id() -> None:
    expected = bytes.fromhex(
        "7712d841c0757adc" + SIGNATURE_V1.hex() + EXTRA_DATA.hex() + "8721c96700000000" + "404b4c0000000000"
    )
    ix = bp.pay(
        ProgramRef.default(V1),
        user=USER,
        treasury=TREASURY,
        bot=BOT,
        payer=PAYER,
        recover_info=recover_info(SIGNATURE_V1),
        amount=PAY_AMOUNT,
    )
    assert len(expected) == 152
    assert bytes(ix.data) == expected


# lock and settle (pay-as-you-go sessions): section 6.4 discriminators, the 6.7 authorization,
# DeCharge's PREPAID_AMOUNT 10,000,000 = 0x989680 and TRANSFER_AMOUNT 5,000,000 = 0x4c4b40
LOCK_AMOUNT_LE = "8096980000000000"


def test_lock_data_v2_byte_for_byte() -> None:
    expected = bytes.fromhex(
        "1513d02bed3eff57"
        + "0000000000000000"
        + SIGNATURE_V2.hex()
        + EXTRA_DATA.hex()
        + "8721c96700000000"
        + LOCK_AMOUNT_LE
    )
    ix = bp.lock(
        ProgramRef.default(V2),
        user=USER,
        nonce=0,
        bot=BOT,
        payer=PAYER,
        recover_info=recover_info(),
        amount=10_000_000,
        namespace_id=0,
    )
    assert len(expected) == 160
    assert bytes(ix.data) == expected


def test_lock_data_v1_has_no_namespace_id() -> None:
    expected = bytes.fromhex(
        "1513d02bed3eff57" + SIGNATURE_V1.hex() + EXTRA_DATA.hex() + "8721c96700000000" + LOCK_AMOUNT_LE
    )
    ix = bp.lock(
        ProgramRef.default(V1),
        user=USER,
        nonce=0,
        bot=BOT,
        payer=PAYER,
        recover_info=recover_info(SIGNATURE_V1),
        amount=10_000_000,
    )
    assert len(expected) == 152
    assert bytes(ix.data) == expected


@pytest.mark.parametrize("version", [V1, V2])
def test_settle_data_is_the_same_24_bytes_in_both_versions(version: ProgramVersion) -> None:
    ix = bp.settle(
        ProgramRef.default(version),
        user=USER,
        nonce=3,
        treasury=TREASURY,
        bot=BOT,
        payer=PAYER,
        amount=PAY_AMOUNT,
    )
    assert bytes(ix.data).hex() == "af2ab957908366d4" + "0300000000000000" + "404b4c0000000000"
    assert bp.decode_instruction(version, bytes(ix.data)) == bp.SettleArgs(nonce=3, amount=PAY_AMOUNT)


@pytest.mark.parametrize(("version", "size"), [(V2, 160), (V1, 152)])
def test_signed_instruction_sizes(version: ProgramVersion, size: int) -> None:
    for args in (bp.LockArgs(recover_info(), 1), bp.PayArgs(recover_info(), 1)):
        assert len(bp.encode_instruction_data(version, args)) == size


@pytest.mark.parametrize("version", [V1, V2])
def test_unsigned_instruction_sizes(version: ProgramVersion) -> None:
    sizes: dict[bp.InstructionArgs, int] = {
        bp.SettleArgs(nonce=3, amount=4): 24,
        bp.DepositArgs(amount=1): 16,
        bp.WithdrawArgs(amount=1): 16,
        bp.InitializeArgs(): 8,
        bp.RegisterArgs(): 8,
    }
    for args, size in sizes.items():
        assert len(bp.encode_instruction_data(version, args)) == size


def test_settle_and_create_namespace_layout() -> None:
    data = bp.encode_instruction_data(V2, bp.SettleArgs(nonce=7, amount=PAY_AMOUNT))
    assert data.hex() == "af2ab957908366d4" + "0700000000000000" + "404b4c0000000000"
    data = bp.encode_instruction_data(V2, bp.CreateNamespaceArgs("Gacha"))
    assert data.hex() == "cdbd23ffd674196b" + "05000000" + b"Gacha".hex()


def test_recover_info_borsh_is_136_bytes() -> None:
    encoded = recover_info().encode()
    assert len(encoded) == bp.ED25519RecoverInfo.SIZE == 136
    assert encoded == SIGNATURE_V2 + EXTRA_DATA + bytes.fromhex("8721c96700000000")
    negative = bp.ED25519RecoverInfo(SIGNATURE_V2, EXTRA_DATA, -1).encode()
    assert negative[-8:] == b"\xff" * 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"signature": SIGNATURE_V2[:63]},
        {"extra_data": EXTRA_DATA + b"\x00"},
        {"extra_data": list(EXTRA_DATA)},
        {"deadline": 2**63},
        {"deadline": "1741234567"},
    ],
)
def test_recover_info_refuses_wrong_shapes(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"signature": SIGNATURE_V2, "extra_data": EXTRA_DATA, "deadline": DEADLINE}
    fields.update(kwargs)
    with pytest.raises(bp.InvalidArgument) as exc:
        bp.ED25519RecoverInfo(**fields)
    assert exc.value.code == "recover_info_invalid"


# ---------------------------------------------------------------------------------------------------------
# Account metas (order, signer, writable) -- section 6.4 tables


def v2_ref() -> ProgramRef:
    return ProgramRef.default(V2)


def v1_ref() -> ProgramRef:
    return ProgramRef.default(V1)


def test_pay_metas_v2() -> None:
    ix = bp.pay(
        v2_ref(), user=USER, treasury=TREASURY, bot=BOT, payer=PAYER, recover_info=recover_info(), amount=1
    )
    p = PDAS[V2]
    assert metas(ix) == [
        (p["namespace0"], False, False),
        (p["user"], False, True),
        (str(USER), False, True),
        (str(TREASURY), False, True),
        (p["vault"], False, True),
        (str(BOT), True, False),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]


def test_pay_metas_v1_take_the_global_account_read_only() -> None:
    ix = bp.pay(
        v1_ref(), user=USER, treasury=TREASURY, bot=BOT, payer=PAYER, recover_info=recover_info(), amount=1
    )
    p = PDAS[V1]
    assert metas(ix) == [
        (p["global"], False, False),
        (p["user"], False, True),
        (str(USER), False, True),
        (str(TREASURY), False, True),
        (p["vault"], False, True),
        (str(BOT), True, False),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]


@pytest.mark.parametrize("version", [V1, V2])
def test_lock_metas(version: ProgramVersion) -> None:
    ref = ProgramRef.default(version)
    ix = bp.lock(ref, user=USER, nonce=0, bot=BOT, payer=PAYER, recover_info=recover_info(), amount=1)
    p = PDAS[version]
    assert metas(ix) == [
        (p["namespace0"] if version is V2 else p["global"], False, False),
        (p["user"], False, True),
        (str(USER), False, True),
        (p["lock0"], False, True),
        (p["vault"], False, False),
        (str(BOT), True, False),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]


@pytest.mark.parametrize("version", [V1, V2])
def test_settle_metas(version: ProgramVersion) -> None:
    ref = ProgramRef.default(version)
    ix = bp.settle(ref, user=USER, nonce=0, treasury=TREASURY, bot=BOT, payer=PAYER, amount=1)
    p = PDAS[version]
    assert metas(ix) == [
        (p["namespace0"] if version is V2 else p["global"], False, False),
        (p["user"], False, True),
        (str(USER), False, True),
        (str(TREASURY), False, True),
        (p["lock0"], False, True),
        (p["vault"], False, True),
        (str(BOT), True, False),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]


@pytest.mark.parametrize("version", [V1, V2])
def test_user_instruction_metas(version: ProgramVersion) -> None:
    ref = ProgramRef.default(version)
    p = PDAS[version]
    assert metas(bp.register(ref, user=USER, payer=PAYER)) == [
        (p["user"], False, True),
        (str(USER), True, False),
        (p["vault"], False, False),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]
    transfer = [
        (p["user"], False, True),
        (str(USER), True, True),
        (p["vault"], False, True),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]
    assert metas(bp.deposit(ref, user=USER, payer=PAYER, amount=5)) == transfer
    assert metas(bp.withdraw(ref, user=USER, payer=PAYER, amount=5)) == transfer


def test_initialize_and_create_namespace_metas() -> None:
    assert metas(bp.initialize(v2_ref(), payer=PAYER)) == [
        (PDAS[V2]["global"], False, True),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]
    v1 = bp.initialize(v1_ref(), payer=PAYER, authority=AUTHORITY, treasury=TREASURY, bot=BOT)
    assert metas(v1) == [
        (PDAS[V1]["global"], False, True),
        (str(AUTHORITY), False, False),
        (str(TREASURY), False, False),
        (str(BOT), False, False),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]
    ns = bp.create_namespace(
        v2_ref(), namespace_id=0, name="Gacha", authority=AUTHORITY, treasury=TREASURY, bot=BOT, payer=PAYER
    )
    assert metas(ns) == [
        (PDAS[V2]["global"], False, True),
        (PDAS[V2]["namespace0"], False, True),
        (str(AUTHORITY), False, False),
        (str(TREASURY), False, False),
        (str(BOT), False, False),
        (str(PAYER), True, True),
        (SYSTEM, False, False),
    ]


def test_namespace_id_selects_the_namespace_account() -> None:
    pid = bp.DEFAULT_PROGRAM_IDS[V2]
    ix = bp.pay(
        v2_ref(),
        user=USER,
        treasury=TREASURY,
        bot=BOT,
        payer=PAYER,
        recover_info=recover_info(),
        amount=1,
        namespace_id=3,
    )
    assert ix.accounts[0].pubkey == bp.namespace_pda(pid, 3)
    assert bytes(ix.data)[8:16] == (3).to_bytes(8, "little")
    ix = bp.settle(
        v2_ref(), user=USER, nonce=9, treasury=TREASURY, bot=BOT, payer=PAYER, amount=1, namespace_id=3
    )
    assert ix.accounts[0].pubkey == bp.namespace_pda(pid, 3)
    assert ix.accounts[4].pubkey == bp.lock_pda(pid, USER, 9)


def test_pay_transaction_fits_in_a_packet_when_bot_pays_fees() -> None:
    bot = Keypair.from_seed(bytes([7] * 32))
    for version in (V1, V2):
        ix = bp.pay(
            ProgramRef.default(version),
            user=USER,
            treasury=TREASURY,
            bot=bot.pubkey(),
            payer=bot.pubkey(),
            recover_info=recover_info(),
            amount=PAY_AMOUNT,
        )
        tx = Transaction.new_signed_with_payer([ix], bot.pubkey(), [bot], Hash.default())
        assert tx.verify_with_results() == [True]
        assert len(bytes(tx)) <= 1232


# ---------------------------------------------------------------------------------------------------------
# Builder refusals


def test_v1_has_no_namespaces() -> None:
    for namespace_id in (1, 2**64 - 1):
        with pytest.raises(bp.InvalidArgument) as exc:
            bp.pay(
                v1_ref(),
                user=USER,
                treasury=TREASURY,
                bot=BOT,
                payer=PAYER,
                recover_info=recover_info(),
                amount=1,
                namespace_id=namespace_id,
            )
        assert code_of(exc) == "argument_invalid"
        with pytest.raises(bp.InvalidArgument):
            bp.settle(
                v1_ref(),
                user=USER,
                nonce=0,
                treasury=TREASURY,
                bot=BOT,
                payer=PAYER,
                amount=1,
                namespace_id=namespace_id,
            )
        with pytest.raises(bp.InvalidArgument):
            bp.encode_instruction_data(V1, bp.LockArgs(recover_info(), 1, namespace_id))
    with pytest.raises(bp.InvalidArgument):
        bp.create_namespace(
            v1_ref(),
            namespace_id=0,
            name="Gacha",
            authority=AUTHORITY,
            treasury=TREASURY,
            bot=BOT,
            payer=PAYER,
        )
    with pytest.raises(bp.InvalidArgument):
        bp.encode_instruction_data(V1, bp.CreateNamespaceArgs("Gacha"))


def test_initialize_arguments_per_version() -> None:
    with pytest.raises(bp.InvalidArgument):
        bp.initialize(v1_ref(), payer=PAYER, authority=AUTHORITY, treasury=TREASURY)
    with pytest.raises(bp.InvalidArgument):
        bp.initialize(v2_ref(), payer=PAYER, bot=BOT)


@pytest.mark.parametrize("amount", [-1, 2**64, True])
def test_amounts_must_be_u64(amount: int) -> None:
    with pytest.raises(bp.InvalidArgument) as exc:
        bp.deposit(v2_ref(), user=USER, payer=PAYER, amount=amount)
    assert code_of(exc) == "argument_invalid"
    with pytest.raises(bp.InvalidArgument):
        bp.pay(
            v2_ref(),
            user=USER,
            treasury=TREASURY,
            bot=BOT,
            payer=PAYER,
            recover_info=recover_info(),
            amount=amount,
        )


def test_builders_accept_u64_extremes() -> None:
    ix = bp.withdraw(v2_ref(), user=USER, payer=PAYER, amount=2**64 - 1)
    assert bytes(ix.data)[8:] == b"\xff" * 8


# ---------------------------------------------------------------------------------------------------------
# Borsh round trips


u64s = st.integers(min_value=0, max_value=bp.U64_MAX)
i64s = st.integers(min_value=bp.I64_MIN, max_value=bp.I64_MAX)
pubkeys = st.binary(min_size=32, max_size=32).map(Pubkey.from_bytes)
recover_infos = st.builds(
    bp.ED25519RecoverInfo, st.binary(min_size=64, max_size=64), st.binary(min_size=64, max_size=64), i64s
)
namespace_names = st.text(max_size=50).filter(lambda s: len(s.encode()) <= bp.NAMESPACE_NAME_MAX_BYTES)

accounts = st.one_of(
    st.builds(bp.GlobalAccountV1, pubkeys, pubkeys, pubkeys),
    st.builds(bp.GlobalAccountV2, u64s),
    st.builds(bp.NamespaceAccount, u64s, namespace_names, pubkeys, pubkeys, pubkeys, i64s, i64s),
    st.builds(bp.UserAccount, u64s, u64s, pubkeys),
    st.builds(bp.LockAccountV1, u64s),
    st.builds(bp.LockAccountV2, u64s, u64s),
)


@given(accounts)
def test_account_round_trip(account: Any) -> None:
    data = account.encode()
    assert len(data) == type(account).SIZE
    assert data[:8] == type(account).discriminator()
    assert type(account).decode(data) == account


common_args = st.one_of(
    st.just(bp.InitializeArgs()),
    st.just(bp.RegisterArgs()),
    st.builds(bp.DepositArgs, u64s),
    st.builds(bp.WithdrawArgs, u64s),
    st.builds(bp.SettleArgs, u64s, u64s),
)
v1_args = st.one_of(
    common_args,
    st.builds(bp.LockArgs, recover_infos, u64s),
    st.builds(bp.PayArgs, recover_infos, u64s),
)
v2_args = st.one_of(
    common_args,
    st.builds(bp.CreateNamespaceArgs, st.text()),
    st.builds(bp.LockArgs, recover_infos, u64s, u64s),
    st.builds(bp.PayArgs, recover_infos, u64s, u64s),
)


@given(v1_args)
def test_instruction_round_trip_v1(args: bp.InstructionArgs) -> None:
    data = bp.encode_instruction_data(V1, args)
    assert data[:8] == bp.instruction_discriminator(args.NAME)
    assert bp.decode_instruction(V1, data) == args


@given(v2_args)
def test_instruction_round_trip_v2(args: bp.InstructionArgs) -> None:
    data = bp.encode_instruction_data(V2, args)
    assert data[:8] == bp.instruction_discriminator(args.NAME)
    assert bp.decode_instruction(V2, data) == args


def test_decode_golden_pay() -> None:
    decoded = bp.decode_instruction(V2, PAY_DATA_V2)
    assert decoded == bp.PayArgs(recover_info(), PAY_AMOUNT, 0)


# ---------------------------------------------------------------------------------------------------------
# Decoder refusals


def layout_error(cls: Any, data: bytes) -> bp.AccountLayoutError:
    with pytest.raises(bp.AccountLayoutError) as exc:
        cls.decode(data)
    assert exc.value.code == "account_layout_invalid"
    assert isinstance(exc.value, bp.ProgramError) and isinstance(exc.value, DeviceError)
    return exc.value


def test_account_decoders_check_discriminator_and_length() -> None:
    user = bp.UserAccount(1, 2, USER).encode()
    assert layout_error(bp.UserAccount, b"").anchor_code == 3001
    assert layout_error(bp.UserAccount, user[:7]).anchor_code == 3001
    assert layout_error(bp.LockAccountV2, user).anchor_code == 3002
    assert layout_error(bp.UserAccount, user[:-1]).anchor_code == 3003
    assert layout_error(bp.UserAccount, user + b"\x00").anchor_code == 3003
    # same discriminator, different version: told apart by length
    v2_global = bp.GlobalAccountV2(5).encode()
    assert layout_error(bp.GlobalAccountV1, v2_global).anchor_code == 3003
    assert (
        layout_error(bp.GlobalAccountV2, bp.GlobalAccountV1(USER, BOT, TREASURY).encode()).anchor_code == 3003
    )
    assert layout_error(bp.LockAccountV1, bp.LockAccountV2(0, 1).encode()).anchor_code == 3003
    assert layout_error(bp.LockAccountV2, bp.LockAccountV1(1).encode()).anchor_code == 3003


def test_namespace_account_padding_and_name() -> None:
    account = bp.NamespaceAccount(0, "Gacha", AUTHORITY, BOT, TREASURY, 1_741_000_000, 1_741_000_001)
    data = account.encode()
    body = 8 + 8 + 4 + 5 + 3 * 32 + 2 * 8
    assert data[body:] == bytes(182 - body)
    assert bp.NamespaceAccount.decode(data[:body]) == account  # padding is optional
    assert bp.NamespaceAccount.decode(data + bytes(10)) == account
    layout_error(bp.NamespaceAccount, data[:-1] + b"\x01")  # non-zero after the last field
    bad_utf8 = data[:20] + b"\xff" + data[21:]
    assert "UTF-8" in str(layout_error(bp.NamespaceAccount, bad_utf8))
    huge_len = data[:16] + (1000).to_bytes(4, "little") + data[20:]
    layout_error(bp.NamespaceAccount, huge_len)
    with pytest.raises(bp.InvalidArgument):
        bp.NamespaceAccount(0, "x" * 51, AUTHORITY, BOT, TREASURY, 0, 0).encode()
    assert len(bp.NamespaceAccount(0, "x" * 50, AUTHORITY, BOT, TREASURY, 0, 0).encode()) == 182


def instruction_error(version: ProgramVersion, data: bytes) -> bp.InstructionDataError:
    with pytest.raises(bp.InstructionDataError) as exc:
        bp.decode_instruction(version, data)
    assert bp.describe_custom_error(version, exc.value.anchor_code)[1] == exc.value.code
    return exc.value


def test_decode_instruction_refusals() -> None:
    assert instruction_error(V2, PAY_DATA_V2[:7]).code == "instruction_missing"
    assert instruction_error(V2, b"\x00" * 8).code == "instruction_fallback_not_found"
    assert instruction_error(V2, bp.instruction_discriminator("update_namespace")).anchor_code == 101
    create = bp.encode_instruction_data(V2, bp.CreateNamespaceArgs("Gacha"))
    assert instruction_error(V1, create).anchor_code == 101
    for bad in (PAY_DATA_V2[:-1], PAY_DATA_V2 + b"\x00"):
        err = instruction_error(V2, bad)
        assert err.code == "instruction_did_not_deserialize" and err.anchor_code == 102
    # v2 pay data is 8 bytes too long for v1
    assert instruction_error(V1, PAY_DATA_V2).anchor_code == 102
    deposit = bp.encode_instruction_data(V2, bp.DepositArgs(1))
    assert instruction_error(V2, deposit[:-1]).anchor_code == 102
    bad_name = bp.instruction_discriminator("create_namespace") + (1).to_bytes(4, "little") + b"\xff"
    assert instruction_error(V2, bad_name).anchor_code == 102


# ---------------------------------------------------------------------------------------------------------
# Error tables (section 6.5)


V2_ERRORS = [
    "NameTooShort",
    "NoUpdateFields",
    "InvalidPubkey",
    "Unauthorized",
    "InsufficientFunds",
    "SignatureFormatInvalid",
    "SignatureRecoveryFailed",
    "SignatureMismatch",
    "SignatureExpired",
]
V1_ERRORS = [
    "Unauthorized",
    "InsufficientFunds",
    "SignatureFormatInvalid",
    "SignatureRecoveryFailed",
    "SignatureMismatch",
    "SignatureExpired",
]


@pytest.mark.parametrize(("version", "names"), [(V2, V2_ERRORS), (V1, V1_ERRORS)])
def test_custom_error_tables(version: ProgramVersion, names: list[str]) -> None:
    assert [bp.describe_custom_error(version, 6000 + i)[0] for i in range(len(names))] == names
    assert bp.describe_custom_error(version, 6000 + len(names)) == (
        f"Custom({6000 + len(names)})",
        "program_error",
    )


@pytest.mark.parametrize(
    ("version", "number", "expected"),
    [
        (V2, 6008, ("SignatureExpired", "signature_expired")),
        (V2, 6004, ("InsufficientFunds", "insufficient_funds")),
        (V2, 6007, ("SignatureMismatch", "signature_mismatch")),
        (V2, 6000, ("NameTooShort", "name_too_short")),
        (V1, 6005, ("SignatureExpired", "signature_expired")),
        (V1, 6001, ("InsufficientFunds", "insufficient_funds")),
        (V1, 6004, ("SignatureMismatch", "signature_mismatch")),
        (V2, 3012, ("AccountNotInitialized", "account_not_initialized")),
        (V1, 3012, ("AccountNotInitialized", "account_not_initialized")),
        (V2, 2003, ("ConstraintRaw", "constraint_raw")),
        (V2, 2006, ("ConstraintSeeds", "constraint_seeds")),
        (V2, 3002, ("AccountDiscriminatorMismatch", "account_discriminator_mismatch")),
        (V2, 101, ("InstructionFallbackNotFound", "instruction_fallback_not_found")),
        (V2, 102, ("InstructionDidNotDeserialize", "instruction_did_not_deserialize")),
        (V2, 0, ("AccountAlreadyInUse", "account_already_in_use")),
        (V1, 4242, ("Custom(4242)", "program_error")),
    ],
)
def test_describe_custom_error(version: ProgramVersion, number: int, expected: tuple[str, str]) -> None:
    assert bp.describe_custom_error(version, number) == expected


@pytest.mark.parametrize("version", [V1, V2])
def test_error_number_inverts_describe(version: ProgramVersion) -> None:
    for table in (bp.CUSTOM_ERRORS[version], bp.FRAMEWORK_ERRORS):
        for number in table:
            assert bp.error_number(version, bp.describe_custom_error(version, number)[1]) == number
    with pytest.raises(bp.InvalidArgument):
        bp.error_number(V1, "name_too_short")
