"""Refusal and grant replies: the Request's payload echoed, the error added, sizes bounded."""

from __future__ import annotations

import json

from device.protocol import MAX_CONTENT_BYTES, MachineStatus, Reason, encode_message
from device.recharge.replies import MAX_ERROR_MESSAGE, grant_messages, refusal, refusal_payload

REQ = "ab" * 32


def test_the_error_is_added_after_the_payload_keys_in_their_order() -> None:
    text = refusal_payload('{"recover_info":"{\\"a\\":1}","nonce":0,"user":"u"}', "nonce_mismatch", "used")
    assert (
        text == '{"recover_info":"{\\"a\\":1}","nonce":0,"user":"u",'
        '"error":{"code":"nonce_mismatch","message":"used"}}'
    )


def test_a_payload_that_is_not_an_object_becomes_the_error_alone() -> None:
    assert json.loads(refusal_payload("[1]", "invalid_field", "no")) == {
        "error": {"code": "invalid_field", "message": "no"}
    }


def test_a_payload_with_nan_becomes_the_error_alone() -> None:
    assert json.loads(refusal_payload('{"a":NaN}', "c_code", "m")) == {
        "error": {"code": "c_code", "message": "m"}
    }


def test_long_messages_are_cut() -> None:
    payload = json.loads(refusal_payload(None, "c_code", "x" * 5000))
    assert len(payload["error"]["message"]) == MAX_ERROR_MESSAGE


def test_a_refusal_of_a_huge_payload_still_encodes() -> None:
    huge = json.dumps({"pad": "\\" * (MAX_CONTENT_BYTES // 2)})
    status = refusal(REQ, huge, "c_code", "m")
    assert len(encode_message(status).encode()) <= MAX_CONTENT_BYTES
    assert (status.status, status.reason) == (MachineStatus.Available, Reason.LockFailed)


def test_grant_messages_are_working_credit_available() -> None:
    working, credit, available = grant_messages(REQ, "{}", "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9", 7)
    assert (working.status, working.reason) == (MachineStatus.Working, Reason.UserRequest)
    assert credit.tokens == 7
    assert (available.status, available.reason) == (MachineStatus.Available, Reason.UserBehaviour)
