"""The whole agent as a process: embedded relay + chain stand-in, a user recharging from a second terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from solders.keypair import Keypair

from device.cli import main
from device.endpoints import Endpoints
from device.ledger import LEDGER_FILE, Ledger

USER_DEPOSIT = 100_000_000
RECHARGE = 5_000_000


class AgentProcess:
    """``xephy-device run`` in a subprocess on ``workdir`` (state in ``workdir/.xephy-device``)."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "device", "run"],
            cwd=workdir,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output: list[str] = []

    def wait_ready(self, timeout: float = 60.0) -> Endpoints:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("ready"):
                return Endpoints.read(self.workdir / ".xephy-device")
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"agent not ready: {''.join(self.output)}\n{self.stderr()}")

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def wait_exit(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # in-process `main([...])` finds the same ./.xephy-device
    return tmp_path


@pytest.fixture
def agent(workdir: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(workdir)
    try:
        yield process
    finally:
        process.stop()


def run_cli(*args: str) -> int:
    return main(list(args))


def funded_user(workdir: Path) -> Path:
    keypair = workdir / "user.json"
    assert run_cli("user", "keygen", "--keypair", str(keypair)) == 0
    assert run_cli("user", "airdrop", "2000000000", "--keypair", str(keypair)) == 0
    assert run_cli("user", "register", "--keypair", str(keypair)) == 0
    assert run_cli("user", "deposit", str(USER_DEPOSIT), "--keypair", str(keypair)) == 0
    return keypair


def user_pubkey(keypair: Path) -> str:
    return str(Keypair.from_bytes(bytes(json.loads(keypair.read_text()))).pubkey())


def ledger_total(workdir: Path, user: str) -> int:
    with Ledger.open(workdir / ".xephy-device" / LEDGER_FILE) as ledger:
        return ledger.balance(user).total


def test_user_recharge_from_a_second_terminal_grants_tokens_once(
    agent: AgentProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent.wait_ready()
    keypair = funded_user(workdir)
    capsys.readouterr()
    assert run_cli("user", "recharge", "--keypair", str(keypair), "--json", "--timeout", "30") == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["tokens"] == RECHARGE
    assert ledger_total(workdir, user_pubkey(keypair)) == RECHARGE
    assert run_cli("user", "balance", "--keypair", str(keypair), "--json") == 0
    balance = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert balance["vault_lamports"] == USER_DEPOSIT - RECHARGE
    assert balance["nonce"] == 1
    assert balance["tokens"] == RECHARGE  # from the device's Transaction events on the relay


def test_ledger_rebuild_agrees_with_the_relay_and_reports_a_local_difference(
    agent: AgentProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent.wait_ready()
    keypair = funded_user(workdir)
    assert run_cli("user", "recharge", "--keypair", str(keypair), "--timeout", "30") == 0
    capsys.readouterr()
    assert run_cli("ledger", "rebuild", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["differences"] == []
    with Ledger.open(workdir / ".xephy-device" / LEDGER_FILE) as ledger:
        ledger.grant("unannounced-grant", user_pubkey(keypair), 7)  # no Transaction event published
    assert run_cli("ledger", "rebuild", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["differences"] == [
        {"user": user_pubkey(keypair), "local": RECHARGE + 7, "rebuilt": RECHARGE}
    ]


def test_refused_recharge_prints_the_device_error_code(
    agent: AgentProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent.wait_ready()
    keypair = funded_user(workdir)
    capsys.readouterr()
    too_much = str(USER_DEPOSIT * 10)
    code = run_cli("user", "recharge", "--keypair", str(keypair), "--amount", too_much, "--timeout", "30")
    assert code == 1
    assert "insufficient_funds" in capsys.readouterr().err
    assert ledger_total(workdir, user_pubkey(keypair)) == 0


def test_agent_killed_after_the_payment_landed_grants_once_after_restart(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crashing = AgentProcess(workdir, env={"XEPHY_DEVICE_FAULT": "after_landed"})
    try:
        crashing.wait_ready()
        keypair = funded_user(workdir)
        code = run_cli("user", "recharge", "--keypair", str(keypair), "--timeout", "10")
        assert code == 1  # the agent died before answering
        assert crashing.wait_exit() == -signal.SIGKILL
    finally:
        crashing.stop()
    user = user_pubkey(keypair)
    assert ledger_total(workdir, user) == 0
    restarted = AgentProcess(workdir)
    try:
        restarted.wait_ready()
        deadline = time.monotonic() + 30
        while ledger_total(workdir, user) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ledger_total(workdir, user) == RECHARGE
        with Ledger.open(workdir / ".xephy-device" / LEDGER_FILE) as ledger:
            assert ledger.unfinished_recharges() == []
        capsys.readouterr()
        assert run_cli("user", "balance", "--keypair", str(keypair), "--json") == 0
        balance = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert balance["vault_lamports"] == USER_DEPOSIT - RECHARGE  # charged exactly once
    finally:
        assert restarted.stop() == 0
