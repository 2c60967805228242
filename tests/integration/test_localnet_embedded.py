"""The embedded chain: localnet in-process with this device's bot registered, state kept across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from device.config import SolanaConfig
from device.localnet.embedded import EmbeddedChain, embedded_treasury
from device.solana import program as bp
from device.solana.client import SettlementClient


async def registered_bot(url: str, solana: SolanaConfig, bot: Keypair) -> None:
    client = SettlementClient.from_config(solana, bot, rpc_url=url)
    try:
        await client.check_bot()
    finally:
        await client.close()


@pytest.mark.parametrize("program", ["v1", "v2"])
async def test_embedded_chain_registers_the_device_bot(tmp_path: Path, program: str) -> None:
    solana = SolanaConfig(program=program, embedded_rpc_port=0)  # type: ignore[arg-type]
    bot = Keypair()
    chain = EmbeddedChain(tmp_path, solana, bot)
    url = await chain.start()
    try:
        await registered_bot(url, solana, bot)
        assert chain.server.chain.balance(bot.pubkey()) > 0
    finally:
        await chain.stop()


async def test_embedded_chain_creates_namespaces_up_to_the_configured_id(tmp_path: Path) -> None:
    solana = SolanaConfig(namespace_id=2, embedded_rpc_port=0)
    bot = Keypair()
    chain = EmbeddedChain(tmp_path, solana, bot)
    await chain.start()
    try:
        program_id = Pubkey.from_string(solana.effective_program_id)
        assert chain.server.chain.account(bp.namespace_pda(program_id, 2)) is not None
        assert chain.server.chain.account(bp.namespace_pda(program_id, 3)) is None
    finally:
        await chain.stop()


async def test_embedded_chain_keeps_its_state_across_restarts(tmp_path: Path) -> None:
    solana = SolanaConfig(embedded_rpc_port=0)
    bot = Keypair()
    first = EmbeddedChain(tmp_path, solana, bot)
    await first.start()
    first.server.chain.airdrop(embedded_treasury(bot.pubkey()), 12_345)
    treasury_before = first.server.chain.balance(embedded_treasury(bot.pubkey()))
    await first.stop()
    second = EmbeddedChain(tmp_path, solana, bot)
    await second.start()
    try:
        assert second.server.chain.balance(embedded_treasury(bot.pubkey())) == treasury_before
        program_id = Pubkey.from_string(solana.effective_program_id)
        assert second.server.chain.account(bp.namespace_pda(program_id, 1)) is None  # not created twice
    finally:
        await second.stop()


def test_embedded_treasury_is_stable_per_bot() -> None:
    bot = Keypair().pubkey()
    assert embedded_treasury(bot) == embedded_treasury(bot)
    assert embedded_treasury(bot) != embedded_treasury(Keypair().pubkey())
