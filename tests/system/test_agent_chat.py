"""Recharge, then chat through the running agent: the debit equals the usage and reaches the relay."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.fixtures.agent import (
    RECHARGE,
    AgentProcess,
    funded_user,
    ledger_total,
    run_cli,
    user_pubkey,
    write_config,
)


def test_chat_after_recharge_debits_exactly_the_tokens_used(
    workdir: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(workdir, f"llm:\n  model_path: {tiny_model}\n  n_ctx: 512\n  max_tokens: 16\n")
    agent = AgentProcess(workdir, args=("--config", str(config)))
    try:
        agent.wait_ready()
        keypair = funded_user(workdir)
        assert run_cli("user", "recharge", "--keypair", str(keypair), "--config", str(config)) == 0
        capsys.readouterr()
        assert run_cli("chat", "--keypair", str(keypair), "--config", str(config), "-m", "hello there") == 0
        out = capsys.readouterr().out
        used = int(re.search(r"= (\d+) tokens", out).group(1))  # type: ignore[union-attr]
        user = user_pubkey(keypair)
        assert 0 < used <= 512
        assert ledger_total(workdir, user) == RECHARGE - used
        deadline = time.monotonic() + 15
        tokens = None
        while time.monotonic() < deadline:
            assert (
                run_cli("user", "balance", "--keypair", str(keypair), "--config", str(config), "--json") == 0
            )
            tokens = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tokens"]
            if tokens == RECHARGE - used:
                break
            time.sleep(0.2)
        assert tokens == RECHARGE - used  # the signed Transaction(-used) reached the relay
    finally:
        assert agent.stop() == 0
