"""Fuzz suite session hooks: the per-target summary table (see README.md).

With ``XEPHY_FUZZ_TALLY=PATH`` the session's counters are also written to PATH as JSON
(``make fuzz-deep`` adds its shards' files up with ``python -m tests.fuzz.summary``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fuzz import TALLY, mode_name
from tests.fuzz.summary import table_lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY.targets:
        return
    terminalreporter.section(f"fuzz summary ({mode_name()} mode)")
    for line in table_lines(TALLY):
        terminalreporter.write_line(line)
    out = os.environ.get("XEPHY_FUZZ_TALLY")
    if out:
        Path(out).write_text(json.dumps(TALLY.to_json(), indent=1))
