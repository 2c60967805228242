"""The composition root: builds the agent's parts from a :class:`Config` and runs them.

Today the agent opens the ledger, loads the keys and reports what it serves;
the relay link, settlement, chat server and indicators plug in here as they land
(see ``../shared/design.md``).  Everything is passed in through the constructor
so tests can build an agent around a temporary state directory.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from device import __version__
from device.config import Config, ConfigError, resolve_chat_socket, resolve_model_path
from device.keys import DeviceKeys
from device.ledger import Ledger

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """What this agent serves, as shown at start and by ``xephy-device config show``."""

    machine_pubkey: str
    npub: str
    bot_pubkey: str
    session: str
    relays: tuple[str, ...]
    rpc_url: str
    program: str
    program_id: str
    namespace_id: int
    recharge_lamports: int
    tokens_per_lamport: int
    model: str
    chat_socket: Path
    ledger_path: Path

    @classmethod
    def build(cls, config: Config, keys: DeviceKeys, environ: Mapping[str, str]) -> ServicePlan:
        """Derive the plan from the config and the loaded keys."""
        try:
            model = str(resolve_model_path(config.llm))
        except ConfigError as exc:
            model = f"unavailable ({exc})"
        return cls(
            machine_pubkey=config.nostr.machine_pubkey or keys.nostr_pubkey_hex,
            npub=keys.npub,
            bot_pubkey=str(keys.bot_pubkey),
            session=config.nostr.session,
            relays=config.nostr.relays,
            rpc_url=config.solana.rpc_url,
            program=str(config.solana.program),
            program_id=str(config.solana.effective_program_id),
            namespace_id=config.solana.namespace_id,
            recharge_lamports=config.pricing.recharge_lamports,
            tokens_per_lamport=config.pricing.tokens_per_lamport,
            model=model,
            chat_socket=resolve_chat_socket(config, environ),
            ledger_path=config.device.state_dir / LEDGER_FILE,
        )

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        tokens = self.recharge_lamports * self.tokens_per_lamport
        return [
            f"xephy-device {__version__}",
            f"  machine pubkey  {self.machine_pubkey}",
            f"  device npub     {self.npub}",
            f"  bot pubkey      {self.bot_pubkey}",
            f"  session         {self.session}",
            f"  relays          {', '.join(self.relays)}",
            f"  solana rpc      {self.rpc_url}",
            f"  program         {self.program} {self.program_id} (namespace {self.namespace_id})",
            f"  price           {self.recharge_lamports:,} lamports per recharge -> {tokens:,} tokens",
            f"  model           {self.model}",
            f"  chat socket     {self.chat_socket}",
            f"  ledger          {self.ledger_path}",
        ]


class Agent:
    """Owns the running parts of the device for the lifetime of one ``run``."""

    def __init__(self, config: Config, keys: DeviceKeys, ledger: Ledger, plan: ServicePlan) -> None:
        self.config = config
        self.keys = keys
        self.ledger = ledger
        self.plan = plan

    async def run(self, stop: asyncio.Event, out: TextIO) -> None:
        """Announce what is served, then wait until ``stop`` is set."""
        for line in self.plan.lines():
            print(line, file=out)
        print("ready (relay, settlement and chat arrive with later releases); Ctrl-C to stop", file=out)
        out.flush()
        log.info("agent ready", extra={"code": "agent_ready"})
        await stop.wait()
        log.info("agent stopping", extra={"code": "agent_stopping"})


async def run_until_signalled(agent: Agent, out: TextIO) -> None:
    """Run ``agent`` until SIGINT or SIGTERM, then return normally."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await agent.run(stop, out)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
