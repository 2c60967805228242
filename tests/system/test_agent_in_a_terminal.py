"""``xephy-device run`` in a terminal: the live status line and the log never share a line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.fixtures.terminal import run_in_terminal

STATUS_FRAME = re.compile(r"\w[\w ]* \| led [\w ]+ \| Bal [^|]+( \| [^|]+)? \| up \d+:\d\d:\d\d")


def test_the_live_line_is_never_glued_to_a_log_or_announcement_line(workdir: Path, tiny_model: Path) -> None:
    config = workdir / "config.yaml"
    config.write_text(f"llm:\n  model_path: {tiny_model}\n")
    xephy = str(Path(sys.executable).with_name("xephy-device"))
    code, screen = run_in_terminal(
        [xephy, "run", "--config", str(config)], workdir, interrupt_after=b"ready;"
    )
    assert code == 0, screen
    frames = [f.replace("\x1b[K", "") for line in screen.split("\n") for f in line.split("\r")]
    status = [f for f in frames if "| led " in f]
    assert any(f.startswith("Loading | led flash") for f in status)
    assert any(f.startswith("Ready | led steady") for f in status)
    glued = [f for f in status if not STATUS_FRAME.fullmatch(f)]
    assert glued == [], glued
    lines = [f.strip() for f in frames if f.strip()]
    assert "ready; Ctrl-C to stop" in lines
    assert any(
        line.endswith("[chat_ready] chat listening on " + str(workdir / ".xephy-device" / "chat.sock"))
        for line in lines
    )
