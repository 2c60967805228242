"""The fault-injection harness: the REAL agent as a subprocess, its relays and chain as separate processes.

Pieces (each started and stopped by :class:`FaultRig`, also when a test fails):

* ``LocalnetProcess`` — ``xephy-device localnet --port P --state FILE`` (the chain stand-in), which
  a test can kill and restart on the same port without losing the chain.
* :class:`RpcProxy` — an HTTP proxy in the test's event loop between the agent and the chain: it can
  refuse every connection (RPC down), delay ``sendTransaction`` (slow settlement), or forward a
  ``sendTransaction`` and then lose its response by reset or by silence (the chain has the transaction,
  the agent does not know).  ``solana.rpc_url`` points at the proxy.
* :class:`~tests.fixtures.relay.RelayProcess` — ``python -m device.relay.serve`` with LMDB, restartable
  on its fixed port.
* ``AgentProcess`` — ``xephy-device run`` with a config file in a temp dir, output to files (a full
  pipe never blocks it), ``XEPHY_DEVICE_FAULT`` for the kill -9 points, and optionally inside a private
  mount namespace where its state dir is a size-limited tmpfs (``TmpfsHolder``, no root needed).

The three processes in ``code`` style live in :mod:`tests.fixtures.processes` (``tests/hostile`` uses
them too).

Users are registered and deposited through real transactions; Requests are published as the dApp does
(a throw-away Nostr key, :func:`device.wallet.recharge.build_request_event`).  :meth:`FaultRig.verify`
checks every invariant of the money path and records the scenario for the session summary table.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, UnixConnector, web
from nostr_sdk import (
    Client,
    Event,
    EventBuilder,
    Filter,
    Keys,
    Kind,
    PublicKey,
    RelayUrl,
    ReqTarget,
    Tag,
    Timestamp,
)
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from device.chat.auth import issue_token
from device.chat.client import ChatClient
from device.config import Config, SolanaConfig
from device.keys import KeyStore
from device.ledger import LEDGER_FILE, Ledger, RechargeState
from device.localnet import bootstrap_namespace, bootstrap_user
from device.protocol import (
    DEFAULT_SESSION,
    KIND,
    ZERO_EVENT_ID,
    MachineStatus,
    ProtocolError,
    Reason,
    Request,
    Status,
    Transaction,
    decode_message,
    encode_message,
    event_tags,
)
from device.solana import program as bp
from device.solana.program import ProgramRef, ProgramVersion
from device.wallet.recharge import RechargeTarget, build_request_event
from device.wallet.signing import sign_payload
from device.wallet.transaction_feed import fetch_transactions
from tests.fixtures.processes import AgentProcess, LocalnetProcess, TmpfsHolder
from tests.fixtures.relay import RelayProcess, free_port

NAMESPACE_NAME = "XePHY-Faults"
PRICE = 5_000_000
#: fault point -> the request's ledger state the SIGKILL leaves behind, and whether the chain was charged
LEFT_BEHIND = {
    "before_pay": ("pending", False),
    "after_submit": ("submitted", False),  # signature and bytes persisted, nothing sent yet
    "after_landed": ("submitted", True),
    "after_grant": ("granted", True),  # grant committed, its replies still in the outbox
}
DEPOSIT = 100_000_000
PROGRAM = ProgramRef.default(ProgramVersion.V2)
SETTLE_SECONDS = 45.0


# ------------------------------------------------------------------------------------------ summary
@dataclass
class ScenarioResult:
    """One row of the session summary table."""

    name: str
    faults: int
    requests: int
    granted: int
    refused: int
    lost: int
    double_charges: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    free_tokens: int | None = None  # chat rows: tokens delivered and never charged (None: no chat)


RESULTS: list[ScenarioResult] = []


def summary_lines() -> list[str]:
    """The session summary table (empty when no fault scenario ran)."""
    if not RESULTS:
        return []
    width = max(len("scenario"), *(len(r.name) for r in RESULTS))
    head = (
        f"{'scenario':<{width}}  faults  requests  granted  refused  lost  double-charges  free-tokens"
        "  seconds  ok"
    )
    lines = [head, "-" * len(head)]
    for r in RESULTS:
        free = "-" if r.free_tokens is None else str(r.free_tokens)
        lines.append(
            f"{r.name:<{width}}  {r.faults:>6}  {r.requests:>8}  {r.granted:>7}  {r.refused:>7}  {r.lost:>4}"
            f"  {r.double_charges:>14}  {free:>11}  {r.seconds:>7.1f}  {'yes' if not r.problems else 'NO'}"
        )
    total = ScenarioResult(
        "TOTAL",
        sum(r.faults for r in RESULTS),
        sum(r.requests for r in RESULTS),
        sum(r.granted for r in RESULTS),
        sum(r.refused for r in RESULTS),
        sum(r.lost for r in RESULTS),
        sum(r.double_charges for r in RESULTS),
        sum(r.seconds for r in RESULTS),
    )
    lines.append("-" * len(head))
    free_total = sum(r.free_tokens or 0 for r in RESULTS)
    lines.append(
        f"{total.name:<{width}}  {total.faults:>6}  {total.requests:>8}  {total.granted:>7}"
        f"  {total.refused:>7}  {total.lost:>4}  {total.double_charges:>14}  {free_total:>11}"
        f"  {total.seconds:>7.1f}"
    )
    lines.append(
        f"{len(RESULTS)} scenarios; requests lost {total.lost} (must be 0), "
        f"double charges {total.double_charges} (must be 0), free chat tokens {free_total} "
        "(0, or at most one checkpoint after a kill -9)"
    )
    return lines


async def wait_until(predicate: Callable[[], bool], within: float, what: str, step: float = 0.1) -> None:
    """Poll ``predicate`` (blocking calls are fine: it runs in a thread) until true or fail."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(step)


