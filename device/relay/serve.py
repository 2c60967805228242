"""Run nostr-sdk's ``LocalRelay`` as its own process: ``python -m device.relay.serve PORT [--lmdb DIR]``.

For a developer's persistent local relay, and for tests that stop and restart a relay on the same port.
Binds 127.0.0.1 unless ``--host`` says otherwise, prints ``listening ws://HOST:PORT`` on stdout once it
accepts connections, and stops cleanly on SIGTERM or SIGINT.  ``--lmdb DIR`` keeps events across restarts.
``--nip42 write|read|both`` requires NIP-42 authentication.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys

import nostr_sdk
from nostr_sdk import (
    LocalRelayBuilder,
    LocalRelayBuilderNip42,
    LocalRelayBuilderNip42Mode,
    NostrLmdb,
    RateLimit,
)

from device.relay.embedded import DEFAULT_MAX_REQS, DEFAULT_NOTES_PER_MINUTE, RelayBindError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m device.relay.serve", description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int, help="TCP port (1-65535)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--lmdb", metavar="DIR", help="persist events in this LMDB directory")
    ap.add_argument("--nip42", choices=("write", "read", "both"))
    ap.add_argument("--max-reqs", type=int, default=DEFAULT_MAX_REQS)
    ap.add_argument("--notes-per-minute", type=int, default=DEFAULT_NOTES_PER_MINUTE)
    return ap


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    nostr_sdk.uniffi_set_event_loop(loop)  # NostrLmdb and NIP-42 call back into Python
    builder = (
        LocalRelayBuilder()
        .addr(args.host)
        .port(args.port)
        .rate_limit(RateLimit(max_reqs=args.max_reqs, notes_per_minute=args.notes_per_minute))
    )
    if args.lmdb:
        builder = builder.database(await NostrLmdb.open(args.lmdb))
    if args.nip42:
        mode = getattr(LocalRelayBuilderNip42Mode, args.nip42.upper())
        builder = builder.nip42(LocalRelayBuilderNip42(mode=mode))
    relay = builder.build()
    del builder
    try:
        try:
            await relay.run()
        except Exception as exc:  # nostr_sdk's error for a taken or forbidden address
            raise RelayBindError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
        print("listening", await relay.url(), flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        relay.shutdown()
        del relay
        gc.collect()
        await asyncio.sleep(0.2)  # LMDB flushes and the ctypes callbacks drain before exit


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(serve(args))
    except RelayBindError as exc:
        print(exc, file=sys.stderr)  # "relay_bind_failed: cannot listen on …"
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
