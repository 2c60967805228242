"""Every start-up failure of ``xephy-device run`` is one line with a stable code: no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.fixtures.agent import AgentProcess


def test_a_busy_tcp_listen_port_is_one_line_with_a_code(workdir: Path, tiny_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = workdir / "config.yaml"
        config.write_text(f'llm:\n  model_path: {tiny_model}\nchat:\n  tcp_listen: "127.0.0.1:{port}"\n')
        agent = AgentProcess(workdir, args=("--config", str(config)))
        code = agent.wait_exit(timeout=120)
    stderr = agent.stderr()
    assert code == 1
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"xephy-device: chat_tcp_bind_failed: chat.tcp_listen 127.0.0.1:{port}: ")
    assert not (workdir / ".xephy-device" / "endpoints.json").exists()
