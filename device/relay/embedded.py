"""An embedded Nostr relay: nostr-sdk's ``LocalRelay`` running inside the agent's process.

It is the default relay when the config says ``nostr.relays: [embedded]`` (a laptop running ``make run``)
and the relay the integration tests talk to.  It is a real NIP-01 WebSocket relay (rust-nostr's
relay-builder on Rust threads) bound to 127.0.0.1.

With ``lmdb=DIR`` it keeps its events in nostr-sdk's LMDB store (``NostrLmdb``) in that directory, so a
restart serves the same history (the agent uses ``state_dir/relay-lmdb``); without it, in memory only.
LMDB calls back into Python through the running event loop (``uniffi_set_event_loop``), and
:meth:`EmbeddedRelay.stop` frees the relay before the interpreter exits (shutdown → del → gc → a short
sleep), which is what keeps the exit clean (reference: nostr-solana-stack.md, "uniffi pitfalls").
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import nostr_sdk
from nostr_sdk import LocalRelayBuilder, NostrLmdb, RateLimit

from device.errors import DeviceError

__all__ = [
    "DEFAULT_MAX_REQS",
    "DEFAULT_NOTES_PER_MINUTE",
    "RELAY_LMDB_DIR",
    "EmbeddedRelay",
    "RelayBindError",
    "RelayStoreError",
]

RELAY_LMDB_DIR = "relay-lmdb"
"""The embedded relay's LMDB directory inside ``device.state_dir``."""

DEFAULT_MAX_REQS = 256
"""Open subscriptions per connection.  The link needs 1 plus a catch-up page and a probe at a time."""
DEFAULT_NOTES_PER_MINUTE = 60_000
"""Events accepted per connection per minute.  The library default (~60) throttles even one busy device."""


class RelayBindError(DeviceError):
    """The relay could not listen on its address (port taken, or not allowed)."""

    code = "relay_bind_failed"


class RelayStoreError(DeviceError):
    """The relay's LMDB directory cannot be opened (permissions, another process, damaged)."""

    code = "relay_store_failed"


class EmbeddedRelay:
    """``LocalRelay`` in-process: ``url = await relay.start()`` … ``await relay.stop()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        lmdb: Path | None = None,
        max_reqs: int = DEFAULT_MAX_REQS,
        notes_per_minute: int = DEFAULT_NOTES_PER_MINUTE,
    ) -> None:
        self._host = host
        # None or 0: a random free port (``.port(0)`` would report ws://…:0, so it is never passed on)
        self._port = port or None
        self._lmdb = lmdb
        self._max_reqs = max_reqs
        self._notes_per_minute = notes_per_minute
        self._relay: Any = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT`` of the running relay."""
        if self._url is None:
            raise RuntimeError("the embedded relay is not running; call start() first")
        return self._url

    @property
    def running(self) -> bool:
        return self._relay is not None

    async def start(self) -> str:
        """Start listening; returns the URL clients connect to."""
        if self._relay is not None:
            return self.url
        builder = (
            LocalRelayBuilder()
            .addr(self._host)
            .rate_limit(RateLimit(max_reqs=self._max_reqs, notes_per_minute=self._notes_per_minute))
        )
        if self._port is not None:
            builder = builder.port(self._port)
        if self._lmdb is not None:
            builder = builder.database(await self._open_store(self._lmdb))
        relay = builder.build()
        del builder
        try:
            await relay.run()
        except Exception as exc:  # nostr_sdk's error for a taken or forbidden address
            relay.shutdown()
            del relay
            gc.collect()
            where = f"{self._host}:{self._port if self._port is not None else 'random port'}"
            raise RelayBindError(f"the embedded relay cannot listen on {where}: {exc}") from exc
        self._relay = relay
        self._url = str(await relay.url())
        return self._url

    @staticmethod
    async def _open_store(directory: Path) -> Any:
        nostr_sdk.uniffi_set_event_loop(asyncio.get_running_loop())  # LMDB saves call back into Python
        try:
            await asyncio.to_thread(directory.mkdir, mode=0o700, parents=True, exist_ok=True)
            return await NostrLmdb.open(str(directory))
        except Exception as exc:  # OSError, or nostr_sdk's own error classes
            raise RelayStoreError(f"the embedded relay cannot open its store {directory}: {exc}") from exc

    async def stop(self) -> None:
        """Close every connection and free the relay (shutdown → del → gc)."""
        relay, self._relay = self._relay, None
        self._url = None
        if relay is None:
            return
        relay.shutdown()
        del relay
        gc.collect()
        # let the Rust side close sockets (and LMDB flush) before the next bind or interpreter exit
        await asyncio.sleep(0.2 if self._lmdb is not None else 0.05)

    async def __aenter__(self) -> EmbeddedRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
