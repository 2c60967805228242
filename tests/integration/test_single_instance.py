"""One agent per state directory: the lock is taken before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from device.cli import main
from device.instance_lock import LOCK_FILE, AgentAlreadyRunning, InstanceLock
from device.ledger import LEDGER_FILE
from tests.fixtures.agent import write_config


def test_a_second_lock_on_the_same_directory_is_refused_with_the_owner_pid(tmp_path: Path) -> None:
    with InstanceLock.acquire(tmp_path):
        with pytest.raises(AgentAlreadyRunning, match=f"pid {os.getpid()}") as refused:
            InstanceLock.acquire(tmp_path)
        assert refused.value.code == "agent_already_running"
        assert InstanceLock.holder(tmp_path) == os.getpid()
    assert InstanceLock.holder(tmp_path) is None
    InstanceLock.acquire(tmp_path).release()  # free again once released


def test_a_lock_left_by_a_killed_process_does_not_block_a_restart(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from device.instance_lock import InstanceLock;"
            f"InstanceLock.acquire(Path({str(tmp_path)!r})); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert InstanceLock.holder(tmp_path) == holder.pid
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the file stays
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()
    InstanceLock.acquire(tmp_path).release()


def test_a_second_run_fails_at_once_and_touches_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / ".xephy-device"
    config = write_config(tmp_path)
    with InstanceLock.acquire(state_dir):
        before = sorted(p.name for p in state_dir.iterdir())
        out = subprocess.run(
            [sys.executable, "-m", "device", "run", "--config", str(config)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        after = sorted(p.name for p in state_dir.iterdir())
    assert out.returncode == 1
    assert out.stderr.strip().startswith("xephy-device: agent_already_running: ")
    assert "ready" not in out.stdout
    assert before == after == [LOCK_FILE]  # no keys, ledger, relay store, localnet.json or endpoints.json


def test_a_rebuild_onto_the_live_ledger_is_refused_while_an_agent_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    state_dir = tmp_path / ".xephy-device"
    assert main(["keys", "init"]) == 0
    live = state_dir / LEDGER_FILE
    with InstanceLock.acquire(state_dir):
        code = main(["ledger", "rebuild", "--relay", "ws://127.0.0.1:9", "--no-chain", "--output", str(live)])
    assert code == 1
    assert "agent_already_running" in capsys.readouterr().err
    assert not live.exists()  # nothing read, nothing written
