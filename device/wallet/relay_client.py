"""Short-lived nostr-sdk clients for the user-side commands (recharge, balance, ledger rebuild).

The agent's long-lived link is :mod:`device.relay`; these helpers serve one-shot
reads and publishes: connect to every relay, insist that at least one answered,
and always release the SDK objects (shutdown → del → gc, so no exit segfault).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from nostr_sdk import Client, Filter, Kind, PublicKey, RelayStatus, RelayUrl, SingleLetterTag

from device.errors import DeviceError
from device.protocol import KIND

CONNECT_TIMEOUT = timedelta(seconds=5)


class RelayUnreachable(DeviceError):
    """None of the given relays could be connected."""

    code = "relay_unreachable"


@asynccontextmanager
async def connected_client(relays: Sequence[str]) -> AsyncIterator[Client]:
    """A client connected to ``relays`` (at least one of them), shut down on exit."""
    client = Client()
    try:
        for url in relays:
            await client.add_relay(RelayUrl.parse(url))
        await client.connect(CONNECT_TIMEOUT)
        if RelayStatus.CONNECTED not in [relay.status() for relay in (await client.relays()).values()]:
            raise RelayUnreachable(f"no relay reachable: {', '.join(relays)}")
        yield client
    finally:
        await client.shutdown()
        del client
        gc.collect()
        await asyncio.sleep(0)


def machine_filter(session: str, machine: str, authors: Sequence[str]) -> Filter:
    """Kind-1573 events of ``session`` about ``machine`` signed by one of ``authors``."""
    return (
        Filter()
        .kind(Kind(KIND))
        .authors([PublicKey.parse(a) for a in authors])
        .custom_tag(SingleLetterTag.from_byte(ord("s")), session)
        .custom_tag(SingleLetterTag.from_byte(ord("p")), machine)
    )
