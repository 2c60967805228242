"""The loopback HTTP server in front of :mod:`device.localnet.rpc`, and the optional state file.

It binds ``127.0.0.1`` only (``localhost`` means the same); any other host is refused, so the stand-in can
never be mistaken for a node on a network.  ``POST /`` takes JSON-RPC (single or batch, 50 KiB max like a real
node); ``GET /health`` answers ``ok``.

With a ``state_file`` the chain is loaded from it on construction (a missing file starts a fresh chain) and
written back atomically (temporary file, fsync, rename) after every change -- before the HTTP answer to the
request that made it, so a client never holds a signature the file does not know.  Only the most recent
:data:`PERSISTED_TRANSACTIONS` transactions are written (older statuses are forgotten across a restart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Final, Self

from aiohttp import web
from solders.pubkey import Pubkey

from device.localnet.chain import Chain
from device.localnet.rpc import RpcHandler
from device.localnet.runtime import LocalnetError
from device.solana.program import ProgramVersion

log = logging.getLogger(__name__)

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost"})
MAX_REQUEST_BODY_SIZE: Final = 50 * 1024
PERSISTED_TRANSACTIONS: Final = 500
_NO_PROGRAMS: Final[Mapping[Pubkey, ProgramVersion]] = MappingProxyType({})


def load_chain(
    state_file: Path | None,
    *,
    programs: Mapping[Pubkey, ProgramVersion] = _NO_PROGRAMS,
    clock: Callable[[], float] = time.time,
) -> Chain:
    """A chain from ``state_file`` if it exists, else a fresh one."""
    if state_file is None or not state_file.exists():
        return Chain(programs=programs, clock=clock)
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LocalnetError(
            f"cannot read localnet state {state_file}: {exc}", code="localnet_state_invalid"
        ) from exc
    if not isinstance(data, dict):
        raise LocalnetError(f"{state_file} is not a localnet state", code="localnet_state_invalid")
    return Chain.from_snapshot(data, programs=programs, clock=clock)


def save_chain(chain: Chain, state_file: Path) -> None:
    """Write ``chain`` to ``state_file`` atomically (a crash leaves the old or the new file, never half)."""
    text = json.dumps(chain.snapshot(max_transactions=PERSISTED_TRANSACTIONS), separators=(",", ":"))
    tmp = state_file.with_name(f".{state_file.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(state_file)
    directory = os.open(state_file.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class LocalnetServer:
    """A loopback Solana JSON-RPC stand-in for tests and demos -- **not a validator**.

    Every accepted transaction is final immediately, there are no forks, slots advance on a simulated
    400 ms clock, and only the methods of :mod:`device.localnet.rpc` exist.  ``chain`` is the state model,
    for test setup and inspection; ``url`` is ``http://127.0.0.1:PORT`` once started (``port=0`` picks a
    free one).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: Path | None = None,
        extra_programs: Mapping[Pubkey, ProgramVersion] = _NO_PROGRAMS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise LocalnetError(
                f"localnet binds 127.0.0.1 only (a stand-in, not a node); refusing host {host!r}",
                code="localnet_host_refused",
            )
        if not 0 <= port <= 65535:
            raise LocalnetError(f"port {port} outside 0..65535", code="localnet_bind_failed")
        self._port = port
        self._state_file = state_file
        self.chain = load_chain(state_file, programs=extra_programs, clock=clock)
        self._rpc = RpcHandler(self.chain)
        self._runner: web.AppRunner | None = None
        self._bound: int | None = None
        self._in_request = 0
        self._dirty = False
        if state_file is not None:
            self.chain.add_listener(self._on_change)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (only once started)."""
        if self._bound is None:
            raise LocalnetError("localnet server is not started", code="localnet_not_started")
        return f"http://127.0.0.1:{self._bound}"

    @property
    def port(self) -> int:
        if self._bound is None:
            raise LocalnetError("localnet server is not started", code="localnet_not_started")
        return self._bound

    # -- persistence

    def _on_change(self) -> None:
        self._dirty = True
        if self._in_request == 0:
            self.save()

    def save(self) -> None:
        """Write the state file now (no-op without one)."""
        if self._state_file is None:
            return
        save_chain(self.chain, self._state_file)
        self._dirty = False

    # -- HTTP

    async def _handle_post(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._in_request += 1
        try:
            answer = self._rpc.handle_body(body)
        finally:
            self._in_request -= 1
        if self._dirty:
            self.save()
        if answer is None:
            return web.Response(status=200)
        return web.Response(body=answer, content_type="application/json")

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(self) -> None:
        """Bind 127.0.0.1 and serve."""
        if self._runner is not None:
            raise LocalnetError("localnet server already started", code="localnet_already_started")
        app = web.Application(client_max_size=MAX_REQUEST_BODY_SIZE)
        app.router.add_post("/", self._handle_post)
        app.router.add_get("/health", self._handle_health)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._port))
        except OSError as exc:
            sock.close()
            raise LocalnetError(
                f"cannot bind 127.0.0.1:{self._port}: {exc}", code="localnet_bind_failed"
            ) from exc
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        self._bound = sock.getsockname()[1]
        log.info("localnet listening on %s", self.url, extra={"code": "localnet_started"})

    async def stop(self) -> None:
        """Stop serving and write the state file one last time."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._bound = None
        if self._state_file is not None:
            self.save()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def serve_until_signalled(server: LocalnetServer, stop: asyncio.Event) -> None:
    """Run ``server`` until ``stop`` is set."""
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
