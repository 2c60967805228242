"""The hostile-load harness: a REAL agent (``xephy-device run`` subprocess) on its own relay subprocess
and namespace of the chain stand-in, honest users around it, and the table of measured rows.

* :class:`HostileDevice` — one device: keys, config file, relay (optionally NIP-42), agent with the
  file-descriptor limit its systemd unit gives it, honest users funded by real recharges, chats over
  its Unix socket, the ledger's size on disk.
* :class:`Announcements` — a plain WebSocket subscription to the device's events: when each grant
  ``Transaction`` reached the relay.
* :data:`ROWS` / :func:`table_lines` — what each scenario measured against its goal, printed by
  ``conftest.py`` at the end of the session.

``XEPHY_HOSTILE_LONG=1`` runs the issue's full counts instead of the scaled-down defaults
(:func:`scaled`); the table says which ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import resource
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from nostr_sdk import Client, Event, Keys, RelayUrl
from solders.keypair import Keypair

from device.chat.auth import issue_token
from device.config import Config, SolanaConfig
from device.keys import KeyStore
from device.ledger import LEDGER_FILE
from device.localnet import bootstrap_namespace, bootstrap_user
from device.protocol import DEFAULT_SESSION, ProtocolError, Transaction, decode_message
from device.solana.program import ProgramRef, ProgramVersion
from device.wallet.recharge import RechargeTarget, build_request_event
from device.wallet.signing import sign_payload
from tests.fixtures.processes import AgentProcess, LocalnetProcess
from tests.fixtures.relay import RelayProcess

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("XEPHY_HOSTILE_LONG", "") not in ("", "0")
NAMESPACE_NAME = "XePHY-Hostile"
PROGRAM = ProgramRef.default(ProgramVersion.V2)
PRICE = 5_000_000  # lamports per recharge = tokens granted (tokens_per_lamport 1)
DEPOSIT = 100_000_000
#: the file-descriptor limit of an agent whose unit sets none (the usual soft default)
DEFAULT_NOFILE = 1024


def scaled(default: int, full: int) -> int:
    """``full`` (the issue's count) with ``XEPHY_HOSTILE_LONG=1``, else ``default``."""
    return full if LONG else default


def unit_nofile(unit: Path = ROOT / "systemd" / "xephy-device.service") -> int:
    """The ``LimitNOFILE=`` of the shipped systemd unit (its soft limit), or :data:`DEFAULT_NOFILE`."""
    found = re.search(r"^LimitNOFILE=(\d+)(?::\d+)?\s*$", unit.read_text(), re.MULTILINE)
    return int(found.group(1)) if found else DEFAULT_NOFILE


def raise_own_nofile(at_least: int) -> int:
    """Raise this process's soft file limit (up to the hard one) for a flood; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = at_least if hard == resource.RLIM_INFINITY else min(at_least, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------------------- the table
@dataclass
class Row:
    """One line of the summary table."""

    name: str
    attack: str
    measured: str
    goal: str
    ok: bool
    seconds: float
    timing: bool = False  # a speed goal: shown here, enforced by benchmarks/hostile.py, not asserted


ROWS: list[Row] = []


def table_lines() -> list[str]:
    """The session's table (empty when no hostile scenario ran): one line per row, its attack below."""
    if not ROWS:
        return []
    name_w = max(len("row"), *(len(r.name) for r in ROWS))
    goal_w = max(len("goal"), *(len(r.goal) for r in ROWS))
    head = f"{'row':<{name_w}}  ok   {'goal':<{goal_w}}  seconds  measured"
    lines = [head, "-" * len(head)]
    for r in ROWS:
        ok = ("yes" if r.ok else "NO") + ("*" if r.timing else "")
        lines.append(f"{r.name:<{name_w}}  {ok:<4} {r.goal:<{goal_w}}  {r.seconds:>7.1f}  {r.measured}")
        lines.append(f"{'':<{name_w}}  attack: {r.attack}")
    failed = [r.name for r in ROWS if not r.ok]
    lines.append("-" * len(head))
    lines.append(
        f"{len(ROWS)} rows ({'full' if LONG else 'scaled-down; XEPHY_HOSTILE_LONG=1 for the full'} counts)"
        f"; goals missed: {', '.join(failed) if failed else 'none'}"
    )
    if any(r.timing for r in ROWS):
        lines.append(
            "* a speed goal: reported here, not asserted (speed targets are enforced in benchmarks/, "
            "make bench: benchmarks/hostile.py)"
        )
    return lines


def record(row: Row) -> Row:
    ROWS.append(row)
    return row


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# ----------------------------------------------------------------------------------- announcements
class Announcements:
    """Every grant ``Transaction`` the device publishes, with the time it reached the relay."""

    def __init__(self, relay_url: str, machine: str) -> None:
        self.relay_url = relay_url
        self.machine = machine
        self.granted_at: dict[str, float] = {}  # user -> first grant seen (monotonic)
        self.events = 0
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> Announcements:
        self._task = asyncio.create_task(self._watch())
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        flt = {"kinds": [1573], "authors": [self.machine], "since": int(time.time()) - 5}
        async with aiohttp.ClientSession() as http, http.ws_connect(self.relay_url, max_msg_size=0) as ws:
            await ws.send_str(json.dumps(["REQ", "announcements", flt]))
            self._subscribed.set()
            async for msg in ws:
                frame = json.loads(msg.data)
                if frame[0] != "EVENT":
                    continue
                self.events += 1
                try:
                    message = decode_message(frame[2]["content"])
                except ProtocolError:
                    continue
                if isinstance(message, Transaction) and message.tokens > 0:
                    self.granted_at.setdefault(message.user, time.monotonic())

    async def wait_granted(self, users: list[str], within: float) -> None:
        """Until every user's grant was announced, or ``within`` seconds passed (no error)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not all(u in self.granted_at for u in users):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------------------ device
@dataclass
class ChatAnswer:
    status: int
    code: str | None  # the error code of a refusal, None for a 200
    seconds: float


class HostileDevice:
    """One device on its own relay and chain namespace, with the real agent as a subprocess."""

    def __init__(self, tmp: Path, localnet: LocalnetProcess, relay: RelayProcess) -> None:
        self.tmp = tmp
        self.localnet = localnet
        self.relay = relay
        self.machine = ""
        self.namespace_id = 0
        self.agent: AgentProcess | None = None
        self.socket_dir = Path(tempfile.mkdtemp(prefix="xh-", dir="/tmp"))  # sun_path is 108 bytes

    @classmethod
    async def create(
        cls,
        tmp: Path,
        localnet: LocalnetProcess,
        *,
        model: Path,
        nip42: str | None = None,
        chat: dict[str, Any] | None = None,
    ) -> HostileDevice:
        """Relay, keys, namespace, config; the agent is started by :meth:`start`."""
        relay = RelayProcess(lmdb=tmp / "relay-lmdb", nip42=nip42)
        await relay.start()
        device = cls(tmp, localnet, relay)
        device.state_dir.mkdir(mode=0o700, parents=True)
        keys, _ = KeyStore(device.state_dir).init()
        device.machine = keys.nostr_pubkey_hex
        device.namespace_id = await bootstrap_namespace(
            localnet.url, keys.bot, keys.bot.pubkey(), Keypair().pubkey(), NAMESPACE_NAME, program=PROGRAM
        )
        config = {
            "device": {"state_dir": str(device.state_dir), "log_level": "info"},
            "nostr": {"relays": [relay.url]},
            "solana": {"rpc_url": localnet.url, "namespace_id": device.namespace_id},
            "pricing": {"recharge_lamports": PRICE, "tokens_per_lamport": 1},
            "llm": {"model_path": str(model), "n_ctx": 512, "max_tokens": 8, "n_threads": 1},
            "chat": {"socket": str(device.chat_socket), **(chat or {})},
            "indicators": {"console": "off"},
        }
        device.config_path.write_text(yaml.safe_dump(config))
        return device

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def config_path(self) -> Path:
        return self.tmp / "config.yaml"

    @property
    def chat_socket(self) -> Path:
        return self.socket_dir / "chat.sock"

    async def start(self) -> AgentProcess:
        """Start the agent, wait for ``ready``, and give it the unit's file-descriptor limit."""
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        self.agent = AgentProcess(self.config_path, logs, 1)
        await self.agent.wait_ready()
        limit = unit_nofile()
        _, hard = resource.prlimit(self.agent.proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(self.agent.proc.pid, resource.RLIMIT_NOFILE, (limit, max(limit, hard)))
        return self.agent

    async def close(self) -> None:
        if self.agent is not None:
            with contextlib.suppress(Exception):
                await self.agent.kill()
        with contextlib.suppress(Exception):
            await self.relay.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def logs(self) -> str:
        return self.agent.logs() if self.agent is not None else ""

    # ------------------------------------------------------------------------------------ money
    @property
    def target(self) -> RechargeTarget:
        return RechargeTarget((self.relay.url,), DEFAULT_SESSION, self.machine, self.machine)

    async def registered_user(self) -> Keypair:
        """A user registered with :data:`DEPOSIT` lamports in the vault (real transactions)."""
        user = Keypair()
        await bootstrap_user(self.localnet.url, user, DEPOSIT, program=PROGRAM)
        return user

    def request_payload(self, user: Keypair, *, nonce: int = 0) -> str:
        """A signed payload charging :data:`PRICE`, bound to this machine."""
        config = Config(solana=SolanaConfig(namespace_id=self.namespace_id))
        return sign_payload(
            user,
            config,
            machine=bytes.fromhex(self.machine),
            amount=PRICE,
            ttl=600,
            nonce=nonce,
            namespace_name=NAMESPACE_NAME,
        ).text

    def request_event(self, user: Keypair, *, nonce: int = 0) -> Event:
        """The dApp's Request for ``user`` (a throw-away Nostr key)."""
        return build_request_event(self.request_payload(user, nonce=nonce), self.target, Keys.generate())

    async def publish(self, event: Event) -> None:
        """Publish ``event`` and wait for the relay's OK (nostr-sdk client, as the dApp does)."""
        client: Any = Client()
        try:
            await client.add_relay(RelayUrl.parse(self.relay.url))
            await client.connect(timedelta(seconds=5))
            out = await client.send_event(event)
            assert out.success, f"the relay refused the request: {out.failed}"
        finally:
            await client.shutdown()
            del client
            gc.collect()

    async def funded_user(self, within: float = 30.0) -> Keypair:
        """A user with :data:`PRICE` tokens on this device, granted by a real recharge."""
        user = await self.registered_user()
        await self.publish(self.request_event(user))
        deadline = time.monotonic() + within
        while await self.balance(user) < PRICE:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the honest recharge was not granted within {within:g} s\n{self.logs()}"
                )
            await asyncio.sleep(0.1)
        return user

    # ------------------------------------------------------------------------------------ chat
    def token(self, user: Keypair) -> str:
        return issue_token(user, self.machine, ttl_seconds=3600)

    def http(self, *, limit: int = 100, timeout: float = 60.0) -> aiohttp.ClientSession:
        """An HTTP client for the chat socket."""
        return aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.chat_socket), limit=limit),
            base_url="http://device",
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def balance(self, user: Keypair) -> int:
        async with self.http(timeout=10) as http:
            resp = await http.get("/v1/balance", headers={"Authorization": f"Bearer {self.token(user)}"})
            body = await resp.json()
            return int(body.get("total", 0)) if resp.status == 200 else 0

    @staticmethod
    async def chat(http: aiohttp.ClientSession, token: str, body: dict[str, Any]) -> ChatAnswer:
        """One non-streaming chat: status, refusal code, seconds; a dropped connection is status 0."""
        started = time.monotonic()
        try:
            resp = await http.post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            raw = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return ChatAnswer(0, type(exc).__name__, time.monotonic() - started)
        code = None
        if resp.status != 200:
            try:
                code = json.loads(raw)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = f"http_{resp.status}"
        return ChatAnswer(resp.status, code, time.monotonic() - started)

    # ---------------------------------------------------------------------------------- ledger
    def ledger_files(self) -> int:
        """The ledger's size on disk: the database file and its write-ahead log."""
        return sum(
            p.stat().st_size
            for p in (self.state_dir / LEDGER_FILE, self.state_dir / f"{LEDGER_FILE}-wal")
            if p.exists()
        )

    def ledger_in_use(self) -> int:
        """The bytes of the ledger's pages in use (read through the WAL; free pages not counted): what it
        keeps, whatever the WAL file's size at the moment."""
        conn = sqlite3.connect(f"file:{self.state_dir / LEDGER_FILE}?mode=ro", uri=True, timeout=10)
        try:
            pages, free, size = (
                conn.execute(f"PRAGMA {pragma}").fetchone()[0]
                for pragma in ("page_count", "freelist_count", "page_size")
            )
        finally:
            conn.close()
        return int((pages - free) * size)


def pubkey(user: Keypair) -> str:
    """The user's Solana address, as Transaction events name it."""
    return str(user.pubkey())
