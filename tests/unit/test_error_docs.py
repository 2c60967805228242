"""docs/errors.md documents every stable error code the package can raise."""

from __future__ import annotations

import re
from pathlib import Path

from device.protocol import ERROR_CODES
from device.solana.program import CUSTOM_ERRORS, FRAMEWORK_ERRORS

ROOT = Path(__file__).resolve().parents[2]
CODE_LITERAL = re.compile(r"""\bcode\s*=\s*["']([a-z][a-z0-9_]*)["']""")
LOG_CODE_LITERAL = re.compile(r"""["']code["']\s*:\s*["']([a-z][a-z0-9_]*)["']""")  # extra={"code": ...}


def documented_codes() -> set[str]:
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", (ROOT / "docs" / "errors.md").read_text()))


def codes_in_source() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "device").rglob("*.py"):
        text = path.read_text()
        found.update(CODE_LITERAL.findall(text))
        found.update(LOG_CODE_LITERAL.findall(text))
    return found


def test_every_code_literal_in_the_package_is_documented() -> None:
    assert codes_in_source() - documented_codes() == set()


def test_every_protocol_error_code_is_documented() -> None:
    assert set(ERROR_CODES) - documented_codes() == set()


def test_every_on_chain_error_code_is_documented() -> None:
    chain = {e.code for table in CUSTOM_ERRORS.values() for e in table.values()}
    chain |= {e.code for e in FRAMEWORK_ERRORS.values()}
    assert chain - documented_codes() == set()


def test_the_scanner_finds_codes() -> None:
    # Guards the test above against a regex that silently matches nothing.
    assert {"config_invalid", "key_permissions", "insufficient_balance", "agent_ready"} <= codes_in_source()
