"""``python -m device.devtools.demo`` end to end on the tiny GGUF: every step runs and is shown, exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_shows_grant_debit_and_button_status(tiny_model: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "device.devtools.demo", "--model", str(tiny_model), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"{out}\n{proc.stderr}"
    for number in range(1, 8):
        assert f"== step {number}:" in out
    assert "[relay] kind 1573 Request from user" in out
    assert "[relay] kind 1573 Transaction from device" in out
    assert '{"Transaction": {"user":' in out and '"tokens": 5000000}}' in out  # the grant, decoded
    assert "ok grant: +5,000,000 tokens" in out
    assert "ok debit: -" in out
    assert '"reason": "AdminRequest"' in out  # the button's Status as it crossed the relay
    assert "ok button Status: Available AdminRequest" in out
    assert "demo finished: every step succeeded" in out
    assert "[agent] stopped" in out
    assert not (workdir / ".xephy-device" / "endpoints.json").exists()  # the agent stopped cleanly
    assert "Traceback" not in proc.stderr


def test_demo_exits_non_zero_when_a_step_fails(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "device.devtools.demo",
            "--model",
            str(missing),
            "--workdir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "demo FAILED" in proc.stdout
