"""argparse types and options shared by the command modules.

Each type turns one argument into a checked value; a bad value becomes argparse's own
one-line usage error (exit 2), naming what was expected.
"""

from __future__ import annotations

import argparse
import os
from decimal import Decimal
from pathlib import Path

from device.config import Config, normalize_relay_url, resolve_chat_socket
from device.errors import UsageError
from device.keys import DEFAULT_KEYPAIR
from device.solana.program import U64_MAX
from device.wallet.solana_cli import AmountError, normalize_url, parse_amount, sol_to_lamports


def add_keypair_argument(parser: argparse.ArgumentParser) -> None:
    """``-k/--keypair PATH``: the user's Solana CLI keypair (``None`` when absent: the default file)."""
    parser.add_argument(
        "-k",
        "--keypair",
        type=Path,
        default=None,
        metavar="PATH",
        help="user keypair, Solana CLI JSON format (default: keypair_path of "
        f"~/.config/solana/cli/config.yml, else {DEFAULT_KEYPAIR})",
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


def sol_amount(text: str) -> Decimal:
    """An amount as typed (SOL, or lamports with ``--lamports``); see :func:`amount_lamports`."""
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_lamports_flag(parser: argparse.ArgumentParser) -> None:
    """``--lamports``: amounts are lamports and balances are shown in lamports (as ``solana balance``)."""
    parser.add_argument(
        "--lamports",
        action="store_true",
        help="amounts in lamports instead of SOL (and balances shown in lamports)",
    )


def add_amount_argument(parser: argparse.ArgumentParser) -> None:
    """The positional ``AMOUNT`` (SOL) and ``--lamports``, as ``solana airdrop``/``solana transfer``."""
    parser.add_argument("amount", type=sol_amount, metavar="AMOUNT", help="in SOL (lamports with --lamports)")
    add_lamports_flag(parser)


def amount_lamports(amount: Decimal, *, in_lamports: bool, name: str = "AMOUNT") -> int:
    """An amount from :func:`sol_amount` → lamports, 1 … u64 max (a :class:`UsageError` otherwise)."""
    if in_lamports:
        if amount != amount.to_integral_value():
            raise UsageError(
                f"{name}: expected a whole number of lamports, got {amount}", code="argument_invalid"
            )
        value = int(amount)
    else:
        try:
            value = sol_to_lamports(amount)
        except AmountError as exc:
            raise UsageError(f"{name}: {exc.message}", code="argument_invalid") from None
    if not 0 < value <= U64_MAX:
        raise UsageError(
            f"{name}: expected from 1 to {U64_MAX} lamports, got {value} lamports", code="argument_invalid"
        )
    return value


def rpc_url(text: str) -> str:
    """``-u/--url``: an http(s) JSON-RPC URL or a Solana CLI moniker (``devnet``, ``d``, ``localhost``…)."""
    url = normalize_url(text)
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"expected an http(s) URL or one of mainnet-beta, testnet, devnet, localhost (m, t, d, l), "
            f"got {text!r}"
        )
    return url


def relay_url(text: str) -> str:
    """A relay: ``wss://host``, ``ws://host:port``, or a bare host (``relay.damus.io`` → ``wss://``)."""
    try:
        return normalize_relay_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def nostr_pubkey(text: str) -> str:
    """A Nostr public key, 64 hex characters or ``npub1…`` → 64 lowercase hex characters."""
    from nostr_sdk import PublicKey  # imported here: only the commands that take a key pay for it

    try:
        return str(PublicKey.parse(text.strip().lower()).to_hex())
    except Exception:  # nostr_sdk raises its own NostrSdkError subclasses
        raise argparse.ArgumentTypeError(
            f"expected a Nostr public key (64 hex characters or npub1…), got {text!r}"
        ) from None


def machine_pubkey(text: str) -> bytes:
    """A machine's Nostr public key (64 hex characters or ``npub1…``) → 32 bytes."""
    return bytes.fromhex(nostr_pubkey(text))


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
