"""Recharge latency end to end, Request published → Transaction received, against baselines from the same run.

    python benchmarks/recharge.py [--json PATH] [--requests N] [--users U] [--rounds R]

The real parts run in this process, wired as :mod:`device.agent` wires them: :class:`EmbeddedRelay`, the
localnet stand-in (:class:`LocalnetServer`) with the device's bot registered in a v2 namespace,
:class:`SettlementClient` (``from_config``, the agent's options), :class:`RechargeProcessor` with
``background_settlement=True`` and :class:`RelayLink` on the relay; keys and ledger in a fresh state
directory under a temporary directory.  ``--users`` users (default 20) are registered and funded; each runs
its requests one after another (the next is signed with the nonce the last one consumed), all users at
once, so ``--users`` requests are in flight at a time.  A request: a bound authorization signed at the
user's nonce (:func:`sign_payload`), a dApp-format Request event from a throw-away key
(:func:`build_request_event`), published by a separate publisher ``Client``; the clock stops when a
subscriber ``Client`` (author = the device, ``#s``, ``#p``) receives the ``Transaction`` for that user.

Figures (medians and 99th percentiles over ``--requests``, each phase split into ``--rounds`` rounds that
alternate with the baselines' rounds, so machine weather hits all of them alike):

* **recharge p50 / p99**; targets ≤ 50 ms / ≤ 250 ms.  Baseline: the embedded relay's own publish → receive
  round trip -- a Request-shaped kind-1573 event for another machine (the device never sees it), same
  publisher and subscriber clients, same concurrency.
* **device overhead** = recharge p50 − 2 × relay p50 − bare pay p50, and its share of the recharge p50.
  Two relay legs, not one: the Request travels publisher → relay → device link, the replies travel device
  link → relay → subscriber, and each leg is one publish → receive.  Bare pay: ``prepare_pay`` + ``submit``
  straight to the stand-in (separate ``SettlementClient``, same concurrency, no relay, no ledger).
* **in-path timings**, measured inside the running device (subclasses of ``SettlementClient`` and
  ``Ledger`` that time the calls the processor, the outbox publisher and the link make), mean per recharge:
  ``prepare_pay`` + ``submit``, and all ledger calls (their wall time in the worker thread, including the
  wait for the ledger's lock).  Information only.

Prints progress to stderr and one markdown table to stdout; with ``--json PATH`` also writes its rows as
JSON.  Writes nothing else (the state directory is removed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import _table
from nostr_sdk import (
    Client,
    Event,
    Filter,
    Keys,
    Kind,
    PublicKey,
    RelayUrl,
    ReqTarget,
    SingleLetterTag,
    Timestamp,
)
from solders.keypair import Keypair

from device.config import Config, DeviceConfig, NostrConfig, PricingConfig, SolanaConfig
from device.keys import KeyStore
from device.ledger import LEDGER_FILE, Ledger
from device.localnet import LocalnetServer, bootstrap_namespace, bootstrap_user
from device.nostr_events import EventSigner
from device.protocol import (
    DEFAULT_SESSION,
    KIND,
    MachineStatus,
    ProtocolError,
    Reason,
    Status,
    Transaction,
    decode_message,
    decode_payload,
    decode_recover_info,
)
from device.recharge import RechargeProcessor
from device.relay import EmbeddedRelay, RelayLink
from device.solana.client import SettlementClient, SignedPay, SignedTransaction, TxOutcome
from device.solana.program import ProgramRef, ProgramVersion
from device.state import LinkStatus, StateHub
from device.wallet.recharge import RechargeTarget, build_request_event
from device.wallet.signing import sign_payload

P50_TARGET_MS = 50.0
P99_TARGET_MS = 250.0
NAME = "Bench"
PRICE = 5_000_000  # lamports per recharge (the default price)
WAIT_S = 30.0  # one request's answer, before the run is declared failed
TTL_S = 1_800
S_TAG = SingleLetterTag.from_byte(ord("s"))
P_TAG = SingleLetterTag.from_byte(ord("p"))
T = TypeVar("T")
NOTE = (
    "Counted where: a recharge runs from the publisher's `send_event` to the subscriber receiving the "
    "device's `Transaction`; the dApp's signing happens before the clock starts.  It holds two relay legs "
    "(Request in, replies out), each one publish → receive like the baseline, so the overhead row subtracts "
    "the relay p50 twice plus a bare `prepare_pay` + `submit` (own client, no relay, no ledger).  What "
    "remains is the device: link delivery, checks, ledger writes (fsync), the outbox publisher (a grant's "
    "events one at a time, each awaiting the relay's OK), and waiting for them under load.  The in-path rows "
    "time the "
    "same calls inside the running device; ledger time is worker-thread wall time (lock wait included, "
    "thread-pool queueing not)."
)


def progress(text: str) -> None:
    """One line of progress on stderr (stdout carries only the table)."""
    print(f"[recharge] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ in-path instrumentation
@dataclass
class Timings:
    """Wall time spent inside instrumented calls, by group, while ``enabled``."""

    enabled: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @contextlib.contextmanager
    def timed(self, group: str) -> Iterator[None]:
        """Add the duration of the ``with`` body to ``group`` (if enabled)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.enabled:
                self.seconds[group] += time.perf_counter() - start
                self.calls[group] += 1

    async def timed_async(self, group: str, call: Awaitable[T]) -> T:
        """Await ``call``, adding its duration to ``group``."""
        with self.timed(group):
            return await call


