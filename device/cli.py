"""``xephy-device``: the command line of the agent -- a thin root over :mod:`device.commands`.

The root knows each command group's name, one-line help and module (:data:`COMMANDS`); it imports
a group's module only when that command runs (or its ``--help`` is asked for), so ``xephy-device
--help`` and a ``user`` command never load the agent, the model, aiohttp or the chain stand-in.

Exit codes: 0 success, 1 a runtime failure (printed as ``code: message``),
2 a usage or configuration error (argparse's, a :class:`~device.errors.UsageError`, or a config
error naming the offending key path).
Commands are listed in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from device import __version__
from device.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from device.errors import DeviceError, UsageError

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
CONFIG_ENV: Final = "XEPHY_DEVICE_CONFIG"

Handler = Callable[[argparse.Namespace, Config], int]


@dataclass(frozen=True, slots=True)
class CommandGroup:
    """One top-level command: the module that implements it and its line in ``--help``.

    ``module`` has ``configure(parser, common)``; ``takes_config`` says whether the command itself
    takes ``--config`` (a group of actions gives it to each action instead).
    """

    module: str
    help: str
    takes_config: bool


#: Every top-level command, in ``--help`` order.
COMMANDS: Final[Mapping[str, CommandGroup]] = {
    "run": CommandGroup("device.commands.run", "start the agent (Ctrl-C to stop)", True),
    "keys": CommandGroup("device.commands.keys", "create or show the device keys", False),
    "config": CommandGroup("device.commands.config", "validate or print the configuration", False),
    "user": CommandGroup(
        "device.commands.user",
        "user side: keypair, register, deposit/withdraw, balance, sign an authorization",
        False,
    ),
    "localnet": CommandGroup(
        "device.commands.localnet",
        "run the loopback Solana JSON-RPC stand-in for tests and demos (not a validator)",
        True,
    ),
    "provision": CommandGroup(
        "device.commands.provision",
        "write config, keys and first-boot setup onto a Raspberry Pi OS image or SD card",
        True,
    ),
    "doctor": CommandGroup(
        "device.commands.doctor", "check config, keys, model, hardware, relay, RPC, socket and clock", True
    ),
    "ledger": CommandGroup("device.commands.ledger", "rebuild balances from the relays and compare", False),
    "chat": CommandGroup(
        "device.commands.chat", "chat with the local model (REPL, or -m for one question)", True
    ),
}


def find_config_path(explicit: Path | None, environ: Mapping[str, str], default: Path) -> Path | None:
    """Which config file to read: ``--config``, then ``$XEPHY_DEVICE_CONFIG``, then ``default`` if present.

    ``None`` means no file: every setting takes its embedded default.
    """
    if explicit is not None:
        return explicit
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    if default.exists():
        return default
    return None


def build_parser(load: Collection[str] = COMMANDS.keys()) -> argparse.ArgumentParser:
    """The argument parser (``xephy-device --help``).

    Commands named in ``load`` get their full sub-parser (their module is imported); the others
    only their name and help line, which is all the root's ``--help`` shows.
    """
    parser = argparse.ArgumentParser(
        prog="xephy-device",
        description="Pay-per-token LLM appliance on the XePHY network (Nostr + Solana).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH} if present, else built-in)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, group in COMMANDS.items():
        sub = commands.add_parser(name, parents=[common] if group.takes_config else [], help=group.help)
        if name in load:
            importlib.import_module(group.module).configure(sub, common)
    return parser


def chosen_command(argv: Sequence[str]) -> set[str]:
    """The command ``argv`` runs (its first word, if that names one): the only module to import."""
    return {argv[0]} & COMMANDS.keys() if argv else set()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xephy-device`` console script."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(load=chosen_command(words)).parse_args(words)
    path = find_config_path(args.config, os.environ, DEFAULT_CONFIG_PATH)
    args.config_source = str(path) if path is not None else "built-in defaults"
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"xephy-device: {exc}", file=sys.stderr)
        return EXIT_USAGE
    handler: Handler = args.handler
    try:
        return handler(args, config)
    except (ConfigError, UsageError) as exc:
        print(f"xephy-device: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeviceError as exc:
        print(f"xephy-device: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
