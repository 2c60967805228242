"""The command line: help, config check, keys, and a run that stops cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from device.cli import CONFIG_ENV, build_parser, find_config_path, main
from tests.fixtures.agent import write_config


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_command(tmp_path: Path) -> None:
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("run", "keys", "config"):
        assert command in out.stdout


def test_config_check_names_the_bad_key_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pricing:\n  recharge_lamports: -5\n")
    out = run_cli("config", "check", "--config", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert "pricing.recharge_lamports" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_config_check_accepts_a_valid_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("device:\n  state_dir: ./state\n")
    out = run_cli("config", "check", "--config", str(good), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(good) in out.stdout


def test_config_file_that_does_not_exist_exits_2(tmp_path: Path) -> None:
    out = run_cli("config", "check", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert out.returncode == 2
    assert "config_not_found" in out.stderr


def test_explicit_config_path_wins_over_environment(tmp_path: Path) -> None:
    explicit = tmp_path / "a.yaml"
    assert find_config_path(explicit, {CONFIG_ENV: "/other.yaml"}, tmp_path / "etc.yaml") == explicit


def test_environment_config_path_wins_over_the_system_file(tmp_path: Path) -> None:
    system = tmp_path / "etc.yaml"
    system.write_text("{}")
    assert find_config_path(None, {CONFIG_ENV: "/env.yaml"}, system) == Path("/env.yaml")


def test_no_config_anywhere_means_built_in_defaults(tmp_path: Path) -> None:
    assert find_config_path(None, {}, tmp_path / "absent.yaml") is None


def test_keys_show_prints_the_keys_keys_init_created(tmp_path: Path) -> None:
    init = run_cli("keys", "init", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    show = run_cli("keys", "show", "--json", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    shown = json.loads(show.stdout)
    assert shown["nostr_pubkey"] in init.stdout
    assert shown["bot_pubkey"] in init.stdout
    assert shown["npub"].startswith("npub1")


def test_keys_show_without_keys_exits_1_with_a_code(tmp_path: Path) -> None:
    out = run_cli("keys", "show", cwd=tmp_path)
    assert out.returncode == 1
    assert "key_missing" in out.stderr


def test_run_refuses_a_key_file_readable_by_others(tmp_path: Path) -> None:
    assert run_cli("keys", "init", cwd=tmp_path).returncode == 0
    (tmp_path / ".xephy-device" / "nostr.key").chmod(0o644)
    out = run_cli("run", cwd=tmp_path)
    assert out.returncode == 1
    assert "key_permissions" in out.stderr


def test_config_show_output_is_a_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--config", str(_write(tmp_path / "c.yaml", "{}"))]) == 0
    shown = tmp_path / "shown.yaml"
    shown.write_text(capsys.readouterr().out)
    assert main(["config", "check", "--config", str(shown)]) == 0


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_run_prints_what_it_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(write_config(tmp_path))],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("ready"):
                break
        text = "".join(seen)
        assert "machine pubkey" in text and "chat socket" in text and "ledger" in text
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in rest
    assert "Traceback" not in err
    assert (tmp_path / ".xephy-device" / "ledger.sqlite3").exists()


def leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every runnable command path, e.g. ``user recharge`` (argparse keeps subcommands in _actions)."""
    paths: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                paths += leaf_commands(sub, path) or [path]
    return paths


def test_every_command_is_documented_in_docs_cli() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    commands = leaf_commands(build_parser())
    assert {"run", "keys init", "user recharge", "ledger rebuild", "chat"} <= set(commands)
    assert [c for c in commands if f"`{c}" not in doc and f"`xephy-device {c}" not in doc] == []
