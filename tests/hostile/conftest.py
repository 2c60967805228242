"""Fixtures of the hostile-load suite: one chain subprocess per session, devices built per test, and the
summary table at the end of the session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.terminal import TerminalReporter

from device.nostr_loop import restore_loop, use_loop
from tests.fixtures.processes import LocalnetProcess
from tests.hostile.harness import HostileDevice, table_lines

MakeDevice = Callable[..., Awaitable[HostileDevice]]


@pytest.fixture(scope="session")
def hostile_localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalnetProcess]:
    """The chain stand-in as a subprocess, shared by every scenario (one namespace per device)."""
    with LocalnetProcess.running_in(tmp_path_factory.mktemp("hostile-localnet")) as chain:
        yield chain


@pytest.fixture
async def make_device(
    tmp_path: Path, hostile_localnet: LocalnetProcess, tiny_model: Path
) -> AsyncIterator[MakeDevice]:
    """``await make_device(nip42=None, chat={...})``: a device with its agent running; closed at the end."""
    devices: list[HostileDevice] = []
    # nostr-sdk keeps ONE event loop for its callbacks once anyone set it (the wallet's NIP-42 client
    # does): point it at this test's loop, or its futures land on a closed one; put back what was there
    # afterwards, or the next test's nostr-sdk calls land on this closed loop.
    previous = use_loop(asyncio.get_running_loop())

    async def make(**options: Any) -> HostileDevice:
        device = await HostileDevice.create(
            tmp_path / f"device{len(devices)}", hostile_localnet, model=tiny_model, **options
        )
        devices.append(device)
        await device.start()
        return device

    try:
        yield make
    finally:
        for device in devices:
            await device.close()
        restore_loop(previous)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """Print the hostile-load table: each attack, what the honest side got, the goal, met or not."""
    lines = table_lines()
    if not lines:
        return
    terminalreporter.write_sep("=", "hostile load summary")
    for line in lines:
        terminalreporter.write_line(line)
