"""``xephy-device localnet``: run the loopback Solana JSON-RPC stand-in until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from device.commands.arguments import port
from device.config import Config
from device.localnet.server import LocalnetServer
from device.logs import configure_logging


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``localnet --port 8899 [--state FILE]``."""
    parser.description = (
        "Serve a Solana JSON-RPC stand-in on 127.0.0.1 with the System program and both balance-payment "
        "versions at their default ids. Not a validator: every accepted transaction is final at once, "
        "slots advance on a simulated 400 ms clock, only a handful of methods exist (docs/localnet.md)."
    )
    parser.add_argument(
        "--port", type=port, default=8899, help="TCP port on 127.0.0.1 (default 8899, 0 = any)"
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="FILE",
        help="keep the chain in FILE (loaded at start, rewritten after every transaction)",
    )
    parser.set_defaults(handler=cmd_localnet)


def cmd_localnet(args: argparse.Namespace, config: Config) -> int:
    """Serve until SIGINT/SIGTERM, then exit 0."""
    configure_logging(config.device.log_level)
    server = LocalnetServer(port=args.port, state_file=args.state)
    asyncio.run(_serve(server))
    print("stopped", flush=True)
    return 0


async def _serve(server: LocalnetServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        try:
            print(
                f"localnet listening on {server.url} (a stand-in, not a validator); Ctrl-C to stop",
                flush=True,
            )
            await stop.wait()
        finally:
            await server.stop()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    sys.stdout.flush()
