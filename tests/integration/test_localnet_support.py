"""Shared helpers and fixtures for the localnet tests, plus the stand-in's Ed25519 check against references.

Other ``test_localnet_*`` modules import from here (the project's pattern for shared test code).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from device.localnet import Chain, LocalnetServer, bootstrap_global_v1, bootstrap_namespace, bootstrap_user
from device.localnet.ed25519 import L, Verdict, decompress, verify_cofactorless
from device.solana import program as bp
from device.solana.authorization import sign_authorization, signed_message, signed_text
from device.solana.program import ED25519RecoverInfo, ProgramRef, ProgramVersion

FEE = 5_000
SOL = 1_000_000_000
V1 = ProgramRef.default(ProgramVersion.V1)
V2 = ProgramRef.default(ProgramVersion.V2)
NAME = "Gacha"


# --------------------------------------------------------------------------------------------------------
# Building transactions


def build_tx(
    blockhash: Hash,
    payer: Keypair,
    instructions: Sequence[Instruction],
    signers: Sequence[Keypair] = (),
    *,
    v0: bool = False,
) -> VersionedTransaction:
    """A signed transaction (legacy by default, v0 without lookup tables on request)."""
    if v0:
        message: Message | MessageV0 = MessageV0.try_compile(
            payer.pubkey(), list(instructions), [], blockhash
        )
    else:
        message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    unique = {bytes(k.pubkey()): k for k in [payer, *signers]}
    return VersionedTransaction(message, list(unique.values()))


@dataclass
class Operator:
    """One operator (v2 namespace or the v1 global bot/treasury) and a funded user, ready to pay."""

    ref: ProgramRef
    authority: Keypair
    bot: Keypair
    treasury: Keypair
    user: Keypair
    namespace_id: int = 0

    @property
    def name(self) -> str | None:
        return NAME if self.ref.version is ProgramVersion.V2 else None

    @property
    def vault(self) -> Pubkey:
        return bp.vault_pda(self.ref.program_id, self.user.pubkey())

    @property
    def user_account(self) -> Pubkey:
        return bp.user_pda(self.ref.program_id, self.user.pubkey())

    def authorize(
        self, *, nonce: int, deadline: int, signer: Keypair | None = None, extra_data: bytes = bytes(64)
    ) -> ED25519RecoverInfo:
        return sign_authorization(
            signer or self.user,
            self.ref.version,
            nonce=nonce,
            deadline=deadline,
            extra_data=extra_data,
            namespace_id=self.namespace_id,
            namespace_name=self.name,
        )

    def pay_ix(
        self,
        recover_info: ED25519RecoverInfo,
        amount: int,
        *,
        bot: Keypair | None = None,
        treasury: Pubkey | None = None,
        user: Pubkey | None = None,
    ) -> Instruction:
        signer = bot or self.bot
        return bp.pay(
            self.ref,
            user=user or self.user.pubkey(),
            treasury=treasury or self.treasury.pubkey(),
            bot=signer.pubkey(),
            payer=signer.pubkey(),
            recover_info=recover_info,
            amount=amount,
            namespace_id=self.namespace_id,
        )

    def lock_ix(self, recover_info: ED25519RecoverInfo, amount: int, *, nonce: int) -> Instruction:
        return bp.lock(
            self.ref,
            user=self.user.pubkey(),
            nonce=nonce,
            bot=self.bot.pubkey(),
            payer=self.bot.pubkey(),
            recover_info=recover_info,
            amount=amount,
            namespace_id=self.namespace_id,
        )

    def settle_ix(self, nonce: int, amount: int) -> Instruction:
        return bp.settle(
            self.ref,
            user=self.user.pubkey(),
            nonce=nonce,
            treasury=self.treasury.pubkey(),
            bot=self.bot.pubkey(),
            payer=self.bot.pubkey(),
            amount=amount,
            namespace_id=self.namespace_id,
        )


async def make_operator(
    target: Chain | AsyncClient, version: ProgramVersion, *, deposit: int = 50_000_000, seed: int = 1
) -> Operator:
    """Bootstrap an operator through real transactions, register and fund a user, give the bot 1 SOL."""
    ref = V2 if version is ProgramVersion.V2 else V1
    authority, bot, treasury, user = (Keypair.from_seed(bytes([seed * 4 + i]) * 32) for i in range(4))
    operator = Operator(ref, authority, bot, treasury, user)
    if version is ProgramVersion.V2:
        operator.namespace_id = await bootstrap_namespace(
            target, authority, bot.pubkey(), treasury.pubkey(), NAME
        )
    else:
        await bootstrap_global_v1(target, authority, bot.pubkey(), treasury.pubkey())
    await bootstrap_user(target, user, deposit, program=ref)
    if isinstance(target, Chain):
        target.airdrop(bot.pubkey(), SOL)
    else:
        signature = (await target.request_airdrop(bot.pubkey(), SOL)).value
        await target.confirm_transaction(signature, Confirmed, sleep_seconds=0.01)
    return operator


# --------------------------------------------------------------------------------------------------------
# Talking to the server


@pytest.fixture
async def server() -> AsyncIterator[LocalnetServer]:
    srv = LocalnetServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(server: LocalnetServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, commitment=Confirmed, timeout=10) as rpc:
        yield rpc


async def blockhash(client: AsyncClient) -> Hash:
    return (await client.get_latest_blockhash()).value.blockhash


async def send_skip_preflight(client: AsyncClient, tx: VersionedTransaction) -> tuple[Signature, Any]:
    """Send without preflight (so failures land and pay their fee); return (signature, status err JSON)."""
    signature = (await client.send_raw_transaction(bytes(tx), TxOpts(skip_preflight=True))).value
    status = (await client.get_signature_statuses([signature])).value[0]
    assert status is not None, "the transaction did not land"
    return signature, json.loads(status.to_json())["err"]


async def balances(client: AsyncClient, *keys: Pubkey) -> list[int]:
    return [(await client.get_balance(k)).value for k in keys]


async def user_state(client: AsyncClient, operator: Operator) -> bp.UserAccount:
    info = (await client.get_account_info(operator.user_account)).value
    assert info is not None
    return bp.UserAccount.decode(bytes(info.data))


def stored(chain: Chain, key: Pubkey) -> bytes:
    """The data of an account that must exist."""
    account = chain.account(key)
    assert account is not None, f"{key} does not exist"
    return account.data


def custom_error(code: int, index: int = 0) -> dict[str, Any]:
    return {"InstructionError": [index, {"Custom": code}]}


# --------------------------------------------------------------------------------------------------------
# The in-program Ed25519 check


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
