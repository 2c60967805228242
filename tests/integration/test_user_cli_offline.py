"""``xephy-device user …`` without a chain: keygen, offline signing, argument and configuration errors,
and the airdrop guard (against a scripted RPC that is not a localnet)."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import pytest
from solders.keypair import Keypair

from device.cli import CONFIG_ENV, main
from device.keys import load_keypair
from device.protocol import decode_payload, decode_recover_info
from device.solana.authorization import decode_binding, verify_authorization
from device.solana.program import ED25519RecoverInfo, ProgramVersion
from tests.fixtures.cli import exit_code
from tests.fixtures.rpc import FakeRpc

MACHINE = "d041ea9854f2117b82452457c4e6d6593a96524027cd4032d2f40046deb78d93"


@pytest.fixture(autouse=True)
def no_config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def write_config(tmp_path: Path, program: str = "v2", rpc_url: str = "embedded") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"solana:\n  program: {program}\n  rpc_url: {rpc_url}\n  namespace_id: 0\n")
    return path


def keypair_file(tmp_path: Path, seed: int = 1) -> Path:
    path = tmp_path / f"user{seed}.json"
    path.write_text(Keypair.from_seed(bytes([seed] * 32)).to_json())
    path.chmod(0o600)
    return path


def test_keygen_writes_a_private_solana_cli_keypair_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wallet" / "id.json"
    assert main(["user", "keygen", "--keypair", str(path)]) == 0
    out = capsys.readouterr().out
    keypair = load_keypair(path)
    assert f"pubkey  {keypair.pubkey()}" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_text())
    assert isinstance(raw, list) and len(raw) == 64
    before = path.read_bytes()
    assert main(["user", "keygen", "--keypair", str(path)]) == 1
    err = capsys.readouterr().err
    assert "keypair_exists" in err and len(err.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_keygen_default_path_is_the_solana_cli_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["user", "keygen"]) == 0
    assert (tmp_path / "home" / ".config" / "solana" / "id.json").is_file()


@pytest.mark.parametrize("version", [ProgramVersion.V2, ProgramVersion.V1])
def test_sign_offline_prints_a_verifiable_bound_recover_info(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: ProgramVersion
) -> None:
    config = write_config(tmp_path, program=str(version))
    keys = keypair_file(tmp_path)
    args = ["user", "sign", "--config", str(config), "--keypair", str(keys), "--machine", MACHINE]
    args += ["--amount", "0.007", "--ttl", "600", "--nonce", "5"]
    if version is ProgramVersion.V2:
        args += ["--namespace-name", "Gacha"]
    before = int(time.time())
    assert main(args) == 0
    captured = capsys.readouterr()
    text = captured.out.strip()
    assert len(captured.out.splitlines()) == 1
    field = "extra_data" if version is ProgramVersion.V2 else "payload"
    assert text.startswith('{"signature":[') and f'"{field}":[' in text
    info = decode_recover_info(text)
    assert info.field_name == field
    assert before + 600 <= info.deadline <= int(time.time()) + 600
    binding = decode_binding(info.extra_data)
    assert binding is not None
    assert (binding.machine_pubkey.hex(), binding.amount_lamports) == (MACHINE, 7_000_000)
    verify_authorization(
        version,
        user=load_keypair(keys).pubkey(),
        auth=ED25519RecoverInfo(info.signature, info.extra_data, info.deadline),
        onchain_nonce=5,
        payload_nonce=5,
        now=before,
        namespace_id=0,
        namespace_name="Gacha" if version is ProgramVersion.V2 else None,
        available_lamports=7_000_000,
        amount=7_000_000,
    )
    assert "nonce 5" in captured.err


def test_sign_payload_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    keys = keypair_file(tmp_path)
    args = ["user", "sign", "--config", str(config), "--keypair", str(keys), "--machine", MACHINE]
    assert main([*args, "--amount", "1000", "--nonce", "0", "--namespace-name", "Gacha", "--payload"]) == 0
    payload = decode_payload(capsys.readouterr().out.strip())
    assert payload.user == str(load_keypair(keys).pubkey())
    assert (payload.nonce, payload.namespace_id) == (0, 0)
    assert decode_recover_info(payload.recover_info).field_name == "extra_data"


def test_sign_v2_without_a_name_needs_the_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)  # rpc_url: embedded
    keys = keypair_file(tmp_path)
    args = ["user", "sign", "--config", str(config), "--keypair", str(keys), "--machine", MACHINE]
    assert main([*args, "--amount", "1000", "--nonce", "0"]) == 1
    err = capsys.readouterr().err
    assert "rpc_url_required" in err
    assert len(err.strip().splitlines()) == 1


def test_namespace_name_is_refused_for_v1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, program="v1")
    keys = keypair_file(tmp_path)
    args = ["user", "sign", "--config", str(config), "--keypair", str(keys), "--machine", MACHINE]
    assert main([*args, "--amount", "1000", "--nonce", "0", "--namespace-name", "X"]) == 1
    assert "argument_invalid" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [
        ["--machine", "abcd", "--amount", "1"],
        ["--machine", MACHINE, "--amount", "0"],
        ["--machine", MACHINE, "--amount", "1.5", "--lamports"],
        ["--machine", MACHINE, "--amount", "0.0000000001"],
        ["--machine", MACHINE, "--amount", "-1"],
        ["--machine", MACHINE, "--amount", "1", "--ttl", "0"],
        ["--machine", MACHINE, "--amount", "1", "--nonce", "-1"],
        ["--amount", "1"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, bad: list[str]) -> None:
    assert exit_code(["user", "sign", "--keypair", str(keypair_file(tmp_path)), *bad]) == 2


def test_missing_and_malformed_keypairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, rpc_url="http://127.0.0.1:9")
    assert main(["user", "balance", "--config", str(config), "--keypair", str(tmp_path / "nope.json")]) == 1
    assert "keypair_missing" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2, 3]")
    assert main(["user", "balance", "--config", str(config), "--keypair", str(bad)]) == 1
    assert "keypair_invalid" in capsys.readouterr().err


def test_embedded_rpc_url_without_a_running_agent_is_refused_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # state_dir ./.xephy-device has no endpoints.json
    keys = keypair_file(tmp_path)
    assert main(["user", "balance", "--keypair", str(keys)]) == 1
    err = capsys.readouterr().err
    assert "rpc_url_required" in err and "-u URL_OR_MONIKER" in err


def test_rpc_url_must_be_http_or_a_moniker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = keypair_file(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["user", "balance", "--keypair", str(keys), "--rpc-url", "127.0.0.1:8899"])
    assert info.value.code == 2
    assert "devnet" in capsys.readouterr().err


def test_unreachable_rpc_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = keypair_file(tmp_path)
    assert main(["user", "balance", "--keypair", str(keys), "--rpc-url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xephy-device: rpc_unreachable: ")
    assert len(err.strip().splitlines()) == 1


async def test_airdrop_is_refused_unless_the_rpc_is_a_localnet(
    fake_rpc: FakeRpc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keypair_file(tmp_path)
    fake_rpc.solana_core = "2.2.16"  # what a devnet/mainnet node answers
    code = await asyncio.to_thread(
        main, ["user", "airdrop", "1000", "--keypair", str(keys), "--rpc-url", fake_rpc.url]
    )
    assert code == 1
    assert "airdrop_refused" in capsys.readouterr().err
    assert fake_rpc.methods() == ["getVersion"]


def test_recharge_session_is_refused_before_signing_when_the_device_is_prepaid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no running agent: this config's pricing.mode (prepaid) decides
    config = write_config(tmp_path, rpc_url="http://127.0.0.1:9")
    device = ["--relay", "ws://127.0.0.1:9", "--machine", MACHINE, "--device-pubkey", MACHINE]
    args = [
        "user",
        "recharge",
        "--session",
        "--config",
        str(config),
        "--keypair",
        str(keypair_file(tmp_path)),
    ]

    assert main([*args, *device]) == 1

    err = capsys.readouterr().err
    assert err.startswith("xephy-device: session_unsupported: ") and "prepaid" in err