class RpcProxy:
    """JSON-RPC-aware HTTP proxy on 127.0.0.1 in front of the chain, with switchable faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.down = False  # every request's connection is reset: rpc_unreachable
        self.send_delay = 0.0  # seconds before a sendTransaction is forwarded
        self.lose_sends = 0  # the next N sendTransactions are forwarded, then their responses lost
        self.lose_by_silence = False  # lost = never answered (the client times out) instead of reset
        self.sends_forwarded = 0
        self.responses_lost = 0
        self.refused = 0
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._http: ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._http = ClientSession(timeout=ClientTimeout(total=30))
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=503)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.down:
            self.refused += 1
            return self._drop(request)
        try:
            method = json.loads(body).get("method")
        except (ValueError, AttributeError):
            method = None
        is_send = method == "sendTransaction"
        if is_send and self.send_delay:
            await asyncio.sleep(self.send_delay)
        assert self._http is not None
        async with self._http.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as answer:
            data = await answer.read()
            status = answer.status
        if is_send:
            self.sends_forwarded += 1
            if self.lose_sends > 0:
                self.lose_sends -= 1
                self.responses_lost += 1
                if self.lose_by_silence:  # the client's rpc_timeout fires first
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closing.wait(), 3600)
                return self._drop(request)
        return web.Response(body=data, status=status, content_type="application/json")


# --------------------------------------------------------------------------------------------- rig
@dataclass
class SentRequest:
    """A Request the test published."""

    event_id: str
    user: str
    nonce: int


@dataclass
class ChatTally:
    """What one user's chats delivered to their clients, checked by :meth:`FaultRig.verify`."""

    user: str
    prompt_tokens: int  # of every chat in the scenario (they all send the same messages)
    chats: int = 0  # completions started: each may be debited once
    delivered: int = 0  # completion tokens the clients received
    tolerated: int = 0  # free tokens allowed: one checkpoint (32) per kill -9 mid-stream, else 0
    refused: Counter[str] = field(default_factory=Counter)  # error codes the clients got


#: The messages of every chat in the chat scenarios; the const test model answers " m" per token.
CHAT_MESSAGES = [{"role": "user", "content": "hello there"}]


