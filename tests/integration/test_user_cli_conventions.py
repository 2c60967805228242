"""``xephy-device user …`` speaks the conventions users bring from the Solana CLI and from Nostr tools.

Amounts are SOL unless ``--lamports`` (``solana airdrop 2`` is 2 SOL); ``-u`` takes a URL or the Solana
CLI's monikers; ``~/.config/solana/cli/config.yml`` supplies the RPC URL and keypair when no flag does;
Nostr keys are hex or npub; a bare relay host means ``wss://``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from solders.keypair import Keypair

from device.cli import CONFIG_ENV, build_parser
from device.keys import load_keypair
from device.localnet import LocalnetServer
from device.protocol import decode_recover_info
from device.solana.authorization import decode_binding
from tests.fixtures.cli import exit_code

MACHINE_HEX = "d041ea9854f2117b82452457c4e6d6593a96524027cd4032d2f40046deb78d93"
MACHINE_NPUB = "npub16pq74xz57gghhqj9y3tufekktyafv5jqylx5qvkj7sqydh4h3kfs7trvcs"


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh home (no Solana CLI config) and a working directory with no running agent."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
async def server() -> AsyncIterator[LocalnetServer]:
    async with LocalnetServer() as running:
        yield running


def keypair_file(path: Path, seed: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Keypair.from_seed(bytes([seed] * 32)).to_json())
    path.chmod(0o600)
    return path


def write_solana_cli_config(home: Path, *, url: str, keypair: Path) -> None:
    config = home / ".config" / "solana" / "cli" / "config.yml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f"---\njson_rpc_url: \"{url}\"\nwebsocket_url: ''\nkeypair_path: {keypair}\n"
        'address_labels:\n  "11111111111111111111111111111111": System Program\ncommitment: confirmed\n'
    )


async def run(*argv: str) -> int:
    return await asyncio.to_thread(exit_code, list(argv))


async def test_amounts_are_sol_unless_lamports_is_given(server: LocalnetServer, tmp_path: Path) -> None:
    keys = keypair_file(tmp_path / "user.json")
    user = load_keypair(keys).pubkey()
    assert await run("user", "airdrop", "2", "-k", str(keys), "-u", server.url) == 0
    assert server.chain.balance(user) == 2_000_000_000
    assert await run("user", "airdrop", "0.5", "-k", str(keys), "-u", server.url) == 0
    assert await run("user", "airdrop", "7", "--lamports", "-k", str(keys), "-u", server.url) == 0
    assert server.chain.balance(user) == 2_500_000_007


async def test_a_tenth_decimal_of_sol_is_a_usage_error_and_nothing_is_sent(
    server: LocalnetServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keypair_file(tmp_path / "user.json")
    assert await run("user", "airdrop", "0.0000000001", "-k", str(keys), "-u", server.url) == 2
    assert "at most 9 decimals" in capsys.readouterr().err
    assert server.chain.balance(load_keypair(keys).pubkey()) == 0


async def test_the_solana_cli_config_gives_the_rpc_url_and_keypair(
    server: LocalnetServer, tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keypair_file(tmp_path / "wallets" / "cli.json")
    write_solana_cli_config(home, url=server.url, keypair=keys)
    assert await run("user", "airdrop", "1") == 0
    assert server.chain.balance(load_keypair(keys).pubkey()) == 1_000_000_000
    capsys.readouterr()
    assert await run("user", "balance", "--json") == 0
    assert json.loads(capsys.readouterr().out)["wallet_lamports"] == 1_000_000_000


async def test_flags_win_over_the_solana_cli_config(
    server: LocalnetServer, tmp_path: Path, home: Path
) -> None:
    configured = keypair_file(tmp_path / "cli.json", seed=4)
    given = keypair_file(tmp_path / "given.json", seed=5)
    write_solana_cli_config(home, url="http://127.0.0.1:9", keypair=configured)
    assert await run("user", "airdrop", "1", "-k", str(given), "--url", server.url) == 0
    assert server.chain.balance(load_keypair(given).pubkey()) == 1_000_000_000
    assert server.chain.balance(load_keypair(configured).pubkey()) == 0


@pytest.mark.parametrize(
    ("moniker", "url"),
    [
        ("localhost", "http://localhost:8899"),
        ("l", "http://localhost:8899"),
        ("devnet", "https://api.devnet.solana.com"),
        ("d", "https://api.devnet.solana.com"),
        ("testnet", "https://api.testnet.solana.com"),
        ("t", "https://api.testnet.solana.com"),
        ("mainnet-beta", "https://api.mainnet-beta.solana.com"),
        ("m", "https://api.mainnet-beta.solana.com"),
        ("http://10.0.0.5:8899", "http://10.0.0.5:8899"),
    ],
)
@pytest.mark.parametrize("flag", ["-u", "--url", "--rpc-url"])
def test_url_monikers_are_the_solana_cli_ones(flag: str, moniker: str, url: str) -> None:
    args = build_parser(load={"user"}).parse_args(["user", "balance", flag, moniker])
    assert args.rpc_url == url


def test_a_malformed_solana_cli_config_is_an_error_not_another_cluster(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = home / ".config" / "solana" / "cli" / "config.yml"
    config.parent.mkdir(parents=True)
    config.write_text("json_rpc_url: [unclosed\n")
    keys = keypair_file(tmp_path / "user.json")
    assert exit_code(["user", "balance", "-k", str(keys)]) == 1
    assert "solana_cli_config_invalid" in capsys.readouterr().err


def test_sign_takes_the_machine_as_npub_or_hex_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keypair_file(tmp_path / "user.json")
    printed = []
    for machine in (MACHINE_HEX, MACHINE_NPUB):
        argv = ["user", "sign", "-k", str(keys), "--machine", machine, "--amount", "0.001"]
        assert exit_code([*argv, "--nonce", "0", "--namespace-name", "Gacha", "--ttl", "600"]) == 0
        printed.append(capsys.readouterr().out.strip())
    bindings = [decode_binding(decode_recover_info(text).extra_data) for text in printed]
    assert {b.machine_pubkey.hex() for b in bindings if b is not None} == {MACHINE_HEX}
    assert all(b is not None and b.amount_lamports == 1_000_000 for b in bindings)


@pytest.mark.parametrize("flag", ["--machine", "--device-pubkey"])
def test_every_nostr_key_flag_takes_npub(flag: str) -> None:
    args = build_parser(load={"user"}).parse_args(["user", "balance", flag, MACHINE_NPUB])
    value = getattr(args, flag.removeprefix("--").replace("-", "_"))
    assert (value.hex() if isinstance(value, bytes) else value) == MACHINE_HEX


def test_token_machine_takes_npub(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = keypair_file(tmp_path / "user.json")
    assert exit_code(["user", "token", "-k", str(keys), "--machine", MACHINE_NPUB]) == 0
    assert f"at machine {MACHINE_HEX}" in capsys.readouterr().err


def test_a_bare_relay_host_means_wss() -> None:
    args = build_parser(load={"user"}).parse_args(
        ["user", "balance", "--relay", "relay.damus.io", "--relay", "ws://127.0.0.1:7777"]
    )
    assert args.relay == ["wss://relay.damus.io", "ws://127.0.0.1:7777"]


def test_token_ttl_above_what_the_device_accepts_is_refused_locally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keypair_file(tmp_path / "user.json")
    config = tmp_path / "config.yaml"
    config.write_text("chat:\n  token_max_ttl_seconds: 600\n")
    argv = ["user", "token", "-k", str(keys), "--machine", MACHINE_HEX, "--config", str(config)]
    assert exit_code([*argv, "--ttl", "999999"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "chat.token_max_ttl_seconds" in captured.err
    assert exit_code([*argv, "--ttl", "600"]) == 0


def test_ledger_rebuild_takes_bare_relay_hosts_too() -> None:
    args = build_parser(load={"ledger"}).parse_args(["ledger", "rebuild", "--relay", "nos.lol"])
    assert args.relay == ["wss://nos.lol"]
