"""A scripted end-to-end session on the embedded defaults: ``make demo`` / ``python -m device.devtools.demo``.

    python -m device.devtools.demo [--workdir DIR] [--model PATH] [--question TEXT] [--max-tokens N]

Steps (each one checked; the first that fails ends the demo with exit status 1):

1. start the agent with the hardware button enabled on a mock GPIO pin;
2. watch the relay: every kind-1573 event that crosses it is printed (author device/user, tags,
   decoded content) by a plain NIP-01 WebSocket subscriber;
3. as a user, in a "second terminal" (real ``xephy-device`` subprocesses): ``user keygen``,
   ``airdrop``, ``register``, ``deposit``;
4. ``user recharge``: Request → pay → the device's ``Transaction`` granting tokens;
5. ``chat -m`` with a short question, then the device's debit ``Transaction`` and ``user balance``;
6. press the button: the device publishes a ``Status`` (reason ``AdminRequest``) with its telemetry;
7. stop the agent cleanly and print a summary.

**Why the agent runs in this process.**  gpiozero's ``MockFactory`` pins are Python objects inside
the process that created them: there is no file, socket or signal through which another process
could drive them, so a ``xephy-device run`` subprocess with ``GPIOZERO_PIN_FACTORY=mock`` has a
button nobody can press.  The demo therefore builds exactly what ``xephy-device run`` builds
(config → keys → ledger → :class:`~device.agent.Agent`) on this process's event loop, with a
``MockFactory`` installed as gpiozero's pin factory, and presses the pin with
``drive_low()``/``drive_high()`` as a finger would.  Everything on the user side stays out of
process: the user commands are real ``xephy-device`` subprocesses talking to the agent over the
embedded relay, the chain stand-in's JSON-RPC and the chat socket (all on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from device.agent import Agent, ServicePlan
from device.config import Config, load_config
from device.endpoints import ENDPOINTS_FILE, Endpoints
from device.keys import KeyStore
from device.ledger import Ledger
from device.logs import CodeFormatter
from device.protocol import KIND, ProtocolError, Reason, Status, Transaction, decode_message

__all__ = ["DemoError", "RelayEvent", "RelayWatcher", "main", "run_demo"]

DEFAULT_QUESTION = "What is a Raspberry Pi? Answer in one sentence."
DEFAULT_MAX_TOKENS = 48
BUTTON_PIN = 17
STEP_TIMEOUT = 120.0
"""Seconds any one step may take (a CLI command, or waiting for an event on the relay)."""
SHORT = 20
"""Long strings (signatures, keys) in decoded content are cut to this many characters."""


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def say(text: str = "") -> None:
    """Print one line of the demo's own narration (flushed, so it interleaves correctly)."""
    print(text, flush=True)


def step(number: int, title: str) -> None:
    """Print a step header."""
    say()
    say(f"== step {number}: {title}")


# --------------------------------------------------------------------------- the relay watcher


@dataclass(frozen=True, slots=True)
class RelayEvent:
    """One kind-1573 event seen on the relay, with its decoded content (``None`` if malformed)."""

    event_id: str
    author: str
    from_device: bool
    tags: list[list[str]]
    content: str
    message: Any


def _short(text: str) -> str:
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def expand(value: Any) -> Any:
    """``value`` with nested JSON text parsed (payloads inside payloads) and long strings shortened."""
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > 8 and all(isinstance(v, int) for v in value):  # a byte array (signature, …)
            return f"[{', '.join(map(str, value[:4]))}, … {len(value)} bytes]"
        return [expand(v) for v in value]
    if isinstance(value, str):
        if value[:1] in "{[":
            with contextlib.suppress(ValueError):
                return expand(json.loads(value))
        return _short(value)
    return value


def describe_event(event: RelayEvent) -> str:
    """``[relay] kind 1573 from device 1a2b…  tags s=… p=…`` and the decoded content on the next line."""
    who = "device" if event.from_device else "user"
    tags = " ".join(f"{t[0]}={_short(t[1])}" for t in event.tags if len(t) >= 2)
    kind = type(event.message).__name__ if event.message is not None else "undecodable"
    try:
        content = json.dumps(expand(json.loads(event.content)), ensure_ascii=False)
    except ValueError:
        content = _short(event.content)
    return (
        f"[relay] kind {KIND} {kind} from {who} {event.author[:12]}…  id {event.event_id[:12]}…  "
        f"tags {tags}\n[relay]   {content}"
    )


