"""The composition root: builds the agent's parts from a :class:`Config` and runs them.

Start order (reverse on stop), each part handed its dependencies explicitly:

1. ledger (opened by the caller) and keys; indicators (LEDs, display, console) so start-up shows;
2. relays: ``embedded`` starts :class:`~device.relay.EmbeddedRelay` in-process;
3. chain: ``embedded`` starts the localnet stand-in with this device's bot registered;
4. settlement client → recharge processor, which first resumes every unfinished recharge; the ledger's
   retention (:class:`~device.retention.LedgerPruner`: prune now, then hourly);
5. relay link: subscribes from ``cursor − overlap`` and publishes the outbox;
6. chat holds a crash left open are settled at their last checkpoint (signed debits, exactly once);
   the model (one worker thread) and the chat socket (systemd's, or our own);
7. the button; ``endpoints.json`` for the user commands in a second terminal;
8. ``READY=1`` to systemd, and the watchdog, fed by the event loop and the inference worker only —
   never by network health, so a dead relay or RPC does not cause restart loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
from collections.abc import Coroutine, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from device import __version__
from device.button import build_button
from device.chat.server import ChatService
from device.config import EMBEDDED, Config, ConfigError, resolve_chat_socket, resolve_model_path
from device.endpoints import Endpoints
from device.indicators import build_indicators
from device.indicators.display import DisplayIndicator
from device.inference import Engine
from device.keys import DeviceKeys
from device.ledger import LEDGER_FILE, Ledger
from device.nostr_events import EventSigner
from device.recharge import FaultPoints, RechargeProcessor
from device.relay import EmbeddedRelay, RelayLink
from device.retention import LedgerPruner
from device.solana.client import SettlementClient
from device.state import ChainStatus, DeviceState, LinkStatus, StateHub
from device.systemd_notify import Notifier, Watchdog, watchdog_interval
from device.systemd_sockets import sockets_from_systemd
from device.telemetry import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """What this agent serves, as shown at start."""

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

    def __init__(
        self,
        config: Config,
        keys: DeviceKeys,
        ledger: Ledger,
        plan: ServicePlan,
        *,
        hub: StateHub | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.ledger = ledger
        self.plan = plan
        self.environ = dict(os.environ if environ is None else environ)
        model_name = Path(plan.model).stem if plan.model.endswith(".gguf") else plan.model
        self.hub = hub or StateHub(DeviceState(machine_pubkey=plan.machine_pubkey, model=model_name))
        self.signer = EventSigner(keys.nostr, session=plan.session, machine_pubkey=plan.machine_pubkey)
        self.link: RelayLink | None = None
        self.relay_urls: tuple[str, ...] = ()
        self.rpc_url = ""
        self.notifier = Notifier.from_environ(self.environ)
        interval = watchdog_interval(self.environ, os.getpid())
        self.watchdog = Watchdog(self.notifier, interval) if interval is not None else None

    async def run(self, stop: asyncio.Event, out: TextIO) -> None:
        """Start every part, announce the endpoints, serve until ``stop`` is set, then stop in reverse."""
        state_dir = self.config.device.state_dir
        loop = asyncio.get_running_loop()
        async with AsyncExitStack() as stack:
            self.notifier.status("starting")
            indicators = build_indicators(self.config, self.hub, stream=out)
            for indicator in indicators:
                indicator.start()
                stack.callback(indicator.stop)

            self.relay_urls = await self._start_relays(stack)
            self.rpc_url = await self._start_chain(stack)
            settlement = SettlementClient.from_config(self.config.solana, self.keys.bot, rpc_url=self.rpc_url)
            stack.push_async_callback(settlement.close)
            processor = RechargeProcessor(
                self.ledger,
                settlement,
                self.signer,
                self.config,
                self.hub,
                notify_outbox=self._notify_outbox,
                faults=FaultPoints.from_env(self.environ),
                background_settlement=True,
            )
            stack.push_async_callback(processor.aclose)
            await processor.resume_unfinished()
            pruner = LedgerPruner(self.ledger, retention_seconds=self.config.ledger.retention_seconds)
            await _background(stack, pruner.run(), name="ledger-pruner")
            self.link = RelayLink(
                self.relay_urls,
                ledger=self.ledger,
                session=self.plan.session,
                machine_pubkey=self.plan.machine_pubkey,
                on_event=processor.handle,
                screen=processor.screen,
                on_state=self._on_link_state,
                overlap_seconds=self.config.nostr.overlap_seconds,
                auth_keys=self.keys.nostr,
            )
            await self.link.start()
            stack.push_async_callback(self.link.stop)

            self.notifier.status("loading the model")
            engine = Engine.from_config(self.config.llm, heartbeat=self._inference_heartbeat)
            stack.push_async_callback(engine.close)
            passed = sockets_from_systemd(self.environ, os.getpid(), name="chat")
            chat = ChatService(
                self.config,
                self.ledger,
                engine,
                self.signer,
                self.hub,
                self._notify_outbox,
                passed[0] if passed else None,
                environ=self.environ,
            )
            stack.push_async_callback(chat.stop)
            await chat.meter.settle_open_holds()  # chats a crash cut off: debited at their last checkpoint
            await chat.start()

            display = next((i for i in indicators if isinstance(i, DisplayIndicator)), None)
            button = build_button(
                self.config.button,
                self.hub,
                loop=loop,
                signer=self.signer,
                outbox=self.ledger,
                notify_outbox=self._notify_outbox,
                telemetry=self._usage,
                chat_socket=self.plan.chat_socket,
                display=display,
            )
            if button is not None:
                button.start()
                stack.push_async_callback(button.drain)
                stack.callback(button.stop)

            endpoints = Endpoints(
                relays=self.relay_urls,
                rpc_url=self.rpc_url,
                machine_pubkey=self.plan.machine_pubkey,
                device_pubkey=self.keys.nostr_pubkey_hex,
                session=self.plan.session,
                chat_socket=str(self.plan.chat_socket),
                program=self.plan.program,
                program_id=self.plan.program_id,
                namespace_id=self.plan.namespace_id,
                pid=os.getpid(),
            )
            try:
                endpoints.write(state_dir)
                stack.callback(Endpoints.remove, state_dir)
            except OSError as exc:  # e.g. a card remounted read-only: serve anyway (chats refuse as needed)
                log.warning(
                    "cannot write %s: %s; user commands cannot discover this agent",
                    state_dir,
                    exc,
                    extra={"code": "endpoints_unwritable"},
                )

            self._announce(out)
            self.notifier.ready(f"serving {engine.model_name} on {self.plan.chat_socket}")
            if self.watchdog is not None:
                await self._run_watchdog(stack, engine, stop)
            await stop.wait()
            self.notifier.stopping()
            log.info("agent stopping", extra={"code": "agent_stopping"})

    async def _run_watchdog(self, stack: AsyncExitStack, engine: Engine, stop: asyncio.Event) -> None:
        """Ping systemd while the loop and the inference worker both beat (``WatchdogSec=``)."""
        watchdog = self.watchdog
        assert watchdog is not None

        async def ping_worker() -> None:
            while not stop.is_set():
                await engine.ping()  # runs on the worker: queued behind a generation, which beats per token
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), watchdog.beat_every)

        tasks = [asyncio.create_task(watchdog.run(stop)), asyncio.create_task(ping_worker())]

        async def cancel() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        stack.push_async_callback(cancel)

    def _inference_heartbeat(self) -> None:
        if self.watchdog is not None:
            self.watchdog.heartbeat("inference")

    def _usage(self) -> Usage:
        midnight = datetime.datetime.combine(datetime.date.today(), datetime.time()).timestamp()
        today = self.ledger.activity_since(int(midnight))
        ever = self.ledger.activity_since(0)
        return Usage(
            users_served=ever.users,
            tokens_granted_today=today.tokens_granted,
            tokens_debited_today=today.tokens_debited,
        )

    def _announce(self, out: TextIO) -> None:
        for line in self.plan.lines():
            print(line, file=out)
        print(f"  relay urls      {', '.join(self.relay_urls)}", file=out)
        print(f"  rpc url         {self.rpc_url}", file=out)
        print("ready; Ctrl-C to stop", file=out)
        out.flush()
        log.info("agent ready", extra={"code": "agent_ready"})

    async def _start_relays(self, stack: AsyncExitStack) -> tuple[str, ...]:
        urls: list[str] = []
        for url in self.config.nostr.relays:
            if url == EMBEDDED:
                relay = EmbeddedRelay()
                urls.append(await relay.start())
                stack.push_async_callback(relay.stop)
            else:
                urls.append(url)
        return tuple(urls)

    async def _start_chain(self, stack: AsyncExitStack) -> str:
        if self.config.solana.rpc_url != EMBEDDED:
            return self.config.solana.rpc_url
        # Only this path needs the chain stand-in: a real RPC URL never imports device.localnet.
        from device.localnet.embedded import EmbeddedChain

        chain = EmbeddedChain(self.config.device.state_dir, self.config.solana, self.keys.bot)
        url = await chain.start()
        stack.push_async_callback(chain.stop)
        self.hub.update(chain=ChainStatus.REACHABLE)
        return url

    def _notify_outbox(self) -> None:
        if self.link is not None:
            self.link.notify_outbox()

    def _on_link_state(self, status: LinkStatus) -> None:
        self.hub.update(relay=status)


async def _background(stack: AsyncExitStack, work: Coroutine[Any, Any, None], *, name: str) -> None:
    """Run ``work`` as a task until the stack unwinds (then cancel it)."""
    task = asyncio.create_task(work, name=name)

    async def cancel() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(cancel)


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
