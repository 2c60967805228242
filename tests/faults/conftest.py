"""Fixtures of the fault suite: one chain subprocess per session, one :class:`FaultRig` per test.

``XEPHY_FAULTS_LONG=1`` enables the soak scenarios; the summary table is printed at the end of the session.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter

from tests.faults.harness import FaultRig, summary_lines
from tests.fixtures.processes import LocalnetProcess

LONG = os.environ.get("XEPHY_FAULTS_LONG", "") not in ("", "0")


@pytest.fixture(scope="session")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalnetProcess]:
    """The chain stand-in as a subprocess with a state file, shared by every scenario (one namespace each)."""
    with LocalnetProcess.running_in(tmp_path_factory.mktemp("localnet")) as chain:
        yield chain


@pytest.fixture
async def rig_factory(
    request: pytest.FixtureRequest, tmp_path: Path, localnet: LocalnetProcess
) -> AsyncIterator[object]:
    """``await make(relays=1, disk_kib=None, model=None, pricing_mode="prepaid")`` builds a rig; every rig is
    closed at the end."""
    rigs: list[FaultRig] = []
    name = re.sub(r"^test_", "", request.node.name)

    async def make(
        *,
        relays: int = 1,
        disk_kib: int | None = None,
        model: Path | None = None,
        pricing_mode: str = "prepaid",
    ) -> FaultRig:
        rig = await FaultRig.create(
            name,
            tmp_path / f"rig{len(rigs)}",
            localnet,
            relays=relays,
            disk_kib=disk_kib,
            model=model,
            pricing_mode=pricing_mode,
        )
        rigs.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in rigs:
            await rig.close()


@pytest.fixture
async def rig(rig_factory: object) -> FaultRig:
    """A rig with one relay subprocess, no agent started yet."""
    return await rig_factory()  # type: ignore[operator,no-any-return]


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """Print the fault-injection table: scenarios, faults injected, requests lost, double charges."""
    lines = summary_lines()
    if not lines:
        return
    terminalreporter.write_sep("=", "fault injection summary")
    for line in lines:
        terminalreporter.write_line(line)
