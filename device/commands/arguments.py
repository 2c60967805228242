"""argparse types and options shared by the command modules.

Each type turns one argument into a checked value; a bad value becomes argparse's own
one-line usage error (exit 2), naming what was expected.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from device.config import Config, resolve_chat_socket
from device.keys import DEFAULT_KEYPAIR
from device.solana.program import U64_MAX


def add_keypair_argument(parser: argparse.ArgumentParser) -> None:
    """``--keypair PATH``: the user's Solana CLI keypair (``None`` when absent: the default file)."""
    parser.add_argument(
        "--keypair",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"user keypair, Solana CLI JSON format (default: {DEFAULT_KEYPAIR})",
    )


def keypair_option() -> argparse.ArgumentParser:
    """A parent parser carrying :func:`add_keypair_argument`'s ``--keypair``."""
    parent = argparse.ArgumentParser(add_help=False)
    add_keypair_argument(parent)
    return parent


def chat_socket(args: argparse.Namespace, config: Config) -> Path:
    """``--socket`` if given, else the chat socket the configuration names."""
    path: Path | None = getattr(args, "socket", None)
    return path if path is not None else resolve_chat_socket(config, os.environ)


def port(text: str) -> int:
    """A TCP port, 0 … 65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} outside 0..65535")
    return value


def lamports(text: str) -> int:
    """A whole number of lamports, 1 … u64 max."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of lamports, got {text!r}") from None
    if not 0 < value <= U64_MAX:
        raise argparse.ArgumentTypeError(f"expected lamports from 1 to {U64_MAX}, got {text}")
    return value


def machine_pubkey(text: str) -> bytes:
    """A machine's Nostr public key: 64 hex characters → 32 bytes."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise argparse.ArgumentTypeError(
            f"expected the machine's Nostr public key as 64 hex characters, got {text!r}"
        )
    return raw


def ttl_seconds(text: str) -> int:
    """A validity in seconds, 1 s … 1 year."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 1 <= value <= 365 * 86_400:
        raise argparse.ArgumentTypeError(f"expected 1 to {365 * 86_400} seconds, got {value}")
    return value


def nonce(text: str) -> int:
    """An on-chain nonce, 0 … u64 max."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a nonce (integer ≥ 0), got {text!r}") from None
    if not 0 <= value <= U64_MAX:
        raise argparse.ArgumentTypeError(f"expected a nonce from 0 to {U64_MAX}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
