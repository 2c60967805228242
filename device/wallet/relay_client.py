"""Short-lived nostr-sdk clients for the user-side commands (recharge, balance, ledger rebuild).

The agent's long-lived link is :mod:`device.relay`; these helpers serve one-shot
reads and publishes: connect to every relay, insist that at least one answered,
and always release the SDK objects (shutdown → del → gc, so no exit segfault).

A relay that requires NIP-42 authentication is answered with ``auth_keys`` (``user recharge``
passes the throw-away key that signs its Request; readers get a fresh throw-away key): nostr-sdk
authenticates when the relay answers ``auth-required:`` and sends the event or REQ again.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from nostr_sdk import (
    Client,
    ClientBuilder,
    Filter,
    Keys,
    Kind,
    PublicKey,
    RelayStatus,
    RelayUrl,
    SignerAuthenticator,
    SingleLetterTag,
)

from device.errors import DeviceError
from device.nostr_loop import restore_loop, use_loop
from device.protocol import KIND

CONNECT_TIMEOUT = timedelta(seconds=5)


class RelayUnreachable(DeviceError):
    """None of the given relays could be connected."""

    code = "relay_unreachable"


@asynccontextmanager
async def connected_client(relays: Sequence[str], *, auth_keys: Keys | None = None) -> AsyncIterator[Client]:
    """A client connected to ``relays`` (at least one of them) that answers NIP-42 challenges with
    ``auth_keys`` (default: a fresh throw-away key), shut down on exit."""
    previous = use_loop(asyncio.get_running_loop())  # the authenticator calls back into Python
    builder = ClientBuilder().authenticator(SignerAuthenticator(auth_keys or Keys.generate()))
    client: Client = builder.build()
    del builder
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
        restore_loop(previous)


def machine_filter(session: str, machine: str, authors: Sequence[str]) -> Filter:
    """Kind-1573 events of ``session`` about ``machine`` signed by one of ``authors``."""
    return (
        Filter()
        .kind(Kind(KIND))
        .authors([PublicKey.parse(a) for a in authors])
        .custom_tag(SingleLetterTag.from_byte(ord("s")), session)
        .custom_tag(SingleLetterTag.from_byte(ord("p")), machine)
    )
