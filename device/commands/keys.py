"""``xephy-device keys init|show``: the device's key files under ``device.state_dir``."""

from __future__ import annotations

import argparse
import json

from device.config import Config
from device.keys import DeviceKeys, KeyStore


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``keys init`` and ``keys show [--json]``."""
    actions = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    actions.add_parser(
        "init", parents=[common], help="create missing key files (mode 0600) under state_dir"
    ).set_defaults(handler=cmd_keys_init)
    show = actions.add_parser(
        "show", parents=[common], help="print the Nostr pubkey (hex, npub) and bot pubkey"
    )
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=cmd_keys_show)


def cmd_keys_init(args: argparse.Namespace, config: Config) -> int:
    """Create the device keys that are missing; never overwrite existing ones."""
    store = KeyStore(config.device.state_dir)
    keys, created = store.init()
    for path in (store.nostr_path, store.bot_path):
        state = "created" if path in created else "kept"
        print(f"{state:8}{path}")
    _print_keys(keys, as_json=False)
    return 0


def cmd_keys_show(args: argparse.Namespace, config: Config) -> int:
    """Print the device's public keys."""
    _print_keys(KeyStore(config.device.state_dir).load(), as_json=args.json)
    return 0


def _print_keys(keys: DeviceKeys, *, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {"nostr_pubkey": keys.nostr_pubkey_hex, "npub": keys.npub, "bot_pubkey": str(keys.bot_pubkey)}
            )
        )
    else:
        print(f"nostr pubkey  {keys.nostr_pubkey_hex}")
        print(f"npub          {keys.npub}")
        print(f"bot pubkey    {keys.bot_pubkey}")