class TimedLedger(Ledger):
    """The ledger, timing the calls the processor, the outbox publisher and the relay link make."""

    timings: Timings

    def _time(self, name: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.timings.timed("ledger"), self.timings.timed(f"ledger.{name}"):
            return call(*args, **kwargs)

    def recharge(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("recharge", super().recharge, *args, **kwargs)

    def begin_recharge(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("begin_recharge", super().begin_recharge, *args, **kwargs)

    def record_submission(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("record_submission", super().record_submission, *args, **kwargs)

    def complete_recharge(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("complete_recharge", super().complete_recharge, *args, **kwargs)

    def fail_recharge(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("fail_recharge", super().fail_recharge, *args, **kwargs)

    def balance(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("balance", super().balance, *args, **kwargs)

    def pending_outbox(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("pending_outbox", super().pending_outbox, *args, **kwargs)

    def mark_acked(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("mark_acked", super().mark_acked, *args, **kwargs)

    def mark_sent_attempt(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("mark_sent_attempt", super().mark_sent_attempt, *args, **kwargs)

    def advance_cursor(self, *args: Any, **kwargs: Any) -> Any:
        return self._time("advance_cursor", super().advance_cursor, *args, **kwargs)


class TimedSettlement(SettlementClient):
    """The settlement client, timing ``prepare_pay`` and ``submit`` as the processor calls them."""

    timings: Timings

    async def prepare_pay(self, *args: Any, **kwargs: Any) -> SignedPay:
        return await self.timings.timed_async("settlement", super().prepare_pay(*args, **kwargs))

    async def submit(self, signed: SignedTransaction) -> TxOutcome:
        return await self.timings.timed_async("settlement", super().submit(signed))


# ------------------------------------------------------------------------------------- the subscriber
class Watcher:
    """Reads the subscriber client's live events; resolves waiters with the arrival time (ns)."""

    def __init__(self, user_of_request: dict[str, str]) -> None:
        self._by_event: dict[str, asyncio.Future[int]] = {}
        self._by_user: dict[str, asyncio.Future[int]] = {}
        self._user_of_request = user_of_request
        self.working: set[str] = set()  # request ids answered Status{Working}
        self.refusals: list[str] = []

    def expect_event(self, event_id: str) -> asyncio.Future[int]:
        """A future for the arrival of ``event_id`` (the relay baseline)."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._by_event[event_id] = fut
        return fut

    def expect_grant(self, user: str) -> asyncio.Future[int]:
        """A future for the arrival of the next positive ``Transaction`` for ``user``."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._by_user[user] = fut
        return fut

    async def run(self, stream: Any) -> None:
        """Consume ``stream`` (``client.notifications()``) until it ends."""
        while (note := await stream.next()) is not None:
            if note.is_shutdown():
                return
            if note.is_new_event():
                self._on_event(time.perf_counter_ns(), note.event)

    def _on_event(self, arrived: int, event: Event) -> None:
        fut = self._by_event.pop(event.id().to_hex(), None)
        if fut is not None:
            if not fut.done():
                fut.set_result(arrived)
            return
        try:
            message = decode_message(event.content())
        except ProtocolError:
            return
        if isinstance(message, Status):
            if message.status is MachineStatus.Working:
                self.working.add(message.initial_request)
            elif message.reason is Reason.LockFailed:
                user = self._user_of_request.get(message.initial_request)
                refused = self._by_user.pop(user, None) if user is not None else None
                self.refusals.append(message.payload)
                if refused is not None and not refused.done():
                    refused.set_exception(RuntimeError(f"request refused: {message.payload}"))
        elif isinstance(message, Transaction) and message.tokens > 0:
            fut = self._by_user.pop(message.user, None)
            if fut is not None and not fut.done():
                fut.set_result(arrived)


# ------------------------------------------------------------------------------------------- the bench
@dataclass
class Device:
    """The running device and its counterparts (everything :meth:`Bench.start` built)."""

    config: Config
    target: RechargeTarget
    users: list[Keypair]
    nonces: dict[str, int]
    publisher: Client
    watcher: Watcher
    bare: SettlementClient
    timings: Timings
    other_machine: RechargeTarget
    user_of_request: dict[str, str]


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``predicate`` every 10 ms; raise after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.01)


async def release_client(client: Client | None) -> None:
    """Shut a nostr-sdk client down (the caller then drops its reference; gc runs at the end)."""
    if client is not None:
        with contextlib.suppress(Exception):
            await client.shutdown()


async def start_device(
    stack: contextlib.AsyncExitStack, state_dir: Path, n_users: int, deposit: int
) -> Device:
    """Start relay, chain, the device as the agent wires it, users and two client peers.

    Everything started is stopped by ``stack``.
    """
    relay = EmbeddedRelay()
    relay_url = await relay.start()
    stack.push_async_callback(relay.stop)
    server = await stack.enter_async_context(LocalnetServer())
    keys, _ = KeyStore(state_dir).init()
    machine = keys.nostr_pubkey_hex
    program = ProgramRef.default(ProgramVersion.V2)
    server.chain.airdrop(keys.bot.pubkey(), 10_000_000_000)
    namespace_id = await bootstrap_namespace(
        server.url, Keypair(), keys.bot.pubkey(), Keypair().pubkey(), NAME, program=program
    )
    users = [Keypair() for _ in range(n_users)]
    for user in users:
        await bootstrap_user(server.chain, user, deposit, program=program)
    progress(f"relay {relay_url}, chain {server.url}, namespace {namespace_id}, {n_users} users funded")

    config = Config(
        device=DeviceConfig(state_dir=state_dir),
        nostr=NostrConfig(relays=(relay_url,)),
        solana=SolanaConfig(rpc_url=server.url, program="v2", namespace_id=namespace_id),
        pricing=PricingConfig(recharge_lamports=PRICE),
    )
    timings = Timings()
    ledger = TimedLedger.open(state_dir / LEDGER_FILE)
    assert isinstance(ledger, TimedLedger)
    ledger.timings = timings
    stack.callback(ledger.close)
    settlement = TimedSettlement.from_config(config.solana, keys.bot, rpc_url=server.url)
    assert isinstance(settlement, TimedSettlement)
    settlement.timings = timings
    stack.push_async_callback(settlement.close)
    links: list[RelayLink] = []  # the processor's outbox notification needs the link built after it

    def notify_outbox() -> None:
        for link in links:
            link.notify_outbox()

    processor = RechargeProcessor(
        ledger,
        settlement,
        EventSigner(keys.nostr, session=config.nostr.session, machine_pubkey=machine),
        config,
        StateHub(),
        notify_outbox=notify_outbox,
        background_settlement=True,
    )
    stack.push_async_callback(processor.aclose)
    await processor.resume_unfinished()
    link = RelayLink(
        (relay_url,),
        ledger=ledger,
        session=config.nostr.session,
        machine_pubkey=machine,
        on_event=processor.handle,
        screen=processor.screen,
        overlap_seconds=config.nostr.overlap_seconds,
    )
    links.append(link)
    await link.start()
    stack.push_async_callback(link.stop)
    await wait_until(lambda: link.state is LinkStatus.READY, 10.0, "the relay link")

    bare = SettlementClient.from_config(config.solana, keys.bot, rpc_url=server.url)
    stack.push_async_callback(bare.close)

    target = RechargeTarget((relay_url,), config.nostr.session, machine, machine)
    stranger = Keys.generate().public_key().to_hex()  # a machine nobody serves: the device never sees it
    other = RechargeTarget((relay_url,), DEFAULT_SESSION, stranger, stranger)
    user_of_request: dict[str, str] = {}
    watcher = Watcher(user_of_request)

    subscriber = Client()
    publisher = Client()
    stack.push_async_callback(release_client, subscriber)
    stack.push_async_callback(release_client, publisher)
    for client in (subscriber, publisher):
        await client.add_relay(RelayUrl.parse(relay_url))
        await client.connect(timedelta(seconds=5))
    since = Timestamp.from_secs(int(time.time()) - 5)
    device_filter = (
        Filter()
        .kind(Kind(KIND))
        .author(PublicKey.parse(machine))
        .custom_tag(S_TAG, config.nostr.session)
        .custom_tag(P_TAG, machine)
        .since(since)
    )
    baseline_filter = (
        Filter().kind(Kind(KIND)).custom_tag(S_TAG, DEFAULT_SESSION).custom_tag(P_TAG, stranger).since(since)
    )
    stream = subscriber.notifications()
    await subscriber.subscribe(ReqTarget.auto([device_filter, baseline_filter]))
    reader = asyncio.create_task(watcher.run(stream), name="subscriber")

    async def stop_reader() -> None:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    stack.push_async_callback(stop_reader)
    return Device(
        config,
        target,
        users,
        {str(u.pubkey()): 0 for u in users},
        publisher,
        watcher,
        bare,
        timings,
        other,
        user_of_request,
    )


def signed(device: Device, user: Keypair) -> str:
    """A Request payload for ``user`` at its current nonce, bound to this machine and the price."""
    return sign_payload(
        user,
        device.config,
        machine=bytes.fromhex(device.target.machine_pubkey),
        amount=PRICE,
        ttl=TTL_S,
        nonce=device.nonces[str(user.pubkey())],
        namespace_name=NAME,
    ).text


async def one_recharge(device: Device, user: Keypair) -> float:
    """Publish one Request for ``user``; return ms until its Transaction reached the subscriber."""
    who = str(user.pubkey())
    event = build_request_event(signed(device, user), device.target, Keys.generate())
    device.user_of_request[event.id().to_hex()] = who
    arrival = device.watcher.expect_grant(who)
    start = time.perf_counter_ns()
    sent = await device.publisher.send_event(event)
    if not sent.success:
        raise RuntimeError(f"the relay refused the request: {sent.failed}")
    arrived = await asyncio.wait_for(arrival, WAIT_S)
    device.nonces[who] += 1
    return (arrived - start) / 1e6


async def one_relay_trip(device: Device, payload: str) -> float:
    """Publish a Request-shaped event for another machine; return ms until the subscriber saw it."""
    event = build_request_event(payload, device.other_machine, Keys.generate())  # a throw-away key, too
    arrival = device.watcher.expect_event(event.id().to_hex())
    start = time.perf_counter_ns()
    sent = await device.publisher.send_event(event)
    if not sent.success:
        raise RuntimeError(f"the relay refused the baseline event: {sent.failed}")
    arrived = await asyncio.wait_for(arrival, WAIT_S)
    return (arrived - start) / 1e6


async def one_bare_pay(device: Device, user: Keypair) -> float:
    """``prepare_pay`` + ``submit`` straight to the stand-in at ``user``'s nonce; return ms."""
    who = str(user.pubkey())
    nonce = device.nonces[who]
    info = decode_recover_info(decode_payload(signed(device, user)).recover_info, path="payload.recover_info")
    start = time.perf_counter_ns()
    pay = await device.bare.prepare_pay(
        user.pubkey(), info, payload_nonce=nonce, amount=PRICE, now=int(time.time())
    )
    outcome = await device.bare.submit(pay)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if not outcome.ok:
        raise RuntimeError(f"bare pay failed: {outcome}")
    device.nonces[who] += 1
    return elapsed


async def concurrently(
    users: list[Keypair], per_user: list[int], step: Callable[[Keypair], Awaitable[float]]
) -> list[float]:
    """Each user runs ``per_user[i]`` steps one after another; all users at once.  Returns all samples."""

    async def lane(user: Keypair, count: int) -> list[float]:
        return [await step(user) for _ in range(count)]

    lanes = await asyncio.gather(*(lane(u, n) for u, n in zip(users, per_user, strict=True)))
    return [sample for samples in lanes for sample in samples]


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal counts."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def measure(requests: int, n_users: int, rounds: int) -> list[dict[str, Any]]:
    """Start everything, warm up, run the alternating rounds, stop everything; return the rows."""
    n_users = max(1, min(n_users, requests))
    per_user_total = -(-requests // n_users) + 2  # recharges + bare pays + warm-up, per user
    deposit = 2 * per_user_total * PRICE + 10_000_000
    recharge_ms: list[float] = []
    relay_ms: list[float] = []
    bare_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="recharge-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            device = await start_device(stack, Path(tmp) / ".xephy-device", n_users, deposit)
            users = device.users
            sample_payload = signed(device, users[0])

            def recharge(user: Keypair) -> Awaitable[float]:
                return one_recharge(device, user)

            def relay(_user: Keypair) -> Awaitable[float]:
                return one_relay_trip(device, sample_payload)

            def bare(user: Keypair) -> Awaitable[float]:
                return one_bare_pay(device, user)

            progress("warm-up: one recharge, one relay trip and one bare pay per user")
            for step in (recharge, relay, bare):
                await concurrently(users, [1] * len(users), step)

            started = time.perf_counter()
            for r, count in enumerate(split(requests, rounds), start=1):
                per_user = split(count, len(users))
                relay_ms += await concurrently(users, per_user, relay)
                device.timings.enabled = True
                recharge_ms += await concurrently(users, per_user, recharge)
                device.timings.enabled = False
                bare_ms += await concurrently(users, per_user, bare)
                progress(
                    f"round {r}/{rounds}: {len(recharge_ms)} recharges, {len(relay_ms)} relay trips, "
                    f"{len(bare_ms)} bare pays ({time.perf_counter() - started:.1f} s)"
                )
            granted = set(device.user_of_request)
            if not granted <= device.watcher.working:
                missing = len(granted - device.watcher.working)
                raise RuntimeError(f"{missing} requests got a Transaction without a Status{{Working}} seen")
            if device.watcher.refusals:
                raise RuntimeError(f"refusals: {device.watcher.refusals[:3]}")
            timings = device.timings
            progress("stopping")
        gc.collect()  # release the nostr-sdk objects before the loop closes
    return rows(recharge_ms, relay_ms, bare_ms, timings, n_users)


def rows(
    recharge_ms: list[float], relay_ms: list[float], bare_ms: list[float], timings: Timings, n_users: int
) -> list[dict[str, Any]]:
    """The table: latency percentiles, the device overhead, the in-path timings."""
    n = len(recharge_ms)
    rc50, rc99 = percentile(recharge_ms, 50), percentile(recharge_ms, 99)
    rl50, rl99 = percentile(relay_ms, 50), percentile(relay_ms, 99)
    bp50 = percentile(bare_ms, 50)
    overhead = rc50 - 2 * rl50 - bp50
    mean = statistics.fmean(recharge_ms)
    settle = timings.seconds["settlement"] * 1e3 / n
    ledger = timings.seconds["ledger"] * 1e3 / n
    writes = sum(
        timings.seconds[f"ledger.{k}"]
        for k in ("begin_recharge", "record_submission", "complete_recharge", "mark_acked", "advance_cursor")
    )
    where = f"{n} requests, {n_users} users in flight"
    return [
        _table.row(
            f"recharge p50, Request published → Transaction received ({where})",
            rc50,
            "ms",
            rl50,
            "relay publish → receive p50, same clients and concurrency (ms)",
            f"<= {P50_TARGET_MS:g} ms",
            rc50 <= P50_TARGET_MS,
        ),
        _table.row(
            f"recharge p99 ({where})",
            rc99,
            "ms",
            rl99,
            "relay publish → receive p99 (ms)",
            f"<= {P99_TARGET_MS:g} ms",
            rc99 <= P99_TARGET_MS,
        ),
        _table.row(
            "device overhead = recharge p50 − 2 × relay p50 − bare pay p50",
            overhead,
            "ms",
            rc50,
            f"recharge p50 (ms); bare pay p50 = {bp50:.1f} ms",
            "information",
            None,
        ),
        _table.row(
            "in path, mean per recharge: prepare_pay + submit",
            settle,
            "ms",
            mean,
            "recharge mean (ms)",
            "information",
            None,
        ),
        _table.row(
            f"in path, mean per recharge: ledger calls (of which writes {writes * 1e3 / n:.1f} ms)",
            ledger,
            "ms",
            mean,
            "recharge mean (ms)",
            "information",
            None,
        ),
    ]


def markdown(table: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    return "\n".join([_table.markdown(table, "recharge"), "", NOTE])


def main() -> None:
    """Parse the arguments, run the benchmark, print the table (and write the JSON)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--requests", type=int, default=200, help="recharges measured (and baseline samples)")
    parser.add_argument(
        "--users",
        type=int,
        default=1,
        help="users, each with one request in flight (1 = latency one at a time; 20 = latency under load)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per phase")
    args = parser.parse_args()
    if args.requests < 1 or args.users < 1 or args.rounds < 1:
        parser.error("--requests, --users and --rounds must be at least 1")
    table = asyncio.run(measure(args.requests, args.users, args.rounds))
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
