"""endpoints.json: written by the running agent, read by user commands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device.endpoints import ENDPOINTS_FILE, Endpoints
from device.errors import DeviceError


def sample(pid: int = os.getpid()) -> Endpoints:
    return Endpoints(
        relays=("ws://127.0.0.1:7000",),
        rpc_url="http://127.0.0.1:8899",
        machine_pubkey="ab" * 32,
        device_pubkey="cd" * 32,
        session="dephy-dsproxy-controller",
        chat_socket="/tmp/chat.sock",
        program="v2",
        program_id="8Pna6CZRquk83XT6ecisT9TYVfN3hY299GH2yEJk73dL",
        namespace_id=0,
        pid=pid,
    )


def test_written_endpoints_read_back_equal(tmp_path: Path) -> None:
    sample().write(tmp_path)
    assert Endpoints.read(tmp_path) == sample()


def test_missing_endpoints_file_says_the_agent_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(DeviceError) as err:
        Endpoints.read(tmp_path)
    assert err.value.code == "agent_not_running"


def test_garbage_endpoints_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / ENDPOINTS_FILE).write_text("{not json")
    with pytest.raises(DeviceError) as err:
        Endpoints.read(tmp_path)
    assert err.value.code == "endpoints_invalid"


def test_remove_deletes_the_file(tmp_path: Path) -> None:
    sample().write(tmp_path)
    Endpoints.remove(tmp_path)
    assert not (tmp_path / ENDPOINTS_FILE).exists()


def test_liveness_follows_the_writer_process() -> None:
    assert sample().is_live()
    assert not sample(pid=2**22 + 12345).is_live()
