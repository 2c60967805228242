"""Fuzz the recharge processor with mutated kind-1573 events addressed to this device.

The contents come from the protocol strategies (all three levels mutated; ``extra_data`` sometimes
bound to this machine, so requests get as far as the chain, which is unreachable here).
Properties: ``handle`` never raises and never logs ``recharge_internal_error`` (its catch-all for an
unexpected exception); every refusal (a ``failed`` ledger row and the hub's last error) has a
documented code; nothing is granted or debited (no ledger ops); the ledger stays consistent.
Complements tests/unit/test_recharge_properties.py (coarser contents, same invariants).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from nostr_sdk import Keys
from solders.keypair import Keypair

from device.config import parse_config
from device.ledger import Ledger, RechargeState
from device.protocol import (
    DEFAULT_SESSION,
    KIND,
    ZERO_EVENT_ID,
    MachineStatus,
    Payload,
    Reason,
    RecoverInfo,
    Request,
    encode_message,
    encode_payload,
    encode_recover_info,
)
from device.relay import IncomingEvent
from device.solana.authorization import encode_binding
from device.state import StateHub
from tests.fixtures.settlement import offline_processor
from tests.fuzz import DOCUMENTED, TALLY, fuzz_settings
from tests.fuzz import strategies as fs

DEVICE = Keys.generate()
MACHINE = DEVICE.public_key().to_hex()
ADMIN = Keys.generate().public_key().to_hex()
STRANGER = Keys.generate().public_key().to_hex()
CONFIG = parse_config({"nostr": {"admin_pubkeys": [ADMIN]}}, base_dir=Path("/"))
TARGET = "recharge.handle"


class _Codes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.codes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        code = getattr(record, "code", None)
        if isinstance(code, str):
            self.codes.append(code)


def _text(content: str | bytes) -> str:
    return content if isinstance(content, str) else content.decode("utf-8", "surrogateescape")


@fuzz_settings(150, long_examples=10_000)
@given(
    content=fs.event_contents(machine=bytes.fromhex(MACHINE)).map(_text),
    tags=fs.mostly(st.just([["s", DEFAULT_SESSION], ["p", MACHINE]]), fs.tag_lists, odds=6),
    kind=fs.mostly(st.just(KIND), fs.kinds, odds=10),
    event_id=fs.mostly(fs.event_ids, st.sampled_from(["EF" * 32, "", "ef" * 31, "\u0660" * 64]), odds=10),
    author=st.sampled_from([STRANGER, STRANGER, ADMIN, MACHINE]),
)
@example(
    content=encode_message(
        Request(
            MachineStatus.Working,
            Reason.UserRequest,
            ZERO_EVENT_ID,
            '{"user":"11111111111111111111111111111111","nonce":0,"recover_info":"x"}',
        )
    ),
    tags=[["s", DEFAULT_SESSION], ["p", MACHINE]],
    kind=KIND,
    event_id="ab" * 32,
    author=STRANGER,
)
@example(  # fully valid and bound to this machine: reaches the (unreachable) chain and stays pending
    content=encode_message(
        Request(
            MachineStatus.Working,
            Reason.UserRequest,
            ZERO_EVENT_ID,
            encode_payload(
                Payload(
                    str(Keypair().pubkey()),
                    0,
                    encode_recover_info(
                        RecoverInfo(
                            bytes(64),
                            encode_binding(bytes.fromhex(MACHINE), CONFIG.pricing.recharge_lamports),
                            2_000_000_000,
                            "extra_data",
                        )
                    ),
                    0,
                )
            ),
        )
    ),
    tags=[["s", DEFAULT_SESSION], ["p", MACHINE]],
    kind=KIND,
    event_id="cd" * 32,
    author=STRANGER,
)
def test_handle_never_raises_and_refuses_with_documented_codes(
    content: str, tags: object, kind: object, event_id: str, author: str
) -> None:
    TALLY.tried(TARGET)
    handler = _Codes()
    logger = logging.getLogger("device.recharge")
    logger.addHandler(handler)
    hub = StateHub()

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "ledger.db") as ledger:
            event = IncomingEvent(event_id, author, 1_700_000_000, kind, tags, content, "ws://relay.test")  # type: ignore[arg-type]
            async with offline_processor(ledger, device=DEVICE, config=CONFIG, hub=hub) as processor:
                try:
                    await processor.handle(event)
                    await processor.handle(event)  # a second delivery changes nothing
                except BaseException as exc:
                    TALLY.crash(TARGET, exc)
                    raise
            assert ledger.check() == []
            with ledger._lock:
                conn = ledger._conn
                assert conn is not None
                assert conn.execute("SELECT count(*) FROM ops").fetchone() == (0,)
            row = ledger.recharge(event_id) if isinstance(event_id, str) and event_id else None
            if row is not None and row.state is RechargeState.FAILED:
                assert row.error_code is not None
                if row.error_code not in DOCUMENTED:
                    TALLY.unexpected(TARGET, row.error_code)
                    raise AssertionError(f"refusal without a documented code: {row.error_code!r}")
                TALLY.refused(TARGET, row.error_code)
            elif row is not None:
                TALLY.accepted(TARGET)  # pending (chain unreachable) or answered (admin)
            else:
                TALLY.refused(TARGET, "(ignored: " + ",".join(sorted(set(handler.codes))) + ")")

    try:
        asyncio.run(run())
    finally:
        logger.removeHandler(handler)
    if "recharge_internal_error" in handler.codes:
        TALLY.unexpected(TARGET, "recharge_internal_error")
        raise AssertionError("handle hit an unexpected exception (logged recharge_internal_error)")
    undocumented = {code for code in handler.codes if code not in DOCUMENTED}
    assert not undocumented, f"log codes not in docs/errors.md: {undocumented}"
    last = hub.current.last_error
    assert last is None or last.code in DOCUMENTED, last
