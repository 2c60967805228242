"""Shared fixtures and test settings.

Hypothesis profiles: ``default`` (used by ``make test``; no per-example deadline,
because CI machines are shared and 2-core) and ``long`` for soak runs
(``HYPOTHESIS_PROFILE=long make unit``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "long", deadline=None, max_examples=20_000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Shared fixtures: real relays (in-process and subprocess), Nostr peers, a scripted relay;
# the fake JSON-RPC node; mock GPIO pins and a pty display; tiny GGUF models written at test time.
pytest_plugins = [
    "tests.fixtures.relay",
    "tests.fixtures.rpc",
    "tests.fixtures.hardware",
    "tests.fixtures.model",
    "tests.fixtures.agent",
]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """An empty, private state directory for one test."""
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path
