"""The replies a recharge produces, as protocol messages (pure: no I/O, nothing signed here).

* A grant is announced by three events, in this order: ``Status{Working, UserRequest}``,
  ``Transaction{user, +tokens}``, ``Status{Available, UserBehaviour}`` -- each ``Status`` names the Request
  (``initial_request``) and echoes its payload text verbatim, as the reference controller does.
* A refusal is ``Status{Available, LockFailed}`` naming the Request (``initial_request``) whose payload is
  only ``{"error": {"code", "message"}}``: the Request's payload is not echoed, so a refusal costs the same
  few hundred bytes whatever a stranger sent (the reference controller replies nothing at all on failure).
* An admin request is acknowledged with ``Status{Available, <its reason>}`` and its payload verbatim.
"""

from __future__ import annotations

import json
from typing import Final

from device.protocol import MachineStatus, Reason, Status, Transaction

#: Longest error message carried in a reply (characters); longer ones are cut.
MAX_ERROR_MESSAGE: Final = 300


def _clean(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_MESSAGE` characters, with anything not encodable as UTF-8 replaced."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= MAX_ERROR_MESSAGE else text[: MAX_ERROR_MESSAGE - 1] + "…"


def refusal_payload(code: str, message: str) -> str:
    """``{"error": {"code", "message"}}`` as compact JSON, both texts cut and cleaned."""
    error = {"code": _clean(code), "message": _clean(message)}
    return json.dumps({"error": error}, ensure_ascii=False, separators=(",", ":"))


def refusal(request_id: str, code: str, message: str) -> Status:
    """``Status{Available, LockFailed}`` answering ``request_id`` with the error as its payload."""
    return Status(MachineStatus.Available, Reason.LockFailed, request_id, refusal_payload(code, message))


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
