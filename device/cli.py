"""``xephy-device``: the command line of the agent.

Exit codes: 0 success, 1 a runtime failure (printed as ``code: message``),
2 a usage or configuration error (the message names the offending key path).
Commands are listed in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import yaml

from device import __version__
from device.agent import Agent, ServicePlan, run_until_signalled
from device.chat.cli import add_chat_command
from device.config import DEFAULT_CONFIG_PATH, Config, ConfigError, config_to_dict, load_config
from device.doctor import add_doctor_command
from device.errors import DeviceError
from device.keys import KeyStore
from device.ledger import Ledger
from device.ledger_commands import add_ledger_command
from device.localnet.cli import add_localnet_command
from device.logs import configure_logging
from device.provision.command import add_provision_command
from device.user_commands import add_user_commands

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
CONFIG_ENV = "XEPHY_DEVICE_CONFIG"

Handler = Callable[[argparse.Namespace, Config], int]


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


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """Start the agent and serve until SIGINT/SIGTERM."""
    configure_logging(config.device.log_level)
    store = KeyStore(config.device.state_dir)
    keys, created = store.init()
    for path in created:
        print(f"generated {path}", file=sys.stderr)
    plan = ServicePlan.build(config, keys, os.environ)
    with Ledger.open(plan.ledger_path) as ledger:
        agent = Agent(config, keys, ledger, plan)
        asyncio.run(run_until_signalled(agent, sys.stdout))
    print("stopped", file=sys.stdout)
    return EXIT_OK


def cmd_keys_init(args: argparse.Namespace, config: Config) -> int:
    """Create the device keys that are missing; never overwrite existing ones."""
    store = KeyStore(config.device.state_dir)
    keys, created = store.init()
    for path in (store.nostr_path, store.bot_path):
        state = "created" if path in created else "kept"
        print(f"{state:8}{path}")
    _print_keys(keys.nostr_pubkey_hex, keys.npub, str(keys.bot_pubkey), as_json=False)
    return EXIT_OK


def cmd_keys_show(args: argparse.Namespace, config: Config) -> int:
    """Print the device's public keys."""
    keys = KeyStore(config.device.state_dir).load()
    _print_keys(keys.nostr_pubkey_hex, keys.npub, str(keys.bot_pubkey), as_json=args.json)
    return EXIT_OK


def _print_keys(hex_pubkey: str, npub: str, bot: str, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"nostr_pubkey": hex_pubkey, "npub": npub, "bot_pubkey": bot}))
    else:
        print(f"nostr pubkey  {hex_pubkey}")
        print(f"npub          {npub}")
        print(f"bot pubkey    {bot}")


def cmd_config_check(args: argparse.Namespace, config: Config) -> int:
    """The config was parsed before this runs; say which file was used."""
    print(f"ok: {args.config_source}")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace, config: Config) -> int:
    """Print the effective configuration (defaults filled in) as YAML."""
    print(f"# effective configuration from {args.config_source}")
    print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command (``xephy-device --help``)."""
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

    run = commands.add_parser("run", parents=[common], help="start the agent (Ctrl-C to stop)")
    run.set_defaults(handler=cmd_run)

    keys = commands.add_parser("keys", help="create or show the device keys")
    keys_cmds = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    keys_cmds.add_parser(
        "init", parents=[common], help="create missing key files (mode 0600) under state_dir"
    ).set_defaults(handler=cmd_keys_init)
    show = keys_cmds.add_parser(
        "show", parents=[common], help="print the Nostr pubkey (hex, npub) and bot pubkey"
    )
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=cmd_keys_show)

    config = commands.add_parser("config", help="validate or print the configuration")
    config_cmds = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    config_cmds.add_parser(
        "check", parents=[common], help="validate the config file; exit 2 naming the bad key"
    ).set_defaults(handler=cmd_config_check)
    config_cmds.add_parser(
        "show", parents=[common], help="print the effective configuration as YAML"
    ).set_defaults(handler=cmd_config_show)
    add_user_commands(commands, common)
    add_localnet_command(commands, common)
    add_provision_command(commands, common)
    add_doctor_command(commands, common)
    add_ledger_command(commands, common)
    add_chat_command(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xephy-device`` console script."""
    args = build_parser().parse_args(argv)
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
    except ConfigError as exc:
        print(f"xephy-device: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeviceError as exc:
        print(f"xephy-device: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
