"""Pay-as-you-go through the running agent on embedded defaults (only ``pricing.mode: session`` set):
lock → three chats → ``user stop`` → one settle of exactly the tokens used; the rest stays in the vault."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from solders.pubkey import Pubkey

from device.chat.auth import issue_token
from device.chat.client import ChatClient
from device.config import load_config
from device.endpoints import Endpoints
from device.keys import load_keypair
from device.ledger import LEDGER_FILE, Ledger, SessionState, session_price
from device.solana.client import ChainClient
from tests.fixtures.agent import RECHARGE, AgentProcess, funded_user, ledger_total, run_cli, user_pubkey


def session_config(workdir: Path, tiny_model: Path) -> Path:
    config = workdir / "config.yaml"
    config.write_text(
        f"pricing:\n  mode: session\nllm:\n  model_path: {tiny_model}\n  n_ctx: 512\n  max_tokens: 16\n"
    )
    return config


def chain_view(workdir: Path, config: Path, user: str) -> dict[str, int]:
    """Vault, locked, nonce and wallet of ``user`` and the operator's treasury, read from the chain."""

    async def read() -> dict[str, int]:
        solana = load_config(config).solana
        endpoints = Endpoints.read(workdir / ".xephy-device")
        async with ChainClient(
            endpoints.rpc_url, program=solana.program_ref, namespace_id=solana.namespace_id
        ) as client:
            balance = await client.balance(Pubkey.from_string(user))
            treasury = (await client.operator()).treasury
            return {
                "vault": balance.vault_lamports,
                "locked": balance.locked_lamports,
                "nonce": balance.nonce,
                "wallet": balance.wallet_lamports,
                "treasury": await client.wallet_balance(treasury),
            }

    return asyncio.run(read())


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    assert run_cli(*args) == 0
    parsed: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return parsed


def test_a_session_settles_exactly_the_tokens_of_three_chats_on_user_stop(
    workdir: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = session_config(workdir, tiny_model)
    agent = AgentProcess(workdir, args=("--config", str(config)))
    try:
        agent.wait_ready()
        keypair = funded_user(workdir)
        user = user_pubkey(keypair)
        common = ("--keypair", str(keypair), "--config", str(config))
        before = chain_view(workdir, config, user)

        capsys.readouterr()
        assert run_cli("user", "recharge", "--session", *common) == 0
        assert "session open" in capsys.readouterr().out
        locked = chain_view(workdir, config, user)
        assert (locked["vault"], locked["locked"], locked["nonce"]) == (before["vault"], RECHARGE, 1)
        shown = cli_json(capsys, "user", "balance", "--json", *common)
        assert shown["locked_lamports"] == RECHARGE
        assert [s["locked_lamports"] for s in shown["open_sessions"]] == [RECHARGE]  # type: ignore[attr-defined]

        used = 0
        for question in ("hello there", "what is two plus two?", "name a colour"):
            capsys.readouterr()
            assert run_cli("chat", *common, "-m", question) == 0
            used += int(re.search(r"= (\d+) tokens", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
        assert ledger_total(workdir, user) == RECHARGE - used  # tokens_per_lamport 1: budget = RECHARGE
        endpoints = Endpoints.read(workdir / ".xephy-device")
        token = issue_token(load_keypair(keypair), endpoints.machine_pubkey, ttl_seconds=60)
        balance = ChatClient(Path(endpoints.chat_socket), token).balance()  # what the REPL's /balance shows
        assert balance["pricing_mode"] == "session"
        assert {k: balance["session"][k] for k in ("locked_lamports", "used_tokens", "owed_lamports")} == {
            "locked_lamports": RECHARGE,
            "used_tokens": used,
            "owed_lamports": used,
        }

        summary = cli_json(capsys, "user", "stop", "--json", *common)

        settled = session_price(used, 1)
        assert settled == used  # ceil(used / rate), rate 1
        assert summary["settled_lamports"] == settled
        assert summary["returned_lamports"] == RECHARGE - settled
        assert summary["tokens_used"] == used and summary["reason"] == "user_stop"
        after = chain_view(workdir, config, user)
        fees = 0  # the device's bot pays every fee of lock and settle; the stop is a Nostr event
        assert after["vault"] == before["vault"] - settled - fees
        assert after["treasury"] == before["treasury"] + settled
        assert (after["locked"], after["wallet"]) == (0, before["wallet"])
        assert ledger_total(workdir, user) == 0
        assert cli_json(capsys, "user", "balance", "--json", *common)["open_sessions"] == []
    finally:
        assert agent.stop() == 0


def test_stopping_the_agent_settles_the_open_session(
    workdir: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = session_config(workdir, tiny_model)
    agent = AgentProcess(workdir, args=("--config", str(config)))
    try:
        agent.wait_ready()
        keypair = funded_user(workdir)
        common = ("--keypair", str(keypair), "--config", str(config))
        request = cli_json(capsys, "user", "recharge", "--json", *common)["request"]
        capsys.readouterr()
        assert run_cli("chat", *common, "-m", "hello") == 0
        used = int(re.search(r"= (\d+) tokens", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
    finally:
        assert agent.stop() == 0  # SIGINT, handled like systemd's SIGTERM

    with Ledger.open(workdir / ".xephy-device" / LEDGER_FILE) as ledger:
        session = ledger.session(str(request))
    assert session is not None
    assert (session.state, session.settle_lamports, session.stop_reason) == (
        SessionState.SETTLED,
        used,
        "agent_stop",
    )
