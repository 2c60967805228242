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


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's best guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    """Run all benchmark scripts; exit non-zero if any failed."""
    header = (
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, {platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    sections = [f"# Benchmark results\n\n{header}\n"]
    rows: dict[str, object] = {"machine": header}
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name:
            continue
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
