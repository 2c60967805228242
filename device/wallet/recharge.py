"""Paying a device for tokens the way the XePHY dApp does (``xephy-device user recharge``).

Steps: read the user's nonce (and, v2, the namespace name) from the chain, sign a
``recover_info`` bound to the machine and the amount, publish a
``Request{Working, UserRequest}`` from a throw-away Nostr key (exactly like the
dApp), then wait for the device's answer about *this* request: a
``Status{…, LockFailed}`` carrying an error, or ``Status{Working}`` followed by the
``Transaction`` that grants the tokens.  Only events authored by the device's key
are believed.

On a laptop every address comes from the running agent's ``endpoints.json``; on a
real network pass ``--relay``, ``--machine`` and ``--device-pubkey``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from nostr_sdk import (
    Event,
    EventBuilder,
    Keys,
    Kind,
    ReqTarget,
    Tag,
    Timestamp,
)

from device.errors import DeviceError
from device.protocol import (
    KIND,
    ZERO_EVENT_ID,
    MachineStatus,
    ProtocolError,
    Reason,
    Request,
    Status,
    Transaction,
    decode_message,
    decode_payload,
    decode_payload_error,
    encode_message,
    event_tags,
)
from device.wallet.relay_client import RelayUnreachable, connected_client, machine_filter


class RechargeFailed(DeviceError):
    """The device refused the request, or no answer came in time."""

    code = "recharge_failed"


@dataclass(frozen=True, slots=True)
class RechargeTarget:
    """Where to send the request and whose answers to believe."""

    relays: tuple[str, ...]
    session: str
    machine_pubkey: str
    device_pubkey: str


@dataclass(frozen=True, slots=True)
class RechargeResult:
    """What the device answered."""

    request_id: str
    tokens: int
    transaction_id: str


def build_request_event(payload: str, target: RechargeTarget, keys: Keys) -> Event:
    """The signed Request event a dApp would publish for ``payload``."""
    request = Request(
        to_status=MachineStatus.Working,
        reason=Reason.UserRequest,
        initial_request=ZERO_EVENT_ID,
        payload=payload,
    )
    tags = [Tag.parse(tag) for tag in event_tags(target.session, target.machine_pubkey)]
    event: Event = EventBuilder(Kind(KIND), encode_message(request)).tags(tags).finalize(keys)
    return event


async def recharge(payload: str, target: RechargeTarget, *, wait_seconds: float) -> RechargeResult:
    """Publish a Request for ``payload`` and wait for the device's grant (or raise its refusal)."""
    user = decode_payload(payload).user
    keys = Keys.generate()  # throw-away, like the dApp's; it also answers NIP-42 challenges
    event = build_request_event(payload, target, keys)
    request_id = event.id().to_hex()
    try:
        async with connected_client(target.relays, auth_keys=keys) as client:
            since = Timestamp.from_secs(int(time.time()) - 5)
            flt = machine_filter(target.session, target.machine_pubkey, [target.device_pubkey]).since(since)
            await client.subscribe(ReqTarget.auto([flt]))
            stream = client.notifications()
            sent = await client.send_event(event)
            if not sent.success:
                raise RechargeFailed(
                    f"no relay accepted the request: {sent.failed}", code="relay_publish_failed"
                )
            return await asyncio.wait_for(
                _await_answer(stream, request_id, user, target.device_pubkey), wait_seconds
            )
    except RelayUnreachable as exc:
        raise RechargeFailed(exc.message, code=exc.code) from exc
    except TimeoutError:
        raise RechargeFailed(
            f"no answer from the device within {wait_seconds:.0f} s (request {request_id}); "
            "it may still be settling: check `xephy-device user balance`",
            code="recharge_timeout",
        ) from None


async def _await_answer(stream: object, request_id: str, user: str, device: str) -> RechargeResult:
    """The grant for ``request_id``: its ``Status{Working}`` and a ``Transaction`` crediting ``user``, in
    whatever order they arrive (a relay need not keep the device's publishing order)."""
    working = False
    credit: RechargeResult | None = None
    seen: set[str] = set()
    while True:
        notification = await stream.next()  # type: ignore[attr-defined]
        if notification is None:
            raise RechargeFailed("the relay connection closed before an answer", code="relay_unreachable")
        event = _event_of(notification)
        if event is None or event.author().to_hex() != device or not event.verify():
            continue
        event_id = event.id().to_hex()
        if event_id in seen:
            continue
        seen.add(event_id)
        try:
            message = decode_message(event.content())
        except ProtocolError:
            continue
        if isinstance(message, Status) and message.initial_request == request_id:
            if message.reason is Reason.LockFailed:
                raise _refusal(message)
            working = working or message.status is MachineStatus.Working
        elif isinstance(message, Transaction) and message.user == user and message.tokens > 0:
            credit = credit or RechargeResult(request_id, message.tokens, event_id)
        if working and credit is not None:
            return credit


def _event_of(notification: Any) -> Event | None:
    """The event a notification carries: nostr-sdk's ``NEW_EVENT``, or the relay's raw ``EVENT`` message
    (after a NIP-42 re-subscription nostr-sdk may hand an event over only as the raw message)."""
    if notification.is_new_event():
        event: Event = notification.event
        return event
    if notification.is_message():
        message = notification.message.as_enum()
        if message.is_event_msg():
            raw: Event = message.event
            return raw
    return None


def _refusal(status: Status) -> RechargeFailed:
    code, text = "recharge_refused", "the device refused the request"
    try:
        error = decode_payload_error(status.payload)
        if error is not None:
            code, text = error.code, error.message
    except ProtocolError:
        pass
    return RechargeFailed(f"the device refused the request: {text}", code=code)


def describe(result: RechargeResult) -> str:
    """One JSON line for scripts."""
    return json.dumps(
        {"request": result.request_id, "tokens": result.tokens, "transaction": result.transaction_id}
    )
