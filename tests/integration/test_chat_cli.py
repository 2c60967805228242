"""``xephy-device chat`` and ``user token`` against a real chat server (own event loop in a thread)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from solders.keypair import Keypair

from device.chat.auth import TokenVerifier
from device.chat.client import ChatClient
from device.cli import main
from device.commands.chat import _Session, run_repl
from tests.fixtures.chat import Device, sock_dir, start_device, stop_device

__all__ = ["sock_dir"]


@pytest.fixture
def served(tiny_model: Path, sock_dir: Path, state_dir: Path) -> Iterator[Device]:
    """A device served from its own loop thread, so blocking CLI code can run in the test thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: list[Device] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        holder.append(loop.run_until_complete(start_device(tiny_model, sock_dir, state_dir)))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder[0]
    asyncio.run_coroutine_threadsafe(stop_device(holder[0]), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def keypair_file(tmp_path: Path) -> tuple[Keypair, Path]:
    kp = Keypair()
    path = tmp_path / "user.json"
    path.write_text(json.dumps(list(bytes(kp))))
    path.chmod(0o600)
    return kp, path


def test_one_shot_chat_prints_the_answer_and_the_charge(
    served: Device, keypair_file: tuple[Keypair, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    kp, path = keypair_file
    served.fund(kp, 1000)
    rc = main(
        [
            "chat",
            "-m",
            "hello there",
            "--socket",
            str(served.socket_path),
            "--keypair",
            str(path),
            "--max-tokens",
            "4",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith(" m m m m\n[")
    balance = served.ledger.balance(str(kp.pubkey())).total
    assert f"balance {balance}]" in out


def test_one_shot_chat_without_tokens_says_insufficient_balance(
    served: Device, keypair_file: tuple[Keypair, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = keypair_file
    rc = main(["chat", "-m", "hi", "--socket", str(served.socket_path), "--keypair", str(path)])
    assert rc == 1
    assert "insufficient_balance" in capsys.readouterr().err


def test_repl_keeps_history_and_handles_balance_and_reset(served: Device) -> None:
    kp = Keypair()
    served.fund(kp, 1000)
    session = _Session(ChatClient(served.socket_path), kp, served.machine, ttl=600)
    lines = iter(["hello", "/balance", "again", "/reset", "/quit"])
    out = io.StringIO()
    assert run_repl(session, out, read=lambda _: next(lines), max_tokens=2) == 0
    text = out.getvalue()
    prompts = [int(n) for n in re.findall(r"\[(\d+) prompt", text)]
    assert len(prompts) == 2 and prompts[1] > prompts[0]  # the second turn carries the first
    assert re.search(r"balance \d+ tokens \(\d+ available\)", text)
    assert "new conversation" in text
    assert session.messages == []


def test_user_token_prints_a_token_the_device_accepts(
    served: Device, keypair_file: tuple[Keypair, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    kp, path = keypair_file
    rc = main(["user", "token", "--socket", str(served.socket_path), "--keypair", str(path), "--ttl", "300"])
    token = capsys.readouterr().out.strip()
    assert rc == 0
    claims = TokenVerifier(served.machine, max_ttl_seconds=3600).verify(token)
    assert claims.user == str(kp.pubkey())


def test_repl_help_and_unknown_commands_never_reach_the_model_or_the_bill(served: Device) -> None:
    kp = Keypair()
    served.fund(kp, 1000)
    session = _Session(ChatClient(served.socket_path), kp, served.machine, ttl=600)
    lines = iter(["/help", "/hepl me", "/?", "/quit"])
    out = io.StringIO()
    assert run_repl(session, out, read=lambda _: next(lines), max_tokens=2) == 0
    text = out.getvalue()
    assert text.count("/balance") == 2 and "/reset" in text  # /help and /? list the commands
    assert "unknown command /hepl (nothing was sent to the model)" in text
    assert session.messages == []
    assert served.ledger.balance(str(kp.pubkey())).total == 1000


def test_repl_double_slash_sends_a_line_that_starts_with_a_slash(served: Device) -> None:
    kp = Keypair()
    served.fund(kp, 1000)
    session = _Session(ChatClient(served.socket_path), kp, served.machine, ttl=600)
    lines = iter(["//etc/hosts is what?", "/quit"])
    assert run_repl(session, io.StringIO(), read=lambda _: next(lines), max_tokens=2) == 0
    assert session.messages[0] == {"role": "user", "content": "/etc/hosts is what?"}


def test_chat_ttl_above_what_the_device_accepts_is_refused_before_asking(
    served: Device, keypair_file: tuple[Keypair, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kp, path = keypair_file
    served.fund(kp, 1000)
    config = tmp_path / "config.yaml"
    config.write_text("chat:\n  token_max_ttl_seconds: 600\n")
    argv = ["chat", "-m", "hi", "--socket", str(served.socket_path), "-k", str(path), "--config", str(config)]
    assert main([*argv, "--ttl", "999999"]) == 2
    assert "chat.token_max_ttl_seconds" in capsys.readouterr().err
    assert served.ledger.balance(str(kp.pubkey())).total == 1000
