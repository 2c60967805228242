"""Fuzz the session stop path: mutated ``Request{Available, UserRequest}`` events against a session-mode
processor holding one open session.

Properties: ``handle`` never raises and never logs ``recharge_internal_error``; every refusal has a
documented code; no money moves (the only op is the session's budget grant); the session is marked to stop
exactly when the stop names it (``initial_request``) and its user (the payload's ``user``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path

from hypothesis import assume, example, given
from hypothesis import strategies as st
from nostr_sdk import Keys

from device.config import parse_config
from device.ledger import Ledger, RechargeState
from device.protocol import (
    DEFAULT_SESSION,
    KIND,
    MachineStatus,
    ProtocolError,
    Reason,
    Request,
    encode_message,
)
from device.relay import IncomingEvent
from tests.fixtures.settlement import offline_processor
from tests.fuzz import DOCUMENTED, TALLY, fuzz_settings
from tests.fuzz import strategies as fs

DEVICE = Keys.generate()
MACHINE = DEVICE.public_key().to_hex()
CONFIG = parse_config({}, base_dir=Path("/"))
TARGET = "sessions.stop"
SESSION_ID = "5e" * 32
USER = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
START_PAYLOAD = json.dumps({"user": USER, "nonce": 0, "recover_info": "{}"})


class _Codes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.codes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        code = getattr(record, "code", None)
        if isinstance(code, str):
            self.codes.append(code)


def _open_session(ledger: Ledger) -> None:
    ledger.begin_recharge(
        SESSION_ID,
        author="ab" * 32,
        user=USER,
        nonce=0,
        amount_lamports=10,
        tokens=10,
        payload=START_PAYLOAD,
        charge="lock",
    )
    ledger.record_submission(SESSION_ID, "sig", 1, b"tx")
    ledger.complete_lock(SESSION_ID, tokens_per_lamport=1, event_id=None, outbox=[])


def _text(content: str | bytes) -> str:
    return content if isinstance(content, str) else content.decode("utf-8", "surrogateescape")


@fuzz_settings(60, long_examples=5_000)
@given(
    initial=fs.mostly(st.just(SESSION_ID), fs.event_ids, odds=2),
    payload=fs.mostly(st.just(START_PAYLOAD), fs.payload_texts().map(_text), odds=3),
    event_id=fs.event_ids,
)
@example(initial=SESSION_ID, payload=START_PAYLOAD, event_id="cd" * 32)
def test_a_stop_never_raises_moves_no_money_and_stops_only_its_session(
    initial: str, payload: str, event_id: str
) -> None:
    try:  # raw, unencodable contents are test_recharge_fuzz's; this target fuzzes what a stop names
        content = encode_message(Request(MachineStatus.Available, Reason.UserRequest, initial, payload))
    except ProtocolError:
        assume(False)
    TALLY.tried(TARGET)
    handler = _Codes()
    logger = logging.getLogger("device.recharge")
    logger.addHandler(handler)
    event = IncomingEvent(
        event_id,
        Keys.generate().public_key().to_hex(),
        1,
        KIND,
        (("s", DEFAULT_SESSION), ("p", MACHINE)),
        content,
        "ws://r",
    )

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "ledger.db") as ledger:
            _open_session(ledger)
            async with offline_processor(ledger, device=DEVICE, config=CONFIG, sessions=True) as processor:
                await processor.handle(event)
                await processor.handle(event)
            assert ledger.check() == []
            assert ledger.totals() == {USER: 10}  # the budget; nothing debited or granted by a stop
            session = ledger.session(SESSION_ID)
            assert session is not None
            row = ledger.recharge(event_id)
            assert row is not None
            names_it = initial == SESSION_ID and _user(payload) == USER
            assert (session.stop_reason == "user_stop") == names_it
            if row.state is RechargeState.FAILED:
                assert row.error_code in DOCUMENTED, row.error_code
                TALLY.refused(TARGET, str(row.error_code))
            else:
                assert row.state is RechargeState.ANSWERED and names_it
                TALLY.accepted(TARGET)

    try:
        asyncio.run(run())
    finally:
        logger.removeHandler(handler)
    assert "recharge_internal_error" not in handler.codes
    assert {code for code in handler.codes if code not in DOCUMENTED} == set()


def _user(payload: str) -> object:
    try:
        parsed = json.loads(payload)
    except (ValueError, RecursionError):  # nesting deeper than Python's stack: the device refuses it too
        return None
    return parsed.get("user") if isinstance(parsed, dict) else None
