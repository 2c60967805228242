"""What users bring from the Solana CLI: SOL amounts, ``-u`` monikers and ``~/.config/solana/cli/config.yml``.

* Amounts are SOL (``user airdrop 2`` is 2 SOL, as ``solana airdrop 2``); ``--lamports`` makes them
  lamports, the flag the Solana CLI uses for lamports (``solana balance --lamports``).  SOL is parsed
  as a decimal, never a float: ``0.000000001`` is 1 lamport, a tenth decimal is refused.
* ``-u/--url`` takes a URL or a moniker (or its first letter), exactly as ``solana -u``.
* Without ``-u`` or ``--keypair``, the Solana CLI's own config file supplies ``json_rpc_url`` and
  ``keypair_path`` (see :func:`read_cli_config`).
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

import yaml

from device.errors import DeviceError

__all__ = [
    "CLI_CONFIG_FILE",
    "LAMPORTS_PER_SOL",
    "MONIKERS",
    "SolanaCliConfig",
    "format_sol",
    "normalize_url",
    "read_cli_config",
    "sol_to_lamports",
    "user_keypair_path",
]

LAMPORTS_PER_SOL: Final = 1_000_000_000
#: ``solana -u`` monikers and their first letters (solana-clap-utils ``normalize_to_url_if_moniker``).
MONIKERS: Final[Mapping[str, str]] = {
    "mainnet-beta": "https://api.mainnet-beta.solana.com",
    "m": "https://api.mainnet-beta.solana.com",
    "testnet": "https://api.testnet.solana.com",
    "t": "https://api.testnet.solana.com",
    "devnet": "https://api.devnet.solana.com",
    "d": "https://api.devnet.solana.com",
    "localhost": "http://localhost:8899",
    "l": "http://localhost:8899",
}
#: The Solana CLI's config file, relative to the home directory.
CLI_CONFIG_FILE: Final = Path(".config/solana/cli/config.yml")


class AmountError(DeviceError):
    """An amount that is not a whole number of lamports."""

    code = "argument_invalid"


def normalize_url(url_or_moniker: str) -> str:
    """A moniker (``devnet``, ``d``, …) → its URL; anything else unchanged."""
    return MONIKERS.get(url_or_moniker, url_or_moniker)


def sol_to_lamports(amount: Decimal) -> int:
    """SOL → lamports, exactly; more than 9 decimals is an :class:`AmountError`."""
    lamports = amount * LAMPORTS_PER_SOL
    if lamports != lamports.to_integral_value():
        raise AmountError(f"{amount} SOL is not a whole number of lamports (at most 9 decimals)")
    return int(lamports)


def parse_amount(text: str) -> Decimal:
    """A non-negative decimal number (``2``, ``0.5``, ``1e-3``); ValueError otherwise."""
    try:
        value = Decimal(text.strip())
    except decimal.InvalidOperation:
        raise ValueError(f"expected an amount, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"expected an amount ≥ 0, got {text!r}")
    return value


def format_sol(lamports: int) -> str:
    """``1500000000`` → ``1.5 SOL``."""
    return f"{Decimal(lamports) / LAMPORTS_PER_SOL:f}".rstrip("0").rstrip(".") + " SOL"


@dataclass(frozen=True, slots=True)
class SolanaCliConfig:
    """The two settings of the Solana CLI config that a user command uses (``None``: not set)."""

    json_rpc_url: str | None = None
    keypair_path: Path | None = None


def read_cli_config(home: Path) -> SolanaCliConfig:
    """``json_rpc_url`` and ``keypair_path`` from ``home/.config/solana/cli/config.yml``.

    A missing file gives an empty config; an unreadable or malformed one is an error
    (``solana_cli_config_invalid``) rather than a silent fall-back to another cluster.
    """
    path = home / CLI_CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return SolanaCliConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceError(f"{path}: cannot read: {exc}", code="solana_cli_config_invalid") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise DeviceError(f"{path}: not YAML: {problem}", code="solana_cli_config_invalid") from None
    if data is None:
        return SolanaCliConfig()
    if not isinstance(data, dict):
        raise DeviceError(f"{path}: expected a mapping", code="solana_cli_config_invalid")
    url = data.get("json_rpc_url")
    keypair = data.get("keypair_path")
    for name, value in (("json_rpc_url", url), ("keypair_path", keypair)):
        if value is not None and not isinstance(value, str):
            raise DeviceError(f"{path}: {name} must be a string", code="solana_cli_config_invalid")
    return SolanaCliConfig(
        json_rpc_url=normalize_url(url) if url else None,
        keypair_path=Path(keypair).expanduser() if keypair else None,
    )


def user_keypair_path(explicit: Path | None, home: Path) -> Path | None:
    """``-k PATH`` if given, else ``keypair_path`` of the Solana CLI config, else None (the default file)."""
    return explicit if explicit is not None else read_cli_config(home).keypair_path
