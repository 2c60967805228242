"""``xephy-device run`` ends every failure in one line with a code."""

from __future__ import annotations

from pathlib import Path

import pytest

import device.agent
from device.agent import Agent
from tests.fixtures.cli import exit_code


def test_a_failure_without_a_code_of_its_own_is_one_line_agent_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XEPHY_DEVICE_CONFIG", raising=False)

    async def broken(agent: Agent, out: object) -> None:
        raise RuntimeError("the relay library crashed")

    monkeypatch.setattr(device.agent, "run_until_signalled", broken)  # `run` imports it once locked
    assert exit_code(["run"]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip().splitlines()[-1] == "xephy-device: agent_failed: RuntimeError: the relay library crashed"
    )
    assert "Traceback" not in err
