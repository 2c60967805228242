"""``xephy-device user …`` end to end against the localnet stand-in, and the device settling what it signs.

The CLI runs in-process (``main([...])`` in a worker thread, because it calls ``asyncio.run`` itself while the
stand-in serves on the test's event loop) and once as a real subprocess.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from device.cli import CONFIG_ENV, main
from device.keys import load_keypair
from device.localnet import LocalnetServer, bootstrap_global_v1, bootstrap_namespace
from device.protocol import decode_payload, decode_recover_info
from device.solana import program as prog
from device.solana.authorization import charge_amount
from device.solana.program import ProgramRef, ProgramVersion
from tests.fixtures.settlement import settlement_client

MACHINE = "d041ea9854f2117b82452457c4e6d6593a96524027cd4032d2f40046deb78d93"
NAME = "Gacha"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
async def server() -> AsyncIterator[LocalnetServer]:
    async with LocalnetServer() as running:
        yield running


class Cli:
    def __init__(
        self, server: LocalnetServer, tmp_path: Path, version: ProgramVersion, namespace_id: int
    ) -> None:
        self.server = server
        self.keypair = tmp_path / f"user-{version}.json"
        self.config = tmp_path / f"config-{version}.yaml"
        self.config.write_text(
            f"solana:\n  program: {version}\n  namespace_id: {namespace_id}\n  confirm_timeout_seconds: 10\n"
        )

    async def __call__(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        argv = ["user", *args, "--config", str(self.config), "--keypair", str(self.keypair)]
        if args[0] != "keygen":
            argv += ["--rpc-url", self.server.url]
        capsys.readouterr()
        code = await asyncio.to_thread(main, argv)
        out, err = capsys.readouterr()
        return code, out, err


async def operator(server: LocalnetServer, version: ProgramVersion) -> tuple[Keypair, Any, int]:
    authority, bot = Keypair(), Keypair()
    treasury = Keypair().pubkey()
    server.chain.airdrop(bot.pubkey(), 1_000_000_000)
    if version is ProgramVersion.V2:
        namespace_id = await bootstrap_namespace(server.url, authority, bot.pubkey(), treasury, NAME)
    else:
        namespace_id = 0
        await bootstrap_global_v1(server.url, authority, bot.pubkey(), treasury)
    return bot, treasury, namespace_id


@pytest.mark.parametrize("version", [ProgramVersion.V2, ProgramVersion.V1], ids=["v2", "v1"])
async def test_a_user_without_the_dapp_pays_a_device(
    server: LocalnetServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], version: ProgramVersion
) -> None:
    bot, treasury, namespace_id = await operator(server, version)
    cli = Cli(server, tmp_path, version, namespace_id)
    program = ProgramRef.default(version)

    code, out, _ = await cli(capsys, "keygen")
    assert code == 0
    user = load_keypair(cli.keypair).pubkey()
    assert str(user) in out

    code, out, err = await cli(capsys, "airdrop", "2")
    assert code == 0, err
    assert server.chain.balance(user) == 2_000_000_000

    code, out, err = await cli(capsys, "balance", "--json")
    assert code == 0, err
    assert json.loads(out)["registered"] is False

    code, out, err = await cli(capsys, "register")
    assert code == 0, err
    assert f"registered {user}" in out
    code, out, err = await cli(capsys, "register")
    assert code == 0 and "already registered" in out

    code, out, err = await cli(capsys, "deposit", "0.05")
    assert code == 0, err
    code, out, err = await cli(capsys, "withdraw", "10000000", "--lamports")
    assert code == 0, err
    code, out, err = await cli(capsys, "balance", "--json")
    state = json.loads(out)
    assert (
        state["vault_lamports"],
        state["locked_lamports"],
        state["available_lamports"],
        state["nonce"],
    ) == (
        40_000_000,
        0,
        40_000_000,
        0,
    )
    assert server.chain.balance(prog.vault_pda(program.program_id, user)) == 40_000_000

    code, out, err = await cli(capsys, "sign", "--machine", MACHINE, "--amount", "0.007", "--ttl", "900")
    assert code == 0, err
    text = out.strip()
    field = "extra_data" if version is ProgramVersion.V2 else "payload"
    assert text.startswith('{"signature":[') and f'"{field}":[' in text and '"deadline":' in text

    # The device side: parse the wire form, take the bound amount, settle.
    info = decode_recover_info(text)
    amount = charge_amount(
        info.extra_data, machine_pubkey_hex=MACHINE, recharge_lamports=1, max_recharge_lamports=10**9
    )
    assert amount == 7_000_000
    async with settlement_client(server.url, program=program, namespace_id=namespace_id, bot=bot) as device:
        signed = await device.prepare_pay(
            user, info, payload_nonce=0, amount=amount, now=server.chain.unix_timestamp
        )
        assert (await device.submit(signed)).ok
    assert server.chain.balance(treasury) >= 7_000_000

    code, out, err = await cli(capsys, "balance")
    assert code == 0, err
    assert "vault      33000000 lamports" in out
    assert "nonce      1" in out

    code, out, err = await cli(
        capsys, "sign", "--machine", MACHINE, "--amount", "1000", "--lamports", "--payload"
    )
    assert code == 0, err
    payload = decode_payload(out.strip())
    assert payload.nonce == 1 and payload.user == str(user)
    assert payload.namespace_id == (namespace_id if version is ProgramVersion.V2 else None)


async def test_refusals_are_one_line_with_a_code(
    server: LocalnetServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, namespace_id = await operator(server, ProgramVersion.V2)
    cli = Cli(server, tmp_path, ProgramVersion.V2, namespace_id)
    assert (await cli(capsys, "keygen"))[0] == 0

    async def refused(code_name: str, *args: str) -> None:
        code, out, err = await cli(capsys, *args)
        assert code == 1, (out, err)
        assert err.startswith(f"xephy-device: {code_name}: "), err
        assert len(err.strip().splitlines()) == 1

    await refused("insufficient_funds_for_fee", "register")  # an empty wallet cannot pay the fee
    assert (await cli(capsys, "airdrop", "1"))[0] == 0
    await refused("account_not_initialized", "deposit", "0.005")
    await refused("account_not_initialized", "sign", "--machine", MACHINE, "--amount", "1", "--lamports")
    assert (await cli(capsys, "register"))[0] == 0
    await refused("insufficient_funds_for_rent", "deposit", "1000", "--lamports")
    await refused("insufficient_funds", "deposit", "5")
    assert (await cli(capsys, "deposit", "2000000", "--lamports"))[0] == 0
    await refused("insufficient_funds", "withdraw", "2000001", "--lamports")
    await refused("insufficient_funds_for_rent", "withdraw", "0.0015")
    code, _, err = await cli(capsys, "withdraw", "0.002")  # emptying the vault is fine
    assert code == 0, err
    code, _, err = await cli(capsys, "sign", "--machine", MACHINE, "--amount", "5", "--lamports")
    assert code == 0 and "warning: the vault has 0 lamports available" in err


async def test_console_script_in_a_subprocess(server: LocalnetServer, tmp_path: Path) -> None:
    keypair = tmp_path / "id.json"
    keypair.write_text(Keypair().to_json())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device",
        "user",
        "balance",
        "--json",
        "--keypair",
        str(keypair),
        "--rpc-url",
        server.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["registered"] is False