@dataclass
class FaultRig:
    """One device (keys, config, agent) on its own namespace of the shared chain, with its own relays."""

    name: str
    tmp: Path
    localnet: LocalnetProcess
    relays: list[RelayProcess] = field(default_factory=list)
    proxy: RpcProxy | None = None
    holder: TmpfsHolder | None = None
    agents: list[AgentProcess] = field(default_factory=list)
    users: dict[str, Keypair] = field(default_factory=dict)
    requests: list[SentRequest] = field(default_factory=list)
    faults: int = 0
    namespace_id: int = 0
    treasury: Pubkey = field(default_factory=lambda: Keypair().pubkey())
    treasury_start: int = 0
    started: float = field(default_factory=time.monotonic)
    pricing_mode: str = "prepaid"
    _socket_dir: Path | None = None

    # ---------------------------------------------------------------------------------- lifecycle
    model: Path | None = None  # a GGUF for the chat scenarios (else the SmolLM2 wheel, short answers)

    @classmethod
    async def create(
        cls,
        name: str,
        tmp: Path,
        localnet: LocalnetProcess,
        *,
        relays: int = 1,
        disk_kib: int | None = None,
        model: Path | None = None,
        pricing_mode: str = "prepaid",
    ) -> FaultRig:
        rig = cls(name, tmp, localnet, pricing_mode=pricing_mode)
        rig.model = model
        rig.logs.mkdir(parents=True, exist_ok=True)
        for i in range(relays):
            relay = RelayProcess(lmdb=tmp / f"relay-{i}-lmdb")
            await relay.start()
            rig.relays.append(relay)
        rig.proxy = RpcProxy(localnet.url)
        await rig.proxy.start()
        keys_dir = tmp / "keys"
        keys, _ = KeyStore(keys_dir).init()
        if disk_kib is None:
            rig.state_dir.mkdir(mode=0o700)
            for f in (KeyStore(keys_dir).nostr_path, KeyStore(keys_dir).bot_path):
                shutil.copy2(f, rig.state_dir / f.name)
        else:
            rig.holder = TmpfsHolder(
                rig.state_dir, disk_kib, [KeyStore(keys_dir).nostr_path, KeyStore(keys_dir).bot_path]
            )
            rig.holder.start()
        rig.machine = keys.nostr_pubkey_hex
        rig.namespace_id = await bootstrap_namespace(
            localnet.url, keys.bot, keys.bot.pubkey(), rig.treasury, NAMESPACE_NAME, program=PROGRAM
        )
        rig.treasury_start = await rig.lamports(rig.treasury)
        rig._socket_dir = Path(tempfile.mkdtemp(prefix="xf-"))  # a Unix socket path must stay short
        rig.config_path.write_text(rig._config_yaml())
        return rig

    machine: str = ""

    @property
    def logs(self) -> Path:
        return self.tmp / "logs"

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def config_path(self) -> Path:
        return self.tmp / "config.yaml"

    @property
    def ledger_path(self) -> Path:
        base = self.holder.root if self.holder is not None else self.state_dir
        return base / LEDGER_FILE

    @property
    def chat_socket(self) -> Path:
        assert self._socket_dir is not None
        return self._socket_dir / "chat.sock"

    @property
    def agent(self) -> AgentProcess:
        return self.agents[-1]

    def _config_yaml(self) -> str:
        relays = ", ".join(r.url for r in self.relays)
        assert self.proxy is not None
        llm = (
            "llm:\n  n_ctx: 256\n  max_tokens: 16\n  n_threads: 1\n"
            if self.model is None
            else f"llm:\n  model_path: {self.model}\n  n_ctx: 2048\n  max_tokens: 1900\n  n_threads: 1\n"
        )
        return (
            f"device:\n  state_dir: {self.state_dir}\n  log_level: info\n"
            f"nostr:\n  relays: [{relays}]\n"
            f"solana:\n  rpc_url: {self.proxy.url}\n  namespace_id: {self.namespace_id}\n"
            "  confirm_timeout_seconds: 10\n"
            f"pricing:\n  recharge_lamports: {PRICE}\n  tokens_per_lamport: 1\n  mode: {self.pricing_mode}\n"
            f"{llm}"
            f"chat:\n  socket: {self.chat_socket}\n"
            "indicators:\n  console: 'off'\n"
        )

    async def start_agent(self, fault: str | None = None, *, ready: bool = True) -> AgentProcess:
        """Start ``xephy-device run`` (with ``XEPHY_DEVICE_FAULT=fault``) and wait for ``ready``."""
        agent = AgentProcess(
            self.config_path, self.logs, len(self.agents) + 1, fault=fault, holder=self.holder
        )
        self.agents.append(agent)
        if ready:
            await agent.wait_ready()
        return agent

    async def close(self) -> None:
        """Stop every process this rig started (also after a failure)."""
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await agent.kill() if agent.running else None
        for relay in self.relays:
            with contextlib.suppress(Exception):
                await relay.stop()
        if self.proxy is not None:
            await self.proxy.stop()
        if self.holder is not None:
            self.holder.stop()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    # --------------------------------------------------------------------------------------- chain
    async def _rpc(self) -> AsyncClient:
        return AsyncClient(self.localnet.url)

    async def lamports(self, key: Pubkey) -> int:
        client = await self._rpc()
        try:
            return int((await client.get_balance(key)).value)
        finally:
            await client.close()

    async def user_account(self, user: Pubkey) -> bp.UserAccount:
        client = await self._rpc()
        try:
            info = (await client.get_account_info(bp.user_pda(PROGRAM.program_id, user))).value
            assert info is not None, f"user {user} is not registered"
            return bp.UserAccount.decode(bytes(info.data))
        finally:
            await client.close()

    async def vault(self, user: Pubkey) -> int:
        return await self.lamports(bp.vault_pda(PROGRAM.program_id, user))

    async def add_user(self) -> Keypair:
        """A user registered with :data:`DEPOSIT` lamports in the vault, through real transactions."""
        user = Keypair()
        await bootstrap_user(self.localnet.url, user, DEPOSIT, program=PROGRAM)
        self.users[str(user.pubkey())] = user
        return user

    # ------------------------------------------------------------------------------------- requests
    @property
    def target(self) -> RechargeTarget:
        return RechargeTarget(
            relays=tuple(r.url for r in self.relays),
            session=DEFAULT_SESSION,
            machine_pubkey=self.machine,
            device_pubkey=self.machine,
        )

    async def request_event(
        self, user: Keypair, *, nonce: int | None = None, ttl: int = 600, created_at: int | None = None
    ) -> Event:
        """A dApp Request (throw-away key) charging :data:`PRICE` with ``user``'s next nonce."""
        if nonce is None:
            nonce = (await self.user_account(user.pubkey())).nonce
        config = Config(solana=SolanaConfig(namespace_id=self.namespace_id))
        payload = sign_payload(
            user,
            config,
            machine=bytes.fromhex(self.machine),
            amount=PRICE,
            ttl=ttl,
            nonce=nonce,
            namespace_name=NAMESPACE_NAME,
        ).text
        keys = Keys.generate()
        if created_at is None:
            event = build_request_event(payload, self.target, keys)
        else:
            request = Request(MachineStatus.Working, Reason.UserRequest, ZERO_EVENT_ID, payload)
            tags = [Tag.parse(t) for t in event_tags(DEFAULT_SESSION, self.machine)]
            event = (
                EventBuilder(Kind(KIND), encode_message(request))
                .tags(tags)
                .custom_created_at(Timestamp.from_secs(created_at))
                .finalize(keys)
            )
        self.requests.append(SentRequest(event.id().to_hex(), str(user.pubkey()), nonce))
        return event

    async def publish(self, event: Event, relays: list[RelayProcess] | None = None) -> None:
        """Publish ``event`` to ``relays`` (default: all) and wait for each relay's OK."""
        for relay in relays if relays is not None else self.relays:
            client: Any = Client()
            try:
                await client.add_relay(RelayUrl.parse(relay.url))
                await client.connect(timedelta(seconds=5))
                out = await client.send_event(event)
                assert out.success, f"{relay.url} refused the request: {out.failed}"
            finally:
                await client.shutdown()
                del client
                gc.collect()

    async def recharge(self, user: Keypair, **kwargs: Any) -> str:
        event = await self.request_event(user, **kwargs)
        await self.publish(event)
        return event.id().to_hex()

    # ----------------------------------------------------------------------------------------- chat
    def _chat_http(self) -> ClientSession:
        return ClientSession(
            connector=UnixConnector(path=str(self.chat_socket)),
            base_url="http://device",
            timeout=ClientTimeout(total=120),
        )

    async def chat(self, user: Keypair, *, max_tokens: int = 1) -> tuple[int, dict[str, Any]]:
        """One non-streaming chat of :data:`CHAT_MESSAGES`: (HTTP status, body)."""
        token = issue_token(user, self.machine, ttl_seconds=3600)
        async with self._chat_http() as http:
            resp = await http.post(
                "/v1/chat/completions",
                json={"messages": CHAT_MESSAGES, "max_tokens": max_tokens, "temperature": 0},
                headers={"Authorization": f"Bearer {token}"},
            )
            return resp.status, await resp.json()

    async def stream_chat(
        self, user: Keypair, tally: ChatTally, on_token: Callable[[int], Awaitable[None]] | None = None
    ) -> None:
        """Stream one long chat of :data:`CHAT_MESSAGES`, counting every token the client receives into
        ``tally`` (and error codes, in-band or HTTP); ``on_token(n)`` runs after the n-th token.  A
        connection the agent drops (it was killed) just ends the stream."""
        token = issue_token(user, self.machine, ttl_seconds=3600)
        tally.chats += 1
        try:
            async with self._chat_http() as http:
                resp = await http.post(
                    "/v1/chat/completions",
                    json={"messages": CHAT_MESSAGES, "stream": True, "temperature": 0},
                    headers={"Authorization": f"Bearer {token}"},
                )
                if resp.status != 200:
                    tally.chats -= 1  # refused before anything was held
                    tally.refused[(await resp.json())["error"]["code"]] += 1
                    return
                async for line in resp.content:
                    if not line.startswith(b"data: {"):
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        tally.refused[event["error"]["code"]] += 1
                    elif event["choices"] and event["choices"][0]["delta"].get("content"):
                        for _ in range(event["choices"][0]["delta"]["content"].count(" m")):
                            tally.delivered += 1
                            if on_token is not None:
                                await on_token(tally.delivered)
        except (ClientError, ConnectionError):
            pass  # the agent went away mid-answer: what arrived is counted

    # --------------------------------------------------------------------------------------- ledger
    def readable_ledger(self) -> Path:
        """A path SQLite can open: the ledger itself, or a copy when it lives in the holder's namespace
        (SQLite resolves ``/proc/<pid>/root`` as a symlink to ``/``, i.e. outside that namespace)."""
        if self.holder is None:
            return self.ledger_path
        snapshot = self.tmp / "ledger-snapshot"
        shutil.rmtree(snapshot, ignore_errors=True)
        snapshot.mkdir()
        for suffix in ("", "-wal"):
            source = self.ledger_path.with_name(LEDGER_FILE + suffix)
            if source.exists():
                shutil.copyfile(source, snapshot / source.name)
        return snapshot / LEDGER_FILE

    def _read(self, sql: str) -> list[Any]:
        path = self.readable_ledger()
        if not path.exists():
            return []
        uri = f"file:{path}?mode=ro" if self.holder is None else f"file:{path}"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            return []  # a torn snapshot: the caller polls again

    def _rows(self) -> dict[str, tuple[str, str | None]]:
        """``request_id → (state, error_code)``, straight from SQLite."""
        return {r[0]: (r[1], r[2]) for r in self._read("SELECT request_id, state, error_code FROM recharges")}

    def row_state(self, request_id: str) -> str | None:
        found = self._rows().get(request_id)
        return found[0] if found else None

    def outbox_pending(self) -> int:
        """Outbox events no relay has acknowledged yet (-1 when the ledger cannot be read right now)."""
        rows = self._read("SELECT count(*) FROM outbox WHERE acked_at IS NULL")
        return int(rows[0][0]) if rows else -1

    def settled(self) -> bool:
        """Every published request finished and every reply acknowledged by a relay."""
        rows = self._rows()
        finished = all(
            rows.get(r.event_id, ("", None))[0] in {s.value for s in RechargeState if s.finished}
            for r in self.requests
        )
        return finished and self.outbox_pending() == 0 and self.open_holds() == 0

    def open_holds(self) -> int:
        """Chat holds not yet settled (-1 when the ledger cannot be read right now)."""
        rows = self._read("SELECT count(*) FROM holds")
        return int(rows[0][0]) if rows else -1

    async def wait_state(self, request_id: str, *states: str, within: float = 30.0) -> None:
        await wait_until(
            lambda: self.row_state(request_id) in states, within, f"{request_id[:8]} in {states}"
        )

    async def wait_settled(self, within: float = SETTLE_SECONDS) -> None:
        try:
            await wait_until(self.settled, within, "every request finished and every reply published", 0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nrows: {self._rows()}\nagent:\n{self.agent.logs()}") from None

    # ------------------------------------------------------------------------------------- relays
    async def device_events(self) -> list[Event]:
        """Every event this device authored, from every running relay (one per id)."""
        found: dict[str, Event] = {}
        for relay in self.relays:
            if not relay.running:
                continue
            client: Any = Client()
            try:
                await client.add_relay(RelayUrl.parse(relay.url))
                await client.connect(timedelta(seconds=5))
                flt = Filter().kind(Kind(KIND)).author(PublicKey.parse(self.machine))
                for event in await client.fetch_events(ReqTarget.auto([flt]), timedelta(seconds=5)):
                    found[event.id().to_hex()] = event
            finally:
                await client.shutdown()
                del client
                gc.collect()
        return list(found.values())

    # ------------------------------------------------------------------------------------- verdict
    async def verify(
        self,
        *,
        expect_granted: int | None = None,
        expect_refused: int | None = None,
        chats: ChatTally | None = None,
    ) -> None:
        """Wait for recovery, then assert every invariant; record the scenario for the summary table.

        With ``chats``: every delivered token is debited (free tokens ≤ ``chats.tolerated``), each chat
        at most once, and the debits are part of the balances the relay's Transaction events rebuild.
        """
        problems: list[str] = []
        lost = double = granted = refused = 0
        free: int | None = None
        try:
            await self.wait_settled()
        except AssertionError as exc:
            problems.append(str(exc))
        rows = self._rows()
        lost = sum(
            1
            for r in self.requests
            if rows.get(r.event_id, ("", None))[0] not in (RechargeState.GRANTED, RechargeState.FAILED)
        )
        granted_by_user = Counter(
            r.user for r in self.requests if rows.get(r.event_id, ("", None))[0] == RechargeState.GRANTED
        )
        granted = sum(granted_by_user.values())
        refused = sum(1 for r in self.requests if rows.get(r.event_id, ("", None))[0] == RechargeState.FAILED)
        if lost:
            problems.append(f"{lost} request(s) never finished: {rows}")

        # chain: each request charged at most once; nonce and vault move only for grants
        charged_total = 0
        for user_key, user in self.users.items():
            account = await self.user_account(user.pubkey())
            spent = DEPOSIT - await self.vault(user.pubkey())
            charges, rest = divmod(spent, PRICE)
            charged_total += charges
            if rest:
                problems.append(f"{user_key}: vault moved by {spent}, not a multiple of {PRICE}")
            if charges != granted_by_user[user_key]:
                problems.append(
                    f"{user_key}: charged {charges}x on chain, granted {granted_by_user[user_key]}x"
                )
            double += max(0, charges - granted_by_user[user_key])
            if account.nonce != charges:
                problems.append(f"{user_key}: nonce {account.nonce} after {charges} charge(s)")
        treasury_delta = await self.lamports(self.treasury) - self.treasury_start
        if treasury_delta != charged_total * PRICE:
            problems.append(f"treasury moved by {treasury_delta}, expected {charged_total * PRICE}")

        # relay: every grant published exactly once, every refusal answered exactly once
        events = await self.device_events()
        tx_by_user: Counter[str] = Counter()
        statuses: Counter[tuple[str, str]] = Counter()
        relay_ids = set()
        for event in events:
            relay_ids.add(event.id().to_hex())
            try:
                message = decode_message(event.content())
            except ProtocolError:
                continue
            if isinstance(message, Transaction) and message.tokens > 0:
                tx_by_user[message.user] += 1
            elif isinstance(message, Status):
                statuses[(message.initial_request, str(message.reason))] += 1
        for user_key in self.users:
            if tx_by_user[user_key] != granted_by_user[user_key]:
                problems.append(
                    f"{user_key}: {tx_by_user[user_key]} Transaction event(s) on the relay "
                    f"for {granted_by_user[user_key]} grant(s)"
                )
        for r in self.requests:
            state = rows.get(r.event_id, ("", None))[0]
            lock_failed = statuses[(r.event_id, str(Reason.LockFailed))]
            if state == RechargeState.FAILED and lock_failed != 1:
                problems.append(f"refused {r.event_id[:8]}: {lock_failed} LockFailed replies on the relay")
            if state == RechargeState.GRANTED and lock_failed:
                problems.append(f"granted {r.event_id[:8]} also has a LockFailed reply")

        # ledger: clean, balances = grants - debits >= 0 = what `ledger rebuild` computes from the relay
        with Ledger.open(self.readable_ledger()) as ledger:
            totals = ledger.totals()
            check = ledger.check()
            unfinished = ledger.unfinished_recharges()
            grant_event_ids = {r[0] for r in ledger._query("SELECT event_id FROM ops WHERE kind = 'grant'")}
            chat_debits = [
                (str(user), -int(delta))
                for user, delta in ledger._query("SELECT user, delta FROM ops WHERE kind = 'debit'")
            ]
            holds_left = ledger.open_holds()
        problems += [f"ledger check: {p}" for p in check]
        if holds_left:
            problems.append(f"chat holds never settled: {holds_left}")
        debited = Counter[str]()
        for user_key, tokens in chat_debits:
            debited[user_key] += tokens
        if chats is not None:
            mine = [tokens for user_key, tokens in chat_debits if user_key == chats.user and tokens > 0]
            extra_debits = max(0, len(mine) - chats.chats)
            double += extra_debits
            if extra_debits:
                problems.append(f"{len(mine)} debits for {chats.chats} chats")
            completion = sum(mine) - chats.prompt_tokens * len(mine)
            free = max(0, chats.delivered - completion)
            if free > chats.tolerated:
                problems.append(
                    f"{free} tokens delivered and never charged (delivered {chats.delivered}, charged "
                    f"{completion} completion tokens in {len(mine)} debits; tolerated {chats.tolerated})"
                )
        if unfinished:
            problems.append(f"unfinished recharges left: {[u.request_id for u in unfinished]}")
        if any(v < 0 for v in totals.values()):
            problems.append(f"negative balance: {totals}")
        missing = grant_event_ids - relay_ids
        if missing:
            problems.append(f"grant Transaction events missing on the relay: {sorted(missing)}")
        expected_totals = {u: n * PRICE - debited[u] for u, n in granted_by_user.items() if n}
        if {u: t for u, t in totals.items() if t} != expected_totals:
            problems.append(f"ledger totals {totals} != grants {expected_totals}")
        running = [r.url for r in self.relays if r.running]
        if running:
            records = await fetch_transactions(
                running, authors=[self.machine], session=DEFAULT_SESSION, machine=self.machine
            )
            rebuilt_path = self.tmp / f"rebuilt-{time.monotonic_ns()}.sqlite3"
            with Ledger.open(rebuilt_path) as rebuilt:
                rebuilt.rebuild(records)
                rebuilt_totals = rebuilt.totals()
            if {u: t for u, t in rebuilt_totals.items() if t} != {u: t for u, t in totals.items() if t}:
                problems.append(f"ledger rebuild from the relay gives {rebuilt_totals}, local {totals}")

        # the agent: still running and answering
        if not self.agent.running:
            problems.append(f"agent not running (rc {self.agent.proc.returncode})")
        else:
            try:
                health = await asyncio.to_thread(ChatClient(self.chat_socket, timeout=10).health)
                if health.get("machine_pubkey") not in (None, self.machine):
                    problems.append(f"agent health answers for another machine: {health}")
            except Exception as exc:
                problems.append(f"agent does not answer on its chat socket: {exc}")

        if expect_granted is not None and granted != expect_granted:
            problems.append(f"granted {granted}, expected {expect_granted}")
        if expect_refused is not None and refused != expect_refused:
            problems.append(f"refused {refused}, expected {expect_refused}")
        RESULTS.append(
            ScenarioResult(
                self.name,
                self.faults,
                len(self.requests),
                granted,
                refused,
                lost,
                double,
                time.monotonic() - self.started,
                problems,
                free,
            )
        )
        assert not problems, "invariants violated:\n" + "\n".join(problems)
