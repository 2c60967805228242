"""The host-side pieces of ``make pi-check`` that need no root: reading the installed units, the
outputs of systemd-analyze and of the in-root session, and the step table it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.provision.bundle import PROJECT_ROOT
from device.provision.pi_check import (
    StepTable,
    overcommit_always,
    security_score,
    session_steps,
    unit_setting,
)


def test_exec_start_and_environment_are_read_from_the_shipped_units() -> None:
    service = (PROJECT_ROOT / "systemd/xephy-device.service").read_text()
    assert unit_setting(service, "ExecStart") == [
        "/opt/xephy-device/venv/bin/xephy-device run --config /etc/xephy-device/config.yaml"
    ]
    assert "LG_WD=%t/xephy-device" in unit_setting(service, "Environment")
    firstboot = (PROJECT_ROOT / "systemd/xephy-firstboot.service").read_text()
    assert unit_setting(firstboot, "ExecStart")[0].split()[1] == "/boot/firmware/xephy/firstboot.sh"


def test_commented_settings_do_not_count() -> None:
    assert unit_setting("[Service]\n# ExecStart=/bin/false\nExecStart=/bin/true\n", "ExecStart") == [
        "/bin/true"
    ]


def test_security_score_is_read_from_systemd_analyze_output() -> None:
    output = (
        "  NAME  DESCRIPTION  EXPOSURE\n…\n→ Overall exposure level for xephy-device.service: 1.5 OK :-)\n"
    )
    assert security_score(output) == 1.5


def test_session_steps_are_parsed_in_order() -> None:
    output = "noise\nSTEP agent-ready 11.2 ok\n  detail\nSTEP healthz 0.4 ok\nSTEP doctor 20.0 FAIL\n"
    assert session_steps(output) == [
        ("agent-ready", 11.2, "ok"),
        ("healthz", 0.4, "ok"),
        ("doctor", 20.0, "FAIL"),
    ]


def test_step_table_lists_every_step_with_a_total() -> None:
    table = StepTable()
    table.add("bookworm", "first boot", 83.04, "offline")
    table.add("trixie", "healthz", 0.46, "ok")
    assert table.render().splitlines() == [
        "| release | step | seconds | result |",
        "|---|---|---:|---|",
        "| bookworm | first boot | 83.0 | offline |",
        "| trixie | healthz | 0.5 | ok |",
        "| all | total | 83.5 | |",
    ]


def test_overcommit_is_set_for_the_agent_session_and_restored_after(tmp_path: Path) -> None:
    setting = tmp_path / "overcommit_memory"
    setting.write_text("0\n")
    with overcommit_always(setting) as old:
        during = setting.read_text()
    assert (old, during, setting.read_text()) == ("0", "1\n", "0\n")


def test_overcommit_is_restored_when_the_session_fails(tmp_path: Path) -> None:
    setting = tmp_path / "overcommit_memory"
    setting.write_text("2\n")
    with pytest.raises(RuntimeError), overcommit_always(setting):
        raise RuntimeError("agent session failed")
    assert setting.read_text() == "2\n"