class RelayWatcher:
    """A NIP-01 subscriber on the relay: prints every kind-1573 event and lets steps wait for one."""

    def __init__(self, url: str, device_pubkey: str) -> None:
        self.url = url
        self.device_pubkey = device_pubkey
        self.events: list[RelayEvent] = []
        self._changed = asyncio.Condition()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, within: float = 10.0) -> None:
        """Connect and subscribe (returns once the relay has acknowledged with EOSE)."""
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run())
        done, _ = await asyncio.wait(
            [self._task, asyncio.create_task(self._subscribed.wait())],
            timeout=within,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not self._subscribed.is_set():
            if self._task in done:
                raise DemoError(f"relay subscription failed: {self._task.exception()!r}")
            raise DemoError(f"no EOSE from {self.url} within {within:g} s")

    async def stop(self) -> None:
        """Close the subscription and the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        assert self._session is not None
        async with self._session.ws_connect(self.url, heartbeat=20) as ws:
            await ws.send_json(["REQ", "demo", {"kinds": [KIND]}])
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame[:2] == ["EOSE", "demo"]:
                    self._subscribed.set()
                elif frame[:2] == ["EVENT", "demo"] and len(frame) == 3:
                    await self._add(frame[2])

    async def _add(self, raw: dict[str, Any]) -> None:
        if any(e.event_id == raw["id"] for e in self.events):
            return
        try:
            message: Any = decode_message(raw["content"])
        except ProtocolError:
            message = None
        event = RelayEvent(
            event_id=raw["id"],
            author=raw["pubkey"],
            from_device=raw["pubkey"] == self.device_pubkey,
            tags=raw["tags"],
            content=raw["content"],
            message=message,
        )
        say(describe_event(event))
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(
        self, what: str, predicate: Callable[[RelayEvent], bool], within: float = STEP_TIMEOUT
    ) -> RelayEvent:
        """The first event (already seen or still to come) matching ``predicate``."""

        async def find() -> RelayEvent:
            async with self._changed:
                while True:
                    for event in self.events:
                        if predicate(event):
                            return event
                    if self._task is not None and self._task.done():
                        raise DemoError(f"relay subscription ended while waiting for {what}")
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), within)
        except TimeoutError:
            raise DemoError(f"no {what} on the relay within {within:g} s") from None


def transaction_for(user: str, sign: int) -> Callable[[RelayEvent], bool]:
    """Predicate: a device-signed ``Transaction`` for ``user`` with tokens of the given sign."""

    def match(event: RelayEvent) -> bool:
        m = event.message
        return event.from_device and isinstance(m, Transaction) and m.user == user and m.tokens * sign > 0

    return match


def admin_status(event: RelayEvent) -> bool:
    """Predicate: a device-signed ``Status`` with reason ``AdminRequest`` (the button's event)."""
    m = event.message
    return event.from_device and isinstance(m, Status) and m.reason == Reason.AdminRequest


# --------------------------------------------------------------------------- the agent, in-process


class PrefixedOutput(io.StringIO):
    """A text stream for the agent's own output: each complete line is printed as ``[agent] …``.

    The agent writes from the event loop and the console indicator from its render thread, hence the lock.
    """

    def __init__(self, prefix: str = "[agent] ") -> None:
        super().__init__()
        self._prefix = prefix
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        """Buffer ``text``; print every complete line with the prefix."""
        with self._lock:
            self._pending += text.replace("\r", "\n")
            *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                say(f"{self._prefix}{line.rstrip()}")
        return len(text)

    def isatty(self) -> bool:
        """Never a terminal: the console indicator writes plain lines, not a redrawn one."""
        return False


def install_mock_pins() -> Any:
    """Make gpiozero's ``MockFactory`` the pin factory for every device built from now on."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    Device.pin_factory = factory
    return factory


def log_to_file(path: Path) -> None:
    """The agent's log lines (``device.*``) go to ``path``; warnings and worse also to stderr."""
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(CodeFormatter())
    file_handler.setLevel(logging.INFO)
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setFormatter(CodeFormatter())
    stderr_handler.setLevel(logging.WARNING)
    root = logging.getLogger("device")
    root.handlers[:] = [file_handler, stderr_handler]
    root.setLevel(logging.INFO)
    root.propagate = False


@contextlib.asynccontextmanager
async def running_agent(config: Config, environ: dict[str, str]) -> AsyncIterator[Endpoints]:
    """What ``xephy-device run`` does, on this event loop; yields once the agent is ready, stops it after."""
    state_dir = config.device.state_dir
    (state_dir / ENDPOINTS_FILE).unlink(missing_ok=True)  # a stale one from an earlier run must not count
    keys, created = KeyStore(state_dir).init()
    for path in created:
        say(f"[agent] generated {path}")
    plan = ServicePlan.build(config, keys, environ)
    stop = asyncio.Event()
    with Ledger.open(plan.ledger_path) as ledger:
        agent = Agent(config, keys, ledger, plan, environ=environ)
        task = asyncio.create_task(agent.run(stop, PrefixedOutput()))
        try:
            deadline = time.monotonic() + STEP_TIMEOUT
            # run() writes endpoints.json, announces and notifies READY with no await in between,
            # so once the file is there the agent is serving.
            while not (state_dir / ENDPOINTS_FILE).exists():
                if task.done():
                    task.result()  # raises the agent's error
                    raise DemoError("the agent stopped before it was ready")
                if time.monotonic() > deadline:
                    raise DemoError(f"the agent was not ready within {STEP_TIMEOUT:g} s")
                await asyncio.sleep(0.05)
            yield Endpoints.read(state_dir)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
    say("[agent] stopped")


# --------------------------------------------------------------------------- the user side


class UserTerminal:
    """Runs ``xephy-device …`` subprocesses in ``workdir`` with the demo config, printing them."""

    def __init__(self, workdir: Path, config_path: Path, environ: dict[str, str]) -> None:
        self.workdir = workdir
        self.config_path = config_path
        self.environ = environ

    async def run(self, *args: str, within: float = STEP_TIMEOUT) -> str:
        """Run one command; print it and its output; return stdout+stderr; raise on a non-zero exit."""
        say(f"$ xephy-device {shlex.join(args)}")
        argv = [sys.executable, "-m", "device", *args, "--config", str(self.config_path)]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.workdir,
            env=self.environ,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), within)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise DemoError(f"`xephy-device {shlex.join(args)}` did not finish within {within:g} s") from None
        text = out.decode(errors="replace")
        for line in text.splitlines():
            say(f"  {line}")
        if proc.returncode != 0:
            raise DemoError(f"`xephy-device {shlex.join(args)}` exited with {proc.returncode}")
        return text


