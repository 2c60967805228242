"""argparse types shared by the command modules: each turns one argument into a checked value.

A bad value becomes argparse's own one-line usage error (exit 2), naming what was expected.
"""

from __future__ import annotations

import argparse

from device.solana.program import U64_MAX


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
