"""An embedded Nostr relay: nostr-sdk's ``LocalRelay`` running inside the agent's process.

It is the default relay when the config says ``nostr.relays: [embedded]`` (a laptop running ``make run``)
and the relay the integration tests talk to.  It is a real NIP-01 WebSocket relay (rust-nostr's
relay-builder on Rust threads), in memory only, bound to 127.0.0.1 on a random free port.

For a relay that keeps its events across restarts, run ``python -m device.relay.serve PORT --lmdb DIR``
in its own process (LMDB in-process risks a segfault at interpreter exit).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from nostr_sdk import LocalRelayBuilder, RateLimit

from device.errors import DeviceError

__all__ = ["DEFAULT_MAX_REQS", "DEFAULT_NOTES_PER_MINUTE", "EmbeddedRelay", "RelayBindError"]

DEFAULT_MAX_REQS = 256
"""Open subscriptions per connection.  The link needs 1 plus a catch-up page and a probe at a time."""
DEFAULT_NOTES_PER_MINUTE = 60_000
"""Events accepted per connection per minute.  The library default (~60) throttles even one busy device."""


class RelayBindError(DeviceError):
    """The relay could not listen on its address (port taken, or not allowed)."""

    code = "relay_bind_failed"


class EmbeddedRelay:
    """``LocalRelay`` in-process: ``url = await relay.start()`` … ``await relay.stop()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        max_reqs: int = DEFAULT_MAX_REQS,
        notes_per_minute: int = DEFAULT_NOTES_PER_MINUTE,
    ) -> None:
        self._host = host
        self._port = port  # None: a random free port (``.port(0)`` would report ws://…:0)
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
        relay = builder.build()
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

    async def stop(self) -> None:
        """Close every connection and free the relay (shutdown → del → gc)."""
        relay, self._relay = self._relay, None
        self._url = None
        if relay is None:
            return
        relay.shutdown()
        del relay
        gc.collect()
        await asyncio.sleep(0.05)  # let the Rust side finish closing sockets before the next bind

    async def __aenter__(self) -> EmbeddedRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