# --------------------------------------------------------------------------- the session


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``python -m device.devtools.demo`` was asked to do."""

    workdir: Path
    model: Path | None
    question: str
    max_tokens: int


def write_config(options: DemoOptions) -> Path:
    """The demo's config file: embedded relay and chain (the defaults), the button on a mock pin."""
    lines = [
        "# written by python -m device.devtools.demo",
        "device:",
        f"  state_dir: {json.dumps(str(options.workdir / '.xephy-device'))}",
        "nostr:",
        "  embedded_relay_port: 0",  # free ports: the demo runs beside a `make run` without a clash
        "solana:",
        "  embedded_rpc_port: 0",
        "button:",
        "  enabled: true",
        f"  pin: {BUTTON_PIN}",
    ]
    if options.model is not None:
        lines += ["llm:", f"  model_path: {json.dumps(str(options.model.resolve()))}"]
    path = options.workdir / "demo-config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def child_environ() -> dict[str, str]:
    """This environment without systemd's variables or a config override (the demo passes --config)."""
    drop = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")
    env = {k: v for k, v in os.environ.items() if k not in drop and k != "XEPHY_DEVICE_CONFIG"}
    env["GPIOZERO_PIN_FACTORY"] = "mock"  # only matters in-process; says what the pins are
    return env


async def press_button(pin: Any, hold_seconds: float = 0.2) -> None:
    """A short press on an active-low button with pull-up: low, wait (past the debounce), high."""
    pin.drive_low()
    await asyncio.sleep(hold_seconds)
    pin.drive_high()


