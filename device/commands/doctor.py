"""``xephy-device doctor``: run :class:`device.doctor.Doctor` and print its table (or JSON rows)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from typing import TextIO

from device.config import Config
from device.doctor import CheckResult, Doctor, Status, exit_status, render_table
from device.errors import DeviceError


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``doctor [--quick] [--timeout S] [--json]``."""
    parser.add_argument("--quick", action="store_true", help="do not load the model (only check the file)")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S", help="network timeout (default 5)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    """Handler of ``xephy-device doctor``."""
    stream = out or sys.stdout
    doctor = Doctor(
        config,
        config_source=getattr(args, "config_source", str(args.config or "built-in defaults")),
        environ=os.environ,
        quick=args.quick,
        timeout=args.timeout,
    )
    try:
        rows = asyncio.run(doctor.run())
    except DeviceError as exc:  # pragma: no cover - every check catches its own errors
        rows = [CheckResult("doctor", Status.FAIL, str(exc), "report this as a bug")]
    if args.json:
        print(json.dumps([{**asdict(r), "status": r.status.value} for r in rows]), file=stream)
    else:
        stream.write(render_table(rows))
    return exit_status(rows)
