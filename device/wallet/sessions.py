"""A user's pay-as-you-go sessions as the device's events tell them (``user balance``, ``user stop``).

The device announces a session with ``Status{Working, UserRequest}`` whose payload carries
``"session": {"locked_lamports", "budget_tokens"}`` and ends it with ``Status{Available, UserBehaviour}``
naming the same Request, whose ``"session"`` says what was settled and returned
(:mod:`device.recharge.sessions`).  A session is open while the first exists without the second.  Only
events signed by the device's key count.

:func:`stop_session` publishes the DeCharge-style stop -- ``Request{Available, UserRequest}`` with
``initial_request`` = the session's Request and its payload -- and waits for the closing Status.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nostr_sdk import Event, EventBuilder, Keys, Kind, ReqTarget, Tag, Timestamp

from device.protocol import (
    KIND,
    MachineStatus,
    ProtocolError,
    Reason,
    Request,
    Status,
    decode_message,
    decode_payload,
    encode_message,
    event_tags,
    read_routing,
)
from device.wallet.recharge import RechargeFailed, RechargeTarget, refusal_error
from device.wallet.relay_client import RelayUnreachable, connected_client, machine_filter
from device.wallet.transaction_feed import fetch_machine_events


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A session the device opened for the user and has not settled yet."""

    request_id: str
    payload: str
    locked_lamports: int
    budget_tokens: int
    opened_at: int


def _session_summary(status: Status) -> dict[str, Any] | None:
    try:
        summary = json.loads(status.payload).get("session")
    except (ValueError, AttributeError):
        return None
    return summary if isinstance(summary, dict) else None


def open_sessions(
    events: Iterable[Event], *, device: str, session: str, machine: str, user: str
) -> list[OpenSession]:
    """The user's open sessions among ``events`` (device-signed Status events only), oldest first."""
    opened: dict[str, OpenSession] = {}
    closed: set[str] = set()
    for event in events:
        if event.author().to_hex() != device or not event.verify():
            continue
        try:
            routing = read_routing(int(event.kind().as_u16()), [tag.to_vec() for tag in event.tags()])
            message = decode_message(event.content())
            if not isinstance(message, Status) or (routing.session, routing.machine) != (session, machine):
                continue
            summary = _session_summary(message)
            if summary is None or decode_payload(message.payload).user != user:
                continue
        except ProtocolError:
            continue
        if message.status is MachineStatus.Available:
            closed.add(message.initial_request)
        elif message.status is MachineStatus.Working:
            opened[message.initial_request] = OpenSession(
                message.initial_request,
                message.payload,
                int(summary.get("locked_lamports", 0)),
                int(summary.get("budget_tokens", 0)),
                int(event.created_at().as_secs()),
            )
    return sorted((s for r, s in opened.items() if r not in closed), key=lambda s: s.opened_at)


async def fetch_open_sessions(target: RechargeTarget, user: str) -> list[OpenSession]:
    """The user's open sessions on ``target``'s machine, read from its relays."""
    events = await fetch_machine_events(
        target.relays, authors=[target.device_pubkey], session=target.session, machine=target.machine_pubkey
    )
    return open_sessions(
        events, device=target.device_pubkey, session=target.session, machine=target.machine_pubkey, user=user
    )


def build_stop_event(opened: OpenSession, target: RechargeTarget, keys: Keys) -> Event:
    """The signed ``Request{Available, UserRequest}`` ending ``opened``."""
    request = Request(MachineStatus.Available, Reason.UserRequest, opened.request_id, opened.payload)
    tags = [Tag.parse(tag) for tag in event_tags(target.session, target.machine_pubkey)]
    event: Event = EventBuilder(Kind(KIND), encode_message(request)).tags(tags).finalize(keys)
    return event


async def stop_session(opened: OpenSession, target: RechargeTarget, *, wait_seconds: float) -> dict[str, Any]:
    """Ask the device to end ``opened`` and return its closing summary (locked/settled/returned lamports,
    tokens used, reason); raises :class:`~device.wallet.recharge.RechargeFailed` on a refusal or timeout."""
    event = build_stop_event(opened, target, Keys.generate())
    stop_id = event.id().to_hex()
    try:
        async with connected_client(target.relays) as client:
            since = Timestamp.from_secs(int(time.time()) - 5)
            flt = machine_filter(target.session, target.machine_pubkey, [target.device_pubkey]).since(since)
            await client.subscribe(ReqTarget.auto([flt]))
            stream = client.notifications()
            sent = await client.send_event(event)
            if not sent.success:
                raise RechargeFailed(
                    f"no relay accepted the stop: {sent.failed}", code="relay_publish_failed"
                )
            return await asyncio.wait_for(_await_closing(stream, opened.request_id, stop_id), wait_seconds)
    except RelayUnreachable as exc:
        raise RechargeFailed(exc.message, code=exc.code) from exc
    except TimeoutError:
        raise RechargeFailed(
            f"the session {opened.request_id} was not settled within {wait_seconds:.0f} s; the device "
            "settles it once no chat is in flight and the chain answers: check `xephy-device user balance`",
            code="recharge_timeout",
        ) from None


async def _await_closing(stream: object, session_id: str, stop_id: str) -> dict[str, Any]:
    while True:
        notification = await stream.next()  # type: ignore[attr-defined]
        if notification is None:
            raise RechargeFailed("the relay connection closed before an answer", code="relay_unreachable")
        if not notification.is_new_event() or not notification.event.verify():
            continue
        try:
            message = decode_message(notification.event.content())
        except ProtocolError:
            continue
        if not isinstance(message, Status):
            continue
        if message.initial_request == stop_id and message.reason is Reason.LockFailed:
            raise refusal_error(message)
        if message.initial_request == session_id and message.status is MachineStatus.Available:
            summary = _session_summary(message)
            if summary is not None:
                return summary


def describe_sessions(sessions: Sequence[OpenSession]) -> list[dict[str, Any]]:
    """JSON-ready rows for ``user balance --json``."""
    return [
        {
            "request": s.request_id,
            "locked_lamports": s.locked_lamports,
            "budget_tokens": s.budget_tokens,
            "opened_at": s.opened_at,
        }
        for s in sessions
    ]
