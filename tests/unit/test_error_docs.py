"""docs/errors.md documents every stable error code the package can raise."""

from __future__ import annotations

from device.protocol import ERROR_CODES
from device.solana.program import CUSTOM_ERRORS, FRAMEWORK_ERRORS
from tests.fixtures.error_codes import code_literals, documented_codes


def test_every_code_literal_in_the_package_is_documented() -> None:
    assert code_literals() - documented_codes() == set()


def test_every_protocol_error_code_is_documented() -> None:
    assert set(ERROR_CODES) - documented_codes() == set()


def test_every_on_chain_error_code_is_documented() -> None:
    chain = {e.code for table in CUSTOM_ERRORS.values() for e in table.values()}
    chain |= {e.code for e in FRAMEWORK_ERRORS.values()}
    assert chain - documented_codes() == set()


def test_the_scanner_finds_codes() -> None:
    # Guards the test above against a regex that silently matches nothing.
    found = code_literals()
    assert {"config_invalid", "key_permissions", "insufficient_balance", "agent_ready"} <= found
    assert {"relay_unreachable", "relay_catchup_incomplete", "relay_publish_refused"} <= found  # log lines
