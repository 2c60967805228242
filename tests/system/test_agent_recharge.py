"""The whole agent as a process: embedded relay + chain stand-in, a user recharging from a second terminal."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from device.ledger import LEDGER_FILE, Ledger
from tests.fixtures.agent import (
    RECHARGE,
    USER_DEPOSIT,
    AgentProcess,
    funded_user,
    ledger_total,
    run_cli,
    user_pubkey,
)


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
    code = run_cli(
        "user", "recharge", "--keypair", str(keypair), "--amount", too_much, "--lamports", "--timeout", "30"
    )
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
