"""``solana.rpc_url: embedded``: run the localnet stand-in in-process with this device registered.

On a laptop (``make run``) there is no cluster, so the agent starts the loopback
Solana JSON-RPC stand-in (:mod:`device.localnet`, **not a validator**), keeps its
state in ``state_dir/localnet.json`` so balances survive restarts, and makes sure
the device's bot can settle: for v2 the namespace ``solana.namespace_id`` exists
with this bot, for v1 the global account names this bot.  The treasury is a fixed
address derived from the bot key; the bot is funded for fees.  Setup goes through
real transactions, exactly as an operator would do it on devnet.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from device.config import SolanaConfig
from device.errors import DeviceError
from device.localnet import LocalnetServer, bootstrap_global_v1, bootstrap_namespace
from device.solana import program as bp

LOCALNET_STATE_FILE = "localnet.json"
NAMESPACE_NAME = "XePHY-LLM"
BOT_FUNDING_LAMPORTS = 10_000_000_000
BOT_FUNDING_BELOW = 1_000_000_000


def embedded_treasury(bot: Pubkey) -> Pubkey:
    """The treasury address the embedded chain uses for ``bot`` (deterministic, no key kept)."""
    seed = hashlib.sha256(b"xephy-llm-device/embedded-treasury/" + bytes(bot)).digest()
    return Keypair.from_seed(seed).pubkey()


class EmbeddedChain:
    """The in-process chain stand-in with this device's bot registered."""

    def __init__(self, state_dir: Path, solana: SolanaConfig, bot: Keypair) -> None:
        self._solana = solana
        self._bot = bot
        self._program = solana.program_ref
        extra = (
            {}
            if self._program.program_id in bp.DEFAULT_PROGRAM_IDS.values()
            else {self._program.program_id: self._program.version}
        )
        self.server = LocalnetServer(
            port=solana.embedded_rpc_port, state_file=state_dir / LOCALNET_STATE_FILE, extra_programs=extra
        )

    @property
    def url(self) -> str:
        """The JSON-RPC URL (``http://127.0.0.1:PORT``)."""
        return self.server.url

    async def start(self) -> str:
        """Start the server and register the bot; return the RPC URL."""
        await self.server.start()
        try:
            await self._register_bot()
        except BaseException:
            await self.server.stop()
            raise
        return self.server.url

    async def stop(self) -> None:
        """Stop the server (its state file is already up to date)."""
        await self.server.stop()

    async def _register_bot(self) -> None:
        chain = self.server.chain
        bot = self._bot.pubkey()
        if chain.balance(bot) < BOT_FUNDING_BELOW:
            chain.airdrop(bot, BOT_FUNDING_LAMPORTS)
        treasury = embedded_treasury(bot)
        if self._program.version is bp.ProgramVersion.V1:
            await bootstrap_global_v1(chain, self._bot, bot, treasury, program=self._program)
            return
        wanted = self._solana.namespace_id
        while chain.account(bp.namespace_pda(self._program.program_id, wanted)) is None:
            created = await bootstrap_namespace(
                chain, self._bot, bot, treasury, NAMESPACE_NAME, program=self._program
            )
            if created >= wanted:
                break
        account = chain.account(bp.namespace_pda(self._program.program_id, wanted))
        if account is None or bp.NamespaceAccount.decode(bytes(account.data)).bot != bot:
            raise DeviceError(
                f"embedded chain: namespace {wanted} does not name this device's bot {bot}",
                code="bot_not_registered",
            )
