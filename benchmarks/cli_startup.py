"""How long ``xephy-device`` takes to answer, against ``python -c pass`` measured in the same run.

    python benchmarks/cli_startup.py [--json PATH] [--runs N]

Figures (median wall time over ``--runs`` fresh processes each, from spawn to exit):

* ``xephy-device --help``: the root parser alone (no command module is imported);
* ``xephy-device user balance``: one user command end to end -- keypair, the chain client, one RPC
  read (``getMultipleAccounts``) -- against the loopback chain stand-in (``xephy-device localnet
  --port 0``, started once before timing).  The device-side token balance is looked up too; with no
  running agent it is reported unknown without a network round trip (and without the Nostr library).

Each figure is reported twice: wall time (the target's measure) and CPU time (user + system of the
process), which a VM shared with other work inflates far less than wall time.

The baseline is the interpreter's own start-up (``python -c pass``): the ratio is what the command
costs on top of Python.  Target: a user command within 0.3 s on the development VM.  Each figure
is measured with bytecode caches written (one untimed warm-up run first; ``PYTHONDONTWRITEBYTECODE``
is dropped from the environment), as in an installed package.

Prints one markdown table; with --json PATH also writes its rows as JSON.  Writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _table

USER_COMMAND_TARGET_S = 0.3


def cli() -> list[str]:
    """The ``xephy-device`` console script beside this interpreter, else ``python -m device``."""
    script = Path(sys.executable).with_name("xephy-device")
    return [str(script)] if script.exists() else [sys.executable, "-m", "device"]


def median_seconds(argv: Sequence[str], runs: int, *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system of the child) of ``runs`` executions of
    ``argv``, after one untimed warm-up run (which writes the bytecode caches); any non-zero exit aborts
    the benchmark."""
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return statistics.median(walls[1:]), statistics.median(cpus[1:])


@contextmanager
def localnet(cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """``xephy-device localnet --port 0`` running; yields its URL."""
    proc = subprocess.Popen(
        [*cli(), "localnet", "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("localnet listening on "):
                yield line.split()[3]
                break
        else:
            raise SystemExit("localnet exited before listening")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure(runs: int) -> list[dict[str, Any]]:
    """The rows: baseline, ``--help``, ``user balance``."""
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as tmp:
        work = Path(tmp)
        # Built-in defaults; bytecode cached as in an installed package (pip compiles it on install), even
        # where the developer's shell sets PYTHONDONTWRITEBYTECODE (then every run would compile the
        # modules changed since the last cached import).
        env = {
            k: v for k, v in os.environ.items() if k not in ("XEPHY_DEVICE_CONFIG", "PYTHONDONTWRITEBYTECODE")
        }
        baseline, baseline_cpu = median_seconds([sys.executable, "-c", "pass"], runs, cwd=work, env=env)
        help_s, help_cpu = median_seconds([*cli(), "--help"], runs, cwd=work, env=env)
        keypair = work / "id.json"
        subprocess.run(
            [*cli(), "user", "keygen", "--keypair", str(keypair)],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
        with localnet(work, env) as url:
            balance_s, balance_cpu = median_seconds(
                [*cli(), "user", "balance", "--keypair", str(keypair), "--rpc-url", url],
                runs,
                cwd=work,
                env=env,
            )
    base = "python -c pass"
    target = f"≤ {USER_COMMAND_TARGET_S} s"
    return [
        _table.row(
            "xephy-device --help", help_s, "s", baseline, base, target, help_s <= USER_COMMAND_TARGET_S
        ),
        _table.row(
            "xephy-device user balance (localnet)",
            balance_s,
            "s",
            baseline,
            base,
            target,
            balance_s <= USER_COMMAND_TARGET_S,
        ),
        _table.row("xephy-device --help, CPU time", help_cpu, "s", baseline_cpu, base, "–", None),
        _table.row(
            "xephy-device user balance (localnet), CPU time", balance_cpu, "s", baseline_cpu, base, "–", None
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--runs", type=int, default=10, help="processes per figure (median is reported)")
    args = parser.parse_args()
    rows = measure(args.runs)
    print(_table.markdown(rows, "wall time", digits=3))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
