"""``xephy-device localnet``: registration, and a real process that serves, keeps its state and stops on
a signal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from device.cli import build_parser, main
from device.commands.localnet import cmd_localnet

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"http://127\.0\.0\.1:(\d+)")


def test_the_command_is_registered() -> None:
    args = build_parser().parse_args(["localnet", "--port", "0", "--state", "chain.json"])
    assert args.handler is cmd_localnet
    assert (args.port, args.state) == (0, Path("chain.json"))
    assert build_parser().parse_args(["localnet"]).port == 8899


def test_a_bad_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["localnet", "--port", "70000"])
    assert caught.value.code == 2
    assert "outside 0..65535" in capsys.readouterr().err


def _start(state: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    """Start the command; return the process, its URL and its first line (printed once it listens)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "device", "localnet", "--port", "0", "--state", str(state)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = URL.search(line)
    if found is None:
        process.kill()
        raise AssertionError(f"no URL in {line!r}; stderr: {process.communicate()[1]}")
    return process, found.group(0), line


def _stop(process: subprocess.Popen[str], signum: int) -> str:
    process.send_signal(signum)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    return out


@pytest.mark.slow
async def test_serves_until_signalled_and_keeps_its_state(tmp_path: Path) -> None:
    env = {**os.environ, "XEPHY_DEVICE_CONFIG": "", "HOME": str(tmp_path)}
    state = tmp_path / "chain.json"
    key = Keypair().pubkey()

    process, url, first_line = _start(state, env)
    assert "not a validator" in first_line
    try:
        async with AsyncClient(url) as client:
            assert await client.is_connected()
            signature = (await client.request_airdrop(key, 1_000_000_000)).value
            await client.confirm_transaction(signature, sleep_seconds=0.01)
    finally:
        out = _stop(process, signal.SIGTERM)
    assert out.rstrip().endswith("stopped")
    assert state.exists()

    process, url, _ = _start(state, env)
    try:
        async with AsyncClient(url) as client:
            assert (await client.get_balance(key)).value == 1_000_000_000
            assert (await client.get_signature_statuses([signature])).value[0] is not None
    finally:
        _stop(process, signal.SIGINT)


def test_a_port_in_use_fails_cleanly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "XEPHY_DEVICE_CONFIG": "", "HOME": str(tmp_path)}
        result = subprocess.run(
            [sys.executable, "-m", "device", "localnet", "--port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "localnet_bind_failed" in result.stderr
