"""``xephy-device config check|show``: validate or print the configuration.

The root (:func:`device.cli.main`) parses the configuration before any handler runs, so a bad
file already exited 2 naming the key; these handlers only report.
"""

from __future__ import annotations

import argparse

import yaml

from device.config import Config, config_to_dict


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``config check`` and ``config show``."""
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    actions.add_parser(
        "check", parents=[common], help="validate the config file; exit 2 naming the bad key"
    ).set_defaults(handler=cmd_config_check)
    actions.add_parser(
        "show", parents=[common], help="print the effective configuration as YAML"
    ).set_defaults(handler=cmd_config_show)


def cmd_config_check(args: argparse.Namespace, config: Config) -> int:
    """The config was parsed before this runs; say which file was used."""
    print(f"ok: {args.config_source}")
    return 0


def cmd_config_show(args: argparse.Namespace, config: Config) -> int:
    """Print the effective configuration (defaults filled in) as YAML."""
    print(f"# effective configuration from {args.config_source}")
    print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
    return 0
