"""The documentation's commands, pasted as written, against a running agent.

The README's second terminal runs verbatim next to ``xephy-device run`` (as ``make run`` starts it);
then docs/chat.md's console lines, its ``curl`` for ``/metrics`` and its OpenAI script.  The agent
runs with ``chat.metrics: true`` and the tiny test model (``$XEPHY_DEVICE_CONFIG``, which the pasted
commands read too; the model only changes the answers' text and speed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.agent import AgentProcess, write_config
from tests.fixtures.docs import ROOT, snippet

parser = pytest.importorskip(
    "prometheus_client.parser", reason="prometheus_client is not installed (test extra)"
)


@pytest.fixture
def second_terminal(workdir: Path, tiny_model: Path) -> Iterator[dict[str, str]]:
    """A working directory laid out like the repository (``.venv``), an agent in it, and the environment
    of a user's shell there (PATH with ``xephy-device``, a home of its own)."""
    (workdir / ".venv").symlink_to(ROOT / ".venv")
    config = write_config(
        workdir,
        f"chat:\n  metrics: true\nllm:\n  model_path: {tiny_model}\n  max_tokens: 16\n",
        "metrics.yaml",
    )
    env = {
        **os.environ,
        "XEPHY_DEVICE_CONFIG": str(config),
        "HOME": str(workdir / "home"),
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    agent = AgentProcess(workdir, env={"XEPHY_DEVICE_CONFIG": str(config)}, args=("--config", str(config)))
    try:
        agent.wait_ready(timeout=120)
        yield env
    finally:
        assert agent.stop() == 0


def shell(script: str, cwd: Path, env: dict[str, str], stdin: str = "") -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


def test_the_readme_and_chat_docs_work_when_pasted(second_terminal: dict[str, str], workdir: Path) -> None:
    env = second_terminal
    out = shell(snippet("README.md", "sh", "X=.venv/bin/xephy-device").text, workdir, env)
    assert "airdropped 2 SOL" in out and "deposited 0.1 SOL" in out
    assert "granted 5,000,000 tokens" in out
    assert "tokens     " in out  # user balance: the device-side token balance

    # docs/chat.md's console lines use the default keypair, ~/.config/solana/id.json
    default_keypair = Path(env["HOME"]) / ".config" / "solana" / "id.json"
    default_keypair.parent.mkdir(parents=True)
    shutil.copy(workdir / "user.json", default_keypair)
    for command in snippet("docs/chat.md", "console", "$ xephy-device user token").commands():
        printed = shell(command, workdir, env, stdin="/help\n/quit\n")
        assert printed.strip(), command

    metrics = shell(snippet("docs/chat.md", "sh", "curl -sS --unix-socket").text, workdir, env)
    families = {f.name for f in parser.text_string_to_metric_families(metrics)}
    assert {"llamacpp:tokens_predicted", "xephy_tokens_debited", "xephy_recharges"} <= families

    script = workdir / "openai_example.py"
    script.write_text(snippet("docs/chat.md", "python", "import subprocess").text)
    printed = shell(f"{sys.executable} {script}", workdir, env)
    assert printed.splitlines()[-1].endswith(" tokens charged")