async def run_demo(options: DemoOptions) -> dict[str, Any]:
    """The whole session; returns the checked results (grant, debit, status) or raises DemoError."""
    options.workdir.mkdir(parents=True, exist_ok=True)
    environ = child_environ()
    config_path = write_config(options)
    config = load_config(config_path)
    log_to_file(options.workdir / "agent.log")
    results: dict[str, Any] = {}

    step(1, "start the agent (embedded relay + chain stand-in, button on mock GPIO pin BCM 17)")
    say(f"workdir {options.workdir}; config {config_path}; agent log {options.workdir / 'agent.log'}")
    factory = install_mock_pins()
    async with running_agent(config, environ) as endpoints:
        pin = factory.pin(BUTTON_PIN)
        step(2, f"subscribe to kind {KIND} on the relay {endpoints.relays[0]}")
        watcher = RelayWatcher(endpoints.relays[0], endpoints.device_pubkey)
        await watcher.start()
        say(f"subscribed; device key {endpoints.device_pubkey[:12]}…, anything else is a user")
        try:
            user = UserTerminal(options.workdir, config_path, environ)
            step(3, "a user: keypair, airdrop (stand-in only), register, deposit")
            await user.run("user", "keygen", "--keypair", "user.json")
            await user.run("user", "airdrop", "2", "--keypair", "user.json")
            await user.run("user", "register", "--keypair", "user.json")
            await user.run("user", "deposit", "0.1", "--keypair", "user.json")
            user_key = _user_pubkey(options.workdir / "user.json")

            step(4, "recharge: Request -> verify -> pay -> Transaction (+tokens)")
            await user.run("user", "recharge", "--keypair", "user.json", "--timeout", "60")
            grant = await watcher.wait_for("grant Transaction", transaction_for(user_key, +1))
            results["grant"] = grant.message.tokens
            say(f"grant: +{grant.message.tokens:,} tokens for {user_key}")

            step(5, "chat with the model; the device debits exactly the tokens used")
            await user.run(
                "chat",
                "--keypair",
                "user.json",
                "--max-tokens",
                str(options.max_tokens),
                "-m",
                options.question,
            )
            debit = await watcher.wait_for("debit Transaction", transaction_for(user_key, -1))
            results["debit"] = debit.message.tokens
            say(f"debit: {debit.message.tokens:,} tokens for {user_key}")
            text = await user.run("user", "balance", "--keypair", "user.json", "--json")
            balance = json.loads(text.strip().splitlines()[-1])
            expected = results["grant"] + results["debit"]
            if balance.get("tokens") != expected:
                raise DemoError(f"balance shows {balance.get('tokens')} tokens, expected {expected}")
            results["balance"] = expected
            say(f"balance: {expected:,} tokens = {results['grant']:,} granted {results['debit']:,} used")

            step(6, f"press the button (mock pin BCM {BUTTON_PIN}: drive low, then high)")
            await press_button(pin)
            status = await watcher.wait_for("button Status (AdminRequest)", admin_status)
            telemetry = json.loads(status.message.payload)
            results["status"] = {"status": str(status.message.status), "telemetry": telemetry}
            say(f"button Status: {status.message.status} / {status.message.reason}")
            say(f"telemetry: {json.dumps(telemetry)}")
        finally:
            await watcher.stop()
        step(7, "stop the agent")
    return results


def _user_pubkey(keypair: Path) -> str:
    from solders.keypair import Keypair

    return str(Keypair.from_bytes(bytes(json.loads(keypair.read_text()))).pubkey())


def summary(results: dict[str, Any]) -> list[str]:
    """The closing lines the demo (and its test) check."""
    return [
        f"ok grant: +{results['grant']:,} tokens",
        f"ok debit: {results['debit']:,} tokens (balance {results['balance']:,})",
        f"ok button Status: {results['status']['status']} AdminRequest",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m device.devtools.demo",
        description="Scripted end-to-end session on the embedded defaults.",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep everything here (default: a temp dir)"
    )
    parser.add_argument("--model", type=Path, default=None, help="GGUF to serve (default: SmolLM2 wheel)")
    parser.add_argument("--question", default=DEFAULT_QUESTION, help="what the user asks")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="answer length limit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when every step succeeded, 1 otherwise."""
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xephy-demo-")))
        else:
            workdir = args.workdir.resolve()
        options = DemoOptions(workdir, args.model, args.question, args.max_tokens)
        try:
            results = asyncio.run(run_demo(options))
        except (DemoError, OSError) as exc:
            say(f"\ndemo FAILED: {exc}")
            return 1
        except Exception as exc:  # the agent's own errors (DeviceError, ConfigError) and anything else
            say(f"\ndemo FAILED: {type(exc).__name__}: {exc}")
            return 1
    say()
    for line in summary(results):
        say(line)
    say("demo finished: every step succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
