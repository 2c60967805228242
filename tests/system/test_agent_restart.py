"""Issue 14's "done when": the agent as ``make run`` starts it (embedded relay and chain, here on ports this
test picks and keeps), stopped and started twice; after each restart the history is still there, and the
device's ledger, ``ledger rebuild`` (relay + chain) and ``user balance`` (relay) all give the same tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures.agent import RECHARGE, AgentProcess, funded_user, ledger_total, run_cli, user_pubkey
from tests.fixtures.relay import free_port


def fixed_ports_config(workdir: Path, model: Path) -> Path:
    """Embedded defaults on two fixed ports (make run's are 4869/8899; these are free ones), tiny model."""
    path = workdir / "config.yaml"
    path.write_text(
        f"nostr:\n  embedded_relay_port: {free_port()}\n"
        f"solana:\n  embedded_rpc_port: {free_port()}\n"
        f"llm:\n  model_path: {model}\n  n_ctx: 512\n  max_tokens: 16\n"
    )
    return path


def tokens_everywhere(
    workdir: Path, keypair: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, int]:
    """The user's tokens as the ledger file, ``ledger rebuild`` and ``user balance`` see them."""
    user = user_pubkey(keypair)
    capsys.readouterr()
    assert run_cli("ledger", "rebuild", "--config", str(config), "--json") == 0, capsys.readouterr()
    report = json.loads(capsys.readouterr().out)
    assert report["differences"] == [] and report["recovered_from_chain"] == []
    pays = report["pays"]
    assert run_cli("user", "balance", "--keypair", str(keypair), "--config", str(config), "--json") == 0
    balance = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return {"ledger": ledger_total(workdir, user), "user balance": balance["tokens"], "pays on chain": pays}


def chat_once(keypair: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    assert run_cli("chat", "--keypair", str(keypair), "--config", str(config), "-m", "hello") == 0
    return int(re.search(r"= (\d+) tokens", capsys.readouterr().out).group(1))  # type: ignore[union-attr]


def test_balances_survive_two_restarts_and_ledger_rebuild_and_user_balance_agree(
    workdir: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = fixed_ports_config(workdir, tiny_model)
    first = AgentProcess(workdir, args=("--config", str(config)))
    try:
        endpoints = first.wait_ready()
        keypair = funded_user(workdir)
        assert run_cli("user", "recharge", "--keypair", str(keypair), "--config", str(config)) == 0
        used = chat_once(keypair, config, capsys)
    finally:
        assert first.stop() == 0
    expected = RECHARGE - used

    second = AgentProcess(workdir, args=("--config", str(config)))
    try:
        again = second.wait_ready()
        assert (again.relays, again.rpc_url) == (endpoints.relays, endpoints.rpc_url)  # fixed endpoints
        seen = tokens_everywhere(workdir, keypair, config, capsys)
        assert seen == {"ledger": expected, "user balance": expected, "pays on chain": 1}
        assert run_cli("user", "recharge", "--keypair", str(keypair), "--config", str(config)) == 0
        used += chat_once(keypair, config, capsys)
    finally:
        assert second.stop() == 0
    expected = 2 * RECHARGE - used

    third = AgentProcess(workdir, args=("--config", str(config)))
    try:
        again = third.wait_ready()
        assert (again.relays, again.rpc_url) == (endpoints.relays, endpoints.rpc_url)
        seen = tokens_everywhere(workdir, keypair, config, capsys)
        assert seen == {"ledger": expected, "user balance": expected, "pays on chain": 2}
    finally:
        assert third.stop() == 0
