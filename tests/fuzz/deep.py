"""``make fuzz-deep``: the fuzz suite at ``--factor`` times its default depth, in parallel shards.

Each shard is a pytest session over some of the fuzz modules, writing its counters to a JSON file
(``XEPHY_FUZZ_TALLY``); this adds them up, prints one table, and exits non-zero when a shard failed
(a crash or an undocumented code: its log is printed with the falsifying example) or when the shards
together tried fewer than ``--min-inputs`` inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz import Tally
from tests.fuzz.summary import table_lines

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: Modules per shard, balanced by their cost at the same factor: the scripted JSON-RPC node mostly
#: waits on sockets and timers, so it shares a core with CPU-bound targets.
SHARDS = (
    ("test_solana_fuzz.py", "test_display_fuzz.py", "test_config_fuzz.py"),
    ("test_chat_fuzz.py", "test_recharge_fuzz.py", "test_protocol_fuzz.py"),
)


def run_shards(factor: float, out: Path, seed: int | None = None) -> tuple[list[int], Tally]:
    """Run every shard at ``factor`` at once (with Hypothesis seed ``seed``, else a random one); their exit
    codes and summed counters."""
    procs = []
    for i, modules in enumerate(SHARDS):
        log = (out / f"shard-{i}.log").open("wb")
        env = {
            **os.environ,
            "XEPHY_FUZZ_FACTOR": f"{factor:g}",
            "XEPHY_FUZZ_TALLY": str(out / f"tally-{i}.json"),
        }
        env.pop("XEPHY_FUZZ_LONG", None)
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *(str(HERE / m) for m in modules),
            *(() if seed is None else (f"--hypothesis-seed={seed}",)),
        ]
        procs.append((subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for proc, log in procs:
        codes.append(proc.wait())
        log.close()
    tally = Tally()
    for i in range(len(SHARDS)):
        path = out / f"tally-{i}.json"
        if path.exists():
            tally.add_json(json.loads(path.read_text()))
    return codes, tally


def main(argv: list[str] | None = None) -> int:
    """Run the shards, print failing shards' logs and the combined table; 0 only if all is well."""
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.deep", description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=float, default=20.0, help="times each target's default examples")
    ap.add_argument("--min-inputs", type=int, default=100_000, help="fail below this many inputs in total")
    ap.add_argument(
        "--seed",
        type=int,
        default=None,
        help="Hypothesis seed: the same inputs on every run of the same code (default: random)",
    )
    args = ap.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xephy-fuzz-deep-") as tmp:
        out = Path(tmp)
        codes, tally = run_shards(args.factor, out, args.seed)
        for i, code in enumerate(codes):
            if code != 0:
                print(f"======== shard {i} ({', '.join(SHARDS[i])}) failed, exit {code} ========")
                print((out / f"shard-{i}.log").read_text(errors="replace")[-30_000:])
    seconds = time.monotonic() - started
    print(f"======== fuzz summary (x{args.factor:g}, {len(SHARDS)} shards in parallel) ========")
    for line in table_lines(tally):
        print(line)
    tried = sum(t.tried for t in tally.targets.values())
    bad = sum(t.crashes + t.unexpected for t in tally.targets.values())
    print(
        f"{tried} inputs over {len(tally.targets)} targets in {seconds:.0f} s; "
        f"{bad} crashes or undocumented codes"
    )
    if tried < args.min_inputs:
        print(f"FAILED: {tried} inputs, fewer than the {args.min_inputs} required")
        return 1
    return 1 if bad or any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
