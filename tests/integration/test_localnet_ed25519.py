"""The stand-in's Ed25519 check against references (the program's cofactorless verification)."""

from __future__ import annotations

from solders.keypair import Keypair
from solders.signature import Signature

from device.localnet.ed25519 import L, Verdict, decompress, verify_cofactorless
from device.solana import program as bp
from device.solana.authorization import signed_message, signed_text
from device.solana.program import ProgramVersion
from tests.fixtures.localnet import (
    V2,
)


def test_cofactorless_check_accepts_what_solders_signs_and_refuses_the_rest() -> None:
    for seed in range(8):
        keypair = Keypair.from_seed(bytes([seed + 10]) * 32)
        message = b"DePHY vending machine/Gacha:\n" + bytes([seed]) * 44
        signature = bytes(keypair.sign_message(message))
        assert verify_cofactorless(bytes(keypair.pubkey()), signature, message) is Verdict.OK
        assert verify_cofactorless(bytes(keypair.pubkey()), signature, message + b"x") is Verdict.MISMATCH
        other = Keypair.from_seed(bytes([seed + 100]) * 32)
        assert verify_cofactorless(bytes(other.pubkey()), signature, message) is Verdict.MISMATCH


def test_reference_vector_of_section_6_7_verifies() -> None:
    user = Keypair.from_seed(bytes([1]) * 32)
    assert str(user.pubkey()) == "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
    extra = bytes.fromhex("00112233445566778899aabbccddeeff") + bytes(48)
    msg = signed_message(ProgramVersion.V2, extra_data=extra, nonce=0, deadline=1741234567, namespace_id=0)
    text = signed_text(ProgramVersion.V2, msg, namespace_name="Gacha")
    signature = bytes.fromhex(
        "4d0b4f42edf48cd4af2aef5e13d457643c0a7b414b9a3d635d0c9e1afa60e279"
        "313020e9cfa46f3cc0e108f49a393a3514066a984cdc3f37b46636ab52edc20c"
    )
    assert verify_cofactorless(bytes(user.pubkey()), signature, text) is Verdict.OK


def test_program_accepts_a_non_canonical_s_that_strict_verifiers_refuse() -> None:
    keypair = Keypair.from_seed(bytes([7]) * 32)
    message = b"text"
    signature = bytes(keypair.sign_message(message))
    malleated = signature[:32] + (int.from_bytes(signature[32:], "little") + L).to_bytes(32, "little")
    assert not Signature.from_bytes(malleated).verify(keypair.pubkey(), message)
    assert verify_cofactorless(bytes(keypair.pubkey()), malleated, message) is Verdict.OK


def test_off_curve_points_are_a_format_error() -> None:
    keypair = Keypair.from_seed(bytes([9]) * 32)
    signature = bytes(keypair.sign_message(b"m"))
    off_curve = next(
        bytes([y]) + bytes(31) for y in range(2, 256) if decompress(bytes([y]) + bytes(31)) is None
    )
    pda = bp.vault_pda(V2.program_id, keypair.pubkey())  # PDAs are off the curve by construction
    assert verify_cofactorless(bytes(pda), signature, b"m") is Verdict.FORMAT_INVALID
    assert (
        verify_cofactorless(bytes(keypair.pubkey()), off_curve + signature[32:], b"m")
        is Verdict.FORMAT_INVALID
    )
