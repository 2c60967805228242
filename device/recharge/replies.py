"""The replies a recharge produces, as protocol messages (pure: no I/O, nothing signed here).

* A grant is announced by three events, in this order: ``Status{Working, UserRequest}``,
  ``Transaction{user, +tokens}``, ``Status{Available, UserBehaviour}`` -- each ``Status`` names the Request
  (``initial_request``) and echoes its payload text verbatim, as the reference controller does.
* A refusal is ``Status{Available, LockFailed}`` whose payload is the Request's payload with an ``"error":
  {"code", "message"}`` member added.  The payload is edited as a JSON object, keeping every key, their order
  and the ``recover_info`` text as received; a payload that is not a JSON object (or no payload at all:
  malformed content) becomes ``{"error": {...}}``.
* An admin request is acknowledged with ``Status{Available, <its reason>}`` and its payload verbatim.
"""

from __future__ import annotations

import json
from typing import Final

from device.protocol import (
    MAX_CONTENT_BYTES,
    MachineStatus,
    ProtocolError,
    Reason,
    Status,
    Transaction,
    encode_message,
)

#: Longest error message carried in a reply (characters); longer ones are cut.
MAX_ERROR_MESSAGE: Final = 300


def _clean(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_MESSAGE` characters, with anything not encodable as UTF-8 replaced."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= MAX_ERROR_MESSAGE else text[: MAX_ERROR_MESSAGE - 1] + "…"


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _payload_object(payload: str | None) -> dict[str, object] | None:
    if payload is None:
        return None
    try:
        parsed = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def refusal_payload(payload: str | None, code: str, message: str) -> str:
    """The Request's ``payload`` with ``"error": {"code", "message"}`` set (see the module docstring)."""
    error = {"code": _clean(code), "message": _clean(message)}
    obj = _payload_object(payload)
    if obj is not None:
        obj["error"] = error
        try:
            text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            text.encode("utf-8")
        except (ValueError, RecursionError, UnicodeEncodeError):
            pass
        else:
            if len(text.encode("utf-8")) <= MAX_CONTENT_BYTES // 2:
                return text
    return json.dumps({"error": error}, ensure_ascii=False, separators=(",", ":"))


def refusal(request_id: str, payload: str | None, code: str, message: str) -> Status:
    """``Status{Available, LockFailed}`` answering ``request_id`` with the error in its payload."""
    status = Status(
        MachineStatus.Available, Reason.LockFailed, request_id, refusal_payload(payload, code, message)
    )
    try:
        encode_message(status)
    except ProtocolError:  # too large once escaped: keep only the error
        status = Status(
            MachineStatus.Available, Reason.LockFailed, request_id, refusal_payload(None, code, message)
        )
    return status


def grant_messages(
    request_id: str, payload: str, user: str, tokens: int
) -> tuple[Status, Transaction, Status]:
    """The three events announcing a grant of ``tokens`` to ``user`` for the Request ``request_id``."""
    return (
        Status(MachineStatus.Working, Reason.UserRequest, request_id, payload),
        Transaction(user=user, tokens=tokens),
        Status(MachineStatus.Available, Reason.UserBehaviour, request_id, payload),
    )


def acknowledgement(request_id: str, reason: Reason, payload: str) -> Status:
    """``Status{Available, reason}`` answering an admin request: the device is available, nothing charged."""
    return Status(MachineStatus.Available, reason, request_id, payload)
