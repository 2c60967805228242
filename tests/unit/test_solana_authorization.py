"""Golden and behaviour tests for device.solana.authorization (reference section 6.6, 6.7, 9 items 4-5)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from device.errors import DeviceError
from device.solana import authorization as au
from device.solana.program import ED25519RecoverInfo, InvalidArgument, ProgramVersion

V1, V2 = ProgramVersion.V1, ProgramVersion.V2

# section 6.7
KEYPAIR = Keypair.from_seed(bytes([1] * 32))
USER = Pubkey.from_string("AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9")
EXTRA_DATA = bytes.fromhex("00112233445566778899aabbccddeeff") + bytes(48)
DEADLINE = 1741234567
NAME = "Gacha"

V2_MSG = EXTRA_DATA + bytes.fromhex("000000000000000000000000000000008721c96700000000")
V2_KECCAK = "2fa1a11a315e4cb26ac461b9c66c72b57b6ab5c61b247eee8ee5ac3de310aa33"
V2_BASE58 = "4Cw7EseTHtSAYVEcHgRLujjui4Yk87uAR8JkWFcQnzkS"
V2_TEXT = b"DePHY vending machine/Gacha:\n4Cw7EseTHtSAYVEcHgRLujjui4Yk87uAR8JkWFcQnzkS"
V2_SIGNATURE = (
    "4d0b4f42edf48cd4af2aef5e13d457643c0a7b414b9a3d635d0c9e1afa60e279"
    "313020e9cfa46f3cc0e108f49a393a3514066a984cdc3f37b46636ab52edc20c"
)

V1_MSG = EXTRA_DATA + bytes.fromhex("00000000000000008721c96700000000")
V1_KECCAK = "b7b219c212f9c3639b27b50a33aa100bddf7e6d416462a07b846145dc83f06f8"
V1_BASE58 = "DN584fceyW7nvwqTWnkxYmxThLPswUYGTZUAVSXY3mj5"
V1_TEXT = b"DePHY vending machine/Example:\nDN584fceyW7nvwqTWnkxYmxThLPswUYGTZUAVSXY3mj5"
V1_SIGNATURE = (
    "40a208e3addbfa7fd0496adc7f60aa0c2dc2812562063bd2854033cd0eb15e16"
    "4e76c4cca2e3ed2021acf9d8382a56800dda4b2aac08a88cb3d861698847e200"
)

MACHINE_HEX = "d041ea9854f2117b82452457c4e6d6593a96524027cd4032d2f40046deb78d93"
MACHINE = bytes.fromhex(MACHINE_HEX)


# ---------------------------------------------------------------------------------------------------------
# Golden vectors


def test_seed_gives_the_example_user() -> None:
    assert KEYPAIR.pubkey() == USER
    assert bytes(USER).hex() == "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"


def test_v2_golden_vector() -> None:
    msg = au.signed_message(V2, extra_data=EXTRA_DATA, nonce=0, deadline=DEADLINE, namespace_id=0)
    assert msg == V2_MSG and len(msg) == 88
    assert au.keccak256(msg).hex() == V2_KECCAK
    assert au.keccak256(msg) != hashlib.sha3_256(msg).digest()  # the original Keccak, not SHA3
    text = au.signed_text(V2, msg, namespace_name=NAME)
    assert text == V2_TEXT and len(text) == 73
    assert text.endswith(V2_BASE58.encode())
    auth = au.sign_authorization(
        KEYPAIR, V2, nonce=0, deadline=DEADLINE, extra_data=EXTRA_DATA, namespace_id=0, namespace_name=NAME
    )
    assert auth == au.RecoverInfoBytes(bytes.fromhex(V2_SIGNATURE), EXTRA_DATA, DEADLINE)


def test_v1_golden_vector() -> None:
    msg = au.signed_message(V1, extra_data=EXTRA_DATA, nonce=0, deadline=DEADLINE)
    assert msg == V1_MSG and len(msg) == 80
    assert au.keccak256(msg).hex() == V1_KECCAK
    text = au.signed_text(V1, msg, namespace_name=None)
    assert text == V1_TEXT and len(text) == 75
    assert text.endswith(V1_BASE58.encode())
    auth = au.sign_authorization(KEYPAIR, V1, nonce=0, deadline=DEADLINE, extra_data=EXTRA_DATA)
    assert auth.signature.hex() == V1_SIGNATURE
    assert (auth.extra_data, auth.deadline) == (EXTRA_DATA, DEADLINE)


def test_recover_info_bytes_is_the_instruction_argument() -> None:
    assert au.RecoverInfoBytes is ED25519RecoverInfo


def test_message_field_order_and_endianness() -> None:
    msg = au.signed_message(V2, extra_data=EXTRA_DATA, nonce=2, deadline=-1, namespace_id=1)
    assert msg[64:] == (1).to_bytes(8, "little") + (2).to_bytes(8, "little") + b"\xff" * 8


def test_prefix_arguments_per_version() -> None:
    with pytest.raises(InvalidArgument):
        au.signed_text(V2, V2_MSG, namespace_name=None)
    with pytest.raises(InvalidArgument):
        au.signed_text(V1, V1_MSG, namespace_name="Example")
    with pytest.raises(InvalidArgument):
        au.signed_message(V1, extra_data=EXTRA_DATA, nonce=0, deadline=DEADLINE, namespace_id=1)
    with pytest.raises(InvalidArgument):
        au.signed_message(V2, extra_data=EXTRA_DATA[:63], nonce=0, deadline=DEADLINE)


def test_multibyte_namespace_name_is_utf8() -> None:
    text = au.signed_text(V2, V2_MSG, namespace_name="Café")
    assert text == ("DePHY vending machine/Café:\n" + V2_BASE58).encode()


# ---------------------------------------------------------------------------------------------------------
# verify_authorization


GOLDEN_V2 = au.RecoverInfoBytes(bytes.fromhex(V2_SIGNATURE), EXTRA_DATA, DEADLINE)
GOLDEN_V1 = au.RecoverInfoBytes(bytes.fromhex(V1_SIGNATURE), EXTRA_DATA, DEADLINE)


def verify(version: ProgramVersion = V2, **overrides: Any) -> None:
    kwargs: dict[str, Any] = {
        "user": USER,
        "auth": GOLDEN_V2 if version is V2 else GOLDEN_V1,
        "onchain_nonce": 0,
        "payload_nonce": 0,
        "now": DEADLINE - 60,
        "namespace_id": 0,
        "namespace_name": NAME if version is V2 else None,
        "available_lamports": 10_000_000,
        "amount": 5_000_000,
    }
    kwargs.update(overrides)
    au.verify_authorization(version, **kwargs)


def refused(version: ProgramVersion = V2, **overrides: Any) -> str:
    with pytest.raises(au.AuthorizationError) as exc:
        verify(version, **overrides)
    assert isinstance(exc.value, DeviceError)
    return exc.value.code


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("version", [V1, V2])
def test_valid_golden_authorization_passes(version: ProgramVersion) -> None:
    verify(version)


@pytest.mark.parametrize("bit", [0, 255, 256, 511])
def test_flipped_signature_bit_is_signature_invalid(bit: int) -> None:
    assert refused(auth=replace(GOLDEN_V2, signature=flip(GOLDEN_V2.signature, bit))) == "signature_invalid"


def test_deadline_is_inclusive() -> None:
    verify(now=DEADLINE)
    assert refused(now=DEADLINE + 1) == "signature_expired"
    assert refused(V1, now=DEADLINE + 1) == "signature_expired"


def test_payload_nonce_must_equal_onchain_nonce() -> None:
    assert refused(payload_nonce=1) == "nonce_mismatch"
    assert refused(onchain_nonce=1) == "nonce_mismatch"


def test_signature_is_checked_against_the_onchain_nonce() -> None:
    # the golden signature is over nonce 0; both nonces agreeing on 1 must not make it valid
    assert refused(onchain_nonce=1, payload_nonce=1) == "signature_invalid"
    auth = au.sign_authorization(
        KEYPAIR, V2, nonce=7, deadline=DEADLINE, extra_data=EXTRA_DATA, namespace_name=NAME
    )
    verify(auth=auth, onchain_nonce=7, payload_nonce=7)


def test_namespace_name_and_id_are_signed() -> None:
    assert refused(namespace_name="Gacha2") == "signature_invalid"  # e.g. the namespace was renamed
    assert refused(namespace_id=1) == "signature_invalid"
    # v1 has neither: passing them is a configuration error, not a bad authorization
    with pytest.raises(InvalidArgument):
        verify(V1, namespace_id=1)
    with pytest.raises(InvalidArgument):
        verify(V1, namespace_name=NAME)


def test_signed_fields_cannot_be_altered() -> None:
    assert refused(auth=replace(GOLDEN_V2, deadline=DEADLINE + 1)) == "signature_invalid"
    assert refused(auth=replace(GOLDEN_V2, extra_data=flip(EXTRA_DATA, 500))) == "signature_invalid"
    assert refused(user=Keypair.from_seed(bytes([2] * 32)).pubkey()) == "signature_invalid"
    # a v1 signature is not a v2 signature and vice versa
    assert refused(V2, auth=GOLDEN_V1) == "signature_invalid"
    assert refused(V1, auth=GOLDEN_V2) == "signature_invalid"


def test_malleated_signature_is_refused() -> None:
    """Documented difference from the program: a non-canonical S (S + L) is refused off-chain."""
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(GOLDEN_V2.signature[32:], "little") + order
    malleated = GOLDEN_V2.signature[:32] + s.to_bytes(32, "little")
    assert refused(auth=replace(GOLDEN_V2, signature=malleated)) == "signature_invalid"


def test_insufficient_funds() -> None:
    verify(available_lamports=5_000_000, amount=5_000_000)
    assert refused(available_lamports=4_999_999, amount=5_000_000) == "insufficient_funds"


def test_check_order() -> None:
    """nonce, then signature, then deadline, then funds: the first failing check is reported."""
    bad_sig = replace(GOLDEN_V2, signature=flip(GOLDEN_V2.signature, 3))
    everything_wrong: dict[str, Any] = {
        "payload_nonce": 9,
        "auth": bad_sig,
        "now": DEADLINE + 1,
        "available_lamports": 0,
    }
    assert refused(**everything_wrong) == "nonce_mismatch"
    del everything_wrong["payload_nonce"]
    assert refused(**everything_wrong) == "signature_invalid"
    del everything_wrong["auth"]
    assert refused(**everything_wrong) == "signature_expired"
    del everything_wrong["now"]
    assert refused(**everything_wrong) == "insufficient_funds"


@given(
    version=st.sampled_from([V1, V2]),
    nonce=st.integers(0, 2**64 - 1),
    deadline=st.integers(-(2**63), 2**63 - 1),
    extra_data=st.binary(min_size=64, max_size=64),
    namespace_id=st.integers(0, 2**64 - 1),
    name=st.text(min_size=3, max_size=50),
)
def test_sign_then_verify(
    version: ProgramVersion, nonce: int, deadline: int, extra_data: bytes, namespace_id: int, name: str
) -> None:
    if version is V1:
        namespace_id, namespace_name = 0, None
    else:
        namespace_name = name
    auth = au.sign_authorization(
        KEYPAIR,
        version,
        nonce=nonce,
        deadline=deadline,
        extra_data=extra_data,
        namespace_id=namespace_id,
        namespace_name=namespace_name,
    )
    au.verify_authorization(
        version,
        user=USER,
        auth=auth,
        onchain_nonce=nonce,
        payload_nonce=nonce,
        now=deadline,
        namespace_id=namespace_id,
        namespace_name=namespace_name,
        available_lamports=1,
        amount=1,
    )


# ---------------------------------------------------------------------------------------------------------
# Device binding


def test_binding_layout() -> None:
    extra = au.encode_binding(MACHINE, 5_000_000, nonce_bytes=bytes(range(19)))
    assert len(extra) == 64
    assert extra[:4] == b"XPHY" and extra[4] == 1
    assert extra[5:37] == MACHINE
    assert extra[37:45] == (5_000_000).to_bytes(8, "little")
    assert extra[45:] == bytes(range(19))


def test_binding_nonce_defaults_to_random() -> None:
    assert au.encode_binding(MACHINE, 1) != au.encode_binding(MACHINE, 1)


@given(
    machine=st.binary(min_size=32, max_size=32),
    amount=st.integers(0, 2**64 - 1),
    nonce_bytes=st.binary(min_size=19, max_size=19),
)
def test_binding_round_trip(machine: bytes, amount: int, nonce_bytes: bytes) -> None:
    extra = au.encode_binding(machine, amount, nonce_bytes=nonce_bytes)
    assert au.decode_binding(extra) == au.DeviceBinding(machine, amount, nonce_bytes)


def test_unbound_extra_data_decodes_to_none() -> None:
    assert au.decode_binding(EXTRA_DATA) is None  # dApp style: UUID + zeros
    assert au.decode_binding(bytes(64)) is None  # Gacha style: zeros


def test_malformed_binding_is_binding_invalid() -> None:
    extra = au.encode_binding(MACHINE, 1)
    for bad in (extra[:4] + b"\x02" + extra[5:], extra[:63], extra + b"\x00"):
        with pytest.raises(au.AuthorizationError) as exc:
            au.decode_binding(bad)
        assert exc.value.code == "binding_invalid"


@pytest.mark.parametrize(
    ("machine", "amount", "nonce_bytes"),
    [
        (MACHINE[:31], 1, bytes(19)),
        (MACHINE, -1, bytes(19)),
        (MACHINE, 2**64, bytes(19)),
        (MACHINE, 1, bytes(18)),
    ],
)
def test_encode_binding_refuses_unrepresentable_values(
    machine: bytes, amount: int, nonce_bytes: bytes
) -> None:
    with pytest.raises(au.AuthorizationError) as exc:
        au.encode_binding(machine, amount, nonce_bytes=nonce_bytes)
    assert exc.value.code == "binding_invalid"


def charge(extra_data: bytes, machine_hex: str = MACHINE_HEX) -> int:
    return au.charge_amount(
        extra_data,
        machine_pubkey_hex=machine_hex,
        recharge_lamports=5_000_000,
        max_recharge_lamports=50_000_000,
    )


def charge_refused(extra_data: bytes, machine_hex: str = MACHINE_HEX) -> str:
    with pytest.raises(au.AuthorizationError) as exc:
        charge(extra_data, machine_hex)
    return exc.value.code


def test_charge_amount_unbound_uses_configured_price() -> None:
    assert charge(EXTRA_DATA) == 5_000_000
    assert charge(bytes(64)) == 5_000_000


def test_charge_amount_bound() -> None:
    assert charge(au.encode_binding(MACHINE, 12_345)) == 12_345
    assert charge(au.encode_binding(MACHINE, 50_000_000)) == 50_000_000
    assert charge(au.encode_binding(MACHINE, 1), MACHINE_HEX.upper()) == 1


def test_charge_amount_wrong_machine() -> None:
    other = bytes(32)
    assert charge_refused(au.encode_binding(other, 12_345)) == "binding_wrong_machine"


def test_charge_amount_out_of_bounds() -> None:
    assert charge_refused(au.encode_binding(MACHINE, 0)) == "binding_amount_invalid"
    assert charge_refused(au.encode_binding(MACHINE, 50_000_001)) == "binding_amount_invalid"


def test_charge_amount_malformed_binding() -> None:
    assert charge_refused(b"XPHY\x07" + bytes(59)) == "binding_invalid"


def test_charge_amount_bad_machine_config() -> None:
    with pytest.raises(InvalidArgument):
        charge(au.encode_binding(MACHINE, 1), "not-hex")


def test_bound_authorization_end_to_end() -> None:
    """A client binds amount and machine, signs; the device derives the amount, then verifies."""
    extra = au.encode_binding(MACHINE, 7_000_000)
    auth = au.sign_authorization(
        KEYPAIR, V2, nonce=3, deadline=DEADLINE, extra_data=extra, namespace_name=NAME
    )
    amount = charge(auth.extra_data)
    assert amount == 7_000_000
    verify(auth=auth, onchain_nonce=3, payload_nonce=3, amount=amount, available_lamports=7_000_000)
    assert refused(
        auth=auth, onchain_nonce=3, payload_nonce=3, amount=amount, available_lamports=6_999_999
    ) == ("insufficient_funds")
