"""Every code block in README.md and docs/ is run by a test, or named here with the reason it cannot be.

The blocks that need a running agent (the README's second terminal, docs/chat.md) run in
``tests/system/test_doc_snippets.py``; the rest run here.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from device.cli import build_parser
from device.config import ConfigError, load_config, parse_config
from tests.fixtures.docs import Snippet, snippet, snippets

#: (file, language, first line) → the test that runs it.
RUN_BY: dict[tuple[str, str, str], str] = {
    ("README.md", "sh", "X=.venv/bin/xephy-device"): "tests/system/test_doc_snippets.py",
    ("docs/chat.md", "console", "$ xephy-device user token"): "tests/system/test_doc_snippets.py",
    ("docs/chat.md", "sh", "curl -sS --unix-socket"): "tests/system/test_doc_snippets.py",
    ("docs/chat.md", "python", "import subprocess"): "tests/system/test_doc_snippets.py",
    ("docs/hardware.md", "yaml", "indicators:"): "test_hardware_config_examples_are_valid_configs",
    ("docs/hardware.md", "yaml", "button:"): "test_hardware_config_examples_are_valid_configs",
    ("docs/localnet.md", "python", "import asyncio"): "test_the_localnet_script_runs",
    ("docs/config.md", "", "config_invalid:"): "test_the_config_error_examples_are_what_the_parser_says",
    ("docs/deploy.md", "", "xephy-device provision"): "test_command_examples_parse",
    (
        "docs/cli.md",
        "sh",
        "printf 'pricing:",
    ): "tests/system/test_agent_session.py (the same CLI steps, session mode)",
    ("docs/demo.md", "sh", "make demo"): "tests/system/test_demo.py (runs device.devtools.demo)",
    ("docs/demo.md", "text", "$ make demo"): "tests/system/test_demo.py (a recorded run of the same script)",
}
#: (file, language, first line) → why no test runs it.
NOT_RUN: dict[tuple[str, str, str], str] = {
    ("README.md", "sh", "make run"): "the two commands themselves: CI runs `make test`",
    ("README.md", "", "cli.py ──"): "a diagram",
    (
        "docs/benchmarks.md",
        "sh",
        "git clone",
    ): "on a Raspberry Pi; `make bench` is run by CI's benchmarks job",
    ("docs/chat.md", "", "xct1."): "a format description (tests/unit/test_chat_auth.py checks the format)",
    ("docs/cli.md", "", "xephy-device [--version]"): "a synopsis",
    ("docs/deploy.md", "", "apt-get install"): "host packages, installed by `make system-deps`",
    ("docs/deploy.md", "", "xephy-device doctor"): "a synopsis",
    ("docs/hardware.md", "ini", "enable_uart=1"): "the Pi's /boot/firmware/config.txt",
    (
        "docs/hardware.md",
        "ini",
        "[Service]",
    ): "a systemd drop-in on the Pi (units: tests/integration/test_systemd_units.py)",
    (
        "docs/localnet.md",
        "",
        "xephy-device localnet",
    ): "a synopsis (tests/integration/test_localnet_cli.py runs it)",
    ("docs/localnet.md", "", "Program 8Pna6"): "example log output",
}


def _named(s: Snippet, table: dict[tuple[str, str, str], str]) -> bool:
    return any(s.file == f and s.lang == lang and s.key[2].startswith(first) for f, lang, first in table)


def test_every_snippet_is_run_or_says_why_not() -> None:
    assert len(snippets()) >= 20  # the scanner finds the blocks
    unaccounted = [s.key for s in snippets() if not _named(s, RUN_BY) and not _named(s, NOT_RUN)]
    assert unaccounted == [], "new code blocks in the docs: run them in a test, or add them to NOT_RUN"


def test_hardware_config_examples_are_valid_configs() -> None:
    blocks = [s for s in snippets() if s.file == "docs/hardware.md" and s.lang == "yaml"]
    assert len(blocks) == 4
    for block in blocks:
        parse_config(yaml.safe_load(block.text), base_dir=Path("/"))


def test_the_localnet_script_runs(tmp_path: Path) -> None:
    script = tmp_path / "localnet_example.py"
    script.write_text(snippet("docs/localnet.md", "python", "import asyncio").text)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("namespace 0 on http://127.0.0.1:")


#: The YAML behind each example line of docs/config.md (written to /etc/xephy-device/config.yaml there).
CONFIG_EXAMPLES = [
    "pricing:\n  recharge_lamports: -5\n",
    "nostr:\n  relay: wss://relay.example\n",
    'pricing:\n  recharge_lamports: "5000000"\n',
    "indicators:\n  leds:\n    enabled: true\n    status_pin: 17\nbutton:\n  enabled: true\n  pin: 17\n",
    "nostr:\n  session: s\n  machine_pubkey: null\n  relays\n  overlap_seconds: 600\n",
    "device:\n  log_level: info\nnostr:\n  relays: [embedded]\n  overlap_seconds: 600\n  admin_pubkeys: []\n"
    "  trusted_authors: []\n  machine_pubkey: null\n  relays: [embedded]\n",
    None,  # no such file: confg.yaml
]


def test_the_config_error_examples_are_what_the_parser_says(tmp_path: Path) -> None:
    expected = snippet("docs/config.md", "", "config_invalid:").text.splitlines()
    assert len(expected) == len(CONFIG_EXAMPLES)
    said = []
    for text in CONFIG_EXAMPLES:
        path = tmp_path / ("config.yaml" if text is not None else "confg.yaml")
        if text is not None:
            path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        said.append(str(info.value).replace(str(tmp_path), "/etc/xephy-device"))
    assert said == expected


def test_command_examples_parse() -> None:
    lines = snippet("docs/deploy.md", "", "xephy-device provision").text.splitlines()
    commands = [shlex.split(line, comments=True)[1:] for line in lines if line.startswith("xephy-device ")]
    assert len(commands) == 3
    for argv in commands:
        args = build_parser(load={argv[0]}).parse_args(argv)
        assert args.handler.__module__ == "device.commands.provision"
