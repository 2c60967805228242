"""The embedded relay with an LMDB store serves, after a restart, what it stored before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_step(directory: Path, action: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "tests.fixtures.lmdb_relay", str(directory), action],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr  # also: no crash at interpreter exit
    return out.stdout.strip()


def test_events_survive_a_restart_of_the_embedded_relay(tmp_path: Path) -> None:
    store = tmp_path / "relay-lmdb"
    assert run_step(store, "publish") == "1"  # one relay accepted it
    assert run_step(store, "publish") == "1"
    assert run_step(store, "count") == "2"
    assert run_step(tmp_path / "another-store", "count") == "0"
