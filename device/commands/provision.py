"""``xephy-device provision``: the command line of :func:`device.provision.command.provision`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from device.config import Config
from device.provision import ProvisionUsageError
from device.provision.command import ProvisionOptions, print_report, provision


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``provision --config FILE (--image FILE | --device DEV) [--write-image] [--keys-from DIR] …``."""
    parser.description = (
        "Prepare a Raspberry Pi OS image file or SD card: the agent config (--config), device keys, "
        "units and a first-boot installer go onto the FAT boot partition (edited without mounting). "
        "Running it twice changes nothing."
    )
    parser.add_argument("--image", type=Path, metavar="FILE", help="Raspberry Pi OS image (.img or .img.xz)")
    parser.add_argument("--device", type=Path, metavar="DEV", help="the SD card's block device (/dev/sdX)")
    parser.add_argument("--write-image", action="store_true", help="write --image to --device, then verify")
    parser.add_argument(
        "--keys-from", type=Path, metavar="DIR", help="use DIR/nostr.key and DIR/solana-bot.json"
    )
    parser.add_argument(
        "--wheelhouse", type=Path, metavar="DIR", help="wheels for an offline install on the Pi"
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="FILE",
        help="a .gguf model copied onto the card; the config points at it",
    )
    parser.add_argument(
        "--new-identity", action="store_true", help="give the device new keys even if it already has some"
    )
    parser.add_argument("--yes", action="store_true", help="do not ask before erasing --device")
    parser.set_defaults(handler=cmd_provision)


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} type yes: ").strip() == "yes"


def cmd_provision(args: argparse.Namespace, config: Config) -> int:
    """Handler of ``xephy-device provision``."""
    if args.config is None:
        raise ProvisionUsageError("provision needs --config FILE (the agent config for the card)")
    options = ProvisionOptions(
        config_file=args.config,
        image=args.image,
        device=args.device,
        write_image=args.write_image,
        keys_from=args.keys_from,
        wheelhouse=args.wheelhouse,
        model=args.model,
        new_identity=args.new_identity,
        yes=args.yes,
    )
    print_report(provision(options, config, sys.stdout, confirm=_ask), sys.stdout)
    return 0
