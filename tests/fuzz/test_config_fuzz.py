"""Fuzz config *files*: YAML text (not Python data) through ``load_config``.

Property: every file loads or raises ConfigError -- never RecursionError, ValueError, ... -- with
one of the documented config codes, a one-line message.  tests/unit/test_config.py fuzzes the
decoded data; this adds YAML's own traps (deep nesting, huge integers, aliases, tags, encodings).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given

from device.config import ConfigError, load_config
from tests.fuzz import DOCUMENTED, attempt, fuzz_settings
from tests.fuzz import strategies as fs

CONFIG_CODES = frozenset({"config_invalid", "config_unreadable", "config_yaml_error"}) & DOCUMENTED
DIR = Path(tempfile.mkdtemp(prefix="xephy-fuzz-config-"))


@fuzz_settings(400)
@given(fs.yaml_texts())
@example("device: " + "[" * 5000 + "]" * 5000)  # RecursionError in PyYAML's composer (fixed)
@example("{a: " * 3000 + "1" + "}" * 3000)
@example("llm:\n  n_ctx: " + "9" * 5000)  # int literal over Python's 4300-digit limit (fixed)
@example("device:\n  state_dir: 2001-02-30\n")  # a date that does not exist (fixed)
def test_yaml_text_gives_config_or_config_error(text: str | bytes) -> None:
    path = DIR / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = attempt("config.load_config", lambda: load_config(path), error=ConfigError, allowed=CONFIG_CODES)
    if isinstance(result, ConfigError):
        assert "\n" not in str(result) and "\r" not in str(result), str(result)
        if result.code == "config_invalid":
            assert result.message.startswith(f"{result.key_path}: ") or result.key_path == ""
