"""Refusal and grant replies: a refusal carries the Request id and the error only; grants echo the payload."""

from __future__ import annotations

import json

from device.protocol import MachineStatus, Reason, encode_message
from device.recharge.replies import MAX_ERROR_MESSAGE, grant_messages, refusal, refusal_payload

REQ = "ab" * 32


def test_a_refusal_names_the_request_and_carries_only_the_error() -> None:
    status = refusal(REQ, "nonce_mismatch", "used")

    assert (status.status, status.reason, status.initial_request) == (
        MachineStatus.Available,
        Reason.LockFailed,
        REQ,
    )
    assert json.loads(status.payload) == {"error": {"code": "nonce_mismatch", "message": "used"}}


def test_long_messages_are_cut() -> None:
    payload = json.loads(refusal_payload("c_code", "x" * 5000))
    assert len(payload["error"]["message"]) == MAX_ERROR_MESSAGE


def test_a_refusal_stays_small_whatever_the_message() -> None:
    status = refusal(REQ, "c_code", "\\" * 50_000)
    assert len(encode_message(status).encode()) < 2_000  # 300 characters, each escaped twice at worst


def test_grant_messages_are_working_credit_available() -> None:
    working, credit, available = grant_messages(REQ, "{}", "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9", 7)
    assert (working.status, working.reason) == (MachineStatus.Working, Reason.UserRequest)
    assert credit.tokens == 7
    assert (available.status, available.reason) == (MachineStatus.Available, Reason.UserBehaviour)
