"""Run every benchmark script in this folder and collect their tables.

``make bench`` calls this.  Each ``benchmarks/<name>.py`` prints a markdown table
whose rows carry a figure, the baseline measured in the same run and their ratio,
and writes the same rows as JSON when given ``--json PATH``.  This runner states
the machine at the top and writes ``benchmarks/results.md`` and ``results.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


#: Scripts in the order they run and appear in results.md; any other ``benchmarks/*.py`` runs after them.
ORDER = ("ledger", "settlement", "recharge", "inference", "peer", "agent", "cli_startup")


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo, plus the board (e.g. Raspberry Pi 4) if the device tree names it."""
    cpu = ""
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip():
                fields.setdefault(key.strip().lower(), value.strip())
        cpu = fields.get("model name") or fields.get("hardware") or fields.get("model") or ""
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    try:
        board = Path("/proc/device-tree/model").read_text().strip("\0\n ")
    except OSError:
        board = ""
    return f"{cpu} ({board})" if board and board not in cpu else cpu


def scripts() -> list[Path]:
    """Every benchmark script: :data:`ORDER` first, then the rest alphabetically."""
    found = {
        p.stem: p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    }
    ordered = [found.pop(name) for name in ORDER if name in found]
    return ordered + sorted(found.values())


def main() -> int:
    """Run all benchmark scripts; exit non-zero if any failed."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    header = (
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, {platform.machine()}, "
        f"Python {platform.python_version()}; load average at start {load}"
    )
    sections = [f"# Benchmark results\n\n{header}\n"]
    rows: dict[str, object] = {"machine": header}
    failed = []
    for script in scripts():
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            print(f">> {script.name}", flush=True)
            proc = subprocess.run(
                [sys.executable, str(script), "--json", out.name], capture_output=True, text=True, check=False
            )
            print(proc.stdout, end="")
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                failed.append(script.name)
                continue
            rows[script.stem] = json.loads(Path(out.name).read_text() or "null")
            sections.append(f"## {script.stem}\n\n{proc.stdout.strip()}\n")
    (HERE / "results.md").write_text("\n".join(sections))
    (HERE / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nwrote {HERE / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
