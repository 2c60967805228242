"""Pay-as-you-go on the fault rig: open a session, chat, stop it, and check its one lock and one settle.

Used by ``test_kill_on_session_path.py`` on a :class:`~tests.faults.harness.FaultRig` made with
``pricing_mode="session"``.  :func:`verify_session` is the session counterpart of ``FaultRig.verify``:

1. chain: the user's nonce moved once (one ``lock``), nothing is locked any more and the lock account is
   closed (one ``settle``), vault and treasury moved by exactly the settled lamports;
2. ledger: one session, ``settled``, ``settle_lamports = ceil(used / 1) = used`` where ``used`` is the sum
   of the chats' debits, and the user's tokens back to 0 (budget − used − unused);
3. relay: one ``Transaction{+budget}``, one ``Transaction{−unused}`` (when anything was unused) and one
   closing ``Status{Available, UserBehaviour}`` naming the session, whose payload states the same lamports.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nostr_sdk import Event, EventBuilder, Keys, Kind, Tag
from solders.keypair import Keypair

from device.chat.auth import issue_token
from device.chat.client import ChatClient, StreamEnd
from device.protocol import (
    DEFAULT_SESSION,
    KIND,
    MachineStatus,
    ProtocolError,
    Reason,
    Request,
    Status,
    Transaction,
    decode_message,
    encode_message,
    event_tags,
)
from device.solana import program as bp
from tests.faults.harness import DEPOSIT, PRICE, PROGRAM, RESULTS, FaultRig, ScenarioResult, wait_until


def session_row(rig: FaultRig, request_id: str) -> dict[str, Any] | None:
    rows = rig._read(
        "SELECT state, used_tokens, settle_lamports, stop_reason FROM sessions WHERE request_id = "
        f"'{request_id}'"
    )
    if not rows:
        return None
    state, used, settled, reason = rows[0]
    return {"state": state, "used": used, "settled": settled, "reason": reason}


async def wait_session(rig: FaultRig, request_id: str, *states: str, within: float = 45.0) -> None:
    def reached() -> bool:
        row = session_row(rig, request_id)
        return row is not None and row["state"] in states

    try:
        await wait_until(reached, within, f"session {request_id[:8]} in {states}", 0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nagent:\n{rig.agent.logs()}") from None


async def open_session(rig: FaultRig, user: Keypair) -> Event:
    """Publish a recharge Request for ``user`` (the device locks it); return the event."""
    event = await rig.request_event(user)
    await rig.publish(event)
    return event


def chat(rig: FaultRig, user: Keypair, question: str, *, stop_after_first: bool = False) -> None:
    """One completion over the chat socket (blocking); optionally return after the first delta."""
    client = ChatClient(rig.chat_socket, issue_token(user, rig.machine, ttl_seconds=600), timeout=60)
    stream = client.stream([{"role": "user", "content": question}], max_tokens=None, end=StreamEnd())
    for _ in stream:
        if stop_after_first:
            return
    return


async def stop(rig: FaultRig, start: Event) -> None:
    """The user's stop: ``Request{Available, UserRequest}`` naming ``start``, with its payload."""
    payload = json.loads(start.content())["Request"]["payload"]
    request = Request(MachineStatus.Available, Reason.UserRequest, start.id().to_hex(), payload)
    tags = [Tag.parse(t) for t in event_tags(DEFAULT_SESSION, rig.machine)]
    await rig.publish(EventBuilder(Kind(KIND), encode_message(request)).tags(tags).finalize(Keys.generate()))


def chat_debits(rig: FaultRig, user: str) -> int:
    rows = rig._read(
        "SELECT COALESCE(-SUM(delta), 0) FROM ops WHERE kind = 'debit' AND key NOT LIKE 'session-close:%'"
        f" AND user = '{user}'"
    )
    return int(rows[0][0]) if rows else 0


async def verify_session(rig: FaultRig, user: Keypair, start: Event) -> None:
    """Assert one lock, one settle, settled = used (module docstring)."""
    key, start_id = str(user.pubkey()), start.id().to_hex()
    await wait_session(rig, start_id, "settled")
    await wait_until(lambda: rig.outbox_pending() == 0, 30, "every session event acknowledged by a relay")
    row = session_row(rig, start_id)
    assert row is not None
    used = chat_debits(rig, key)
    problems: list[str] = []
    if (row["used"], row["settled"]) != (used, used):
        problems.append(f"session used {row['used']} settled {row['settled']}, chats debited {used}")

    account = await rig.user_account(user.pubkey())
    if (account.nonce, account.locked_amount) != (1, 0):
        problems.append(f"nonce {account.nonce} (1 lock expected), locked {account.locked_amount}")
    if await rig.lamports(bp.lock_pda(PROGRAM.program_id, user.pubkey(), 0)):
        problems.append("the lock account is still open")
    if (vault := await rig.vault(user.pubkey())) != DEPOSIT - used:
        problems.append(f"vault {vault}, expected {DEPOSIT - used}")
    if (treasury := await rig.lamports(rig.treasury) - rig.treasury_start) != used:
        problems.append(f"treasury moved by {treasury}, expected {used}")
    if (tokens := rig._read(f"SELECT total FROM balances WHERE user = '{key}'")) and tokens[0][0] != 0:
        problems.append(f"ledger tokens {tokens[0][0]} after the session, expected 0")

    grants, closes, closing = 0, 0, []
    for event in await rig.device_events():
        try:
            message = decode_message(event.content())
        except ProtocolError:
            continue
        if isinstance(message, Transaction) and message.user == key:
            grants += message.tokens == PRICE
            closes += message.tokens == -(PRICE - used)
        elif (
            isinstance(message, Status)
            and message.initial_request == start_id
            and message.status is MachineStatus.Available
        ):
            closing.append(json.loads(message.payload)["session"])
    if grants != 1 or (used < PRICE and closes != 1):
        problems.append(f"{grants} budget Transaction(s), {closes} closing Transaction(s) on the relay")
    if [c["settled_lamports"] for c in closing] != [used]:
        problems.append(f"closing Status on the relay: {closing}")
    RESULTS.append(
        ScenarioResult(
            rig.name,
            rig.faults,
            requests=1,
            granted=int(row["state"] == "settled"),
            refused=0,
            lost=int(bool(problems)),
            double_charges=int(account.nonce > 1 or treasury > used),
            seconds=time.monotonic() - rig.started,
            problems=problems,
        )
    )
    assert not problems, (
        "session invariants violated:\n" + "\n".join(problems) + f"\nagent:\n{rig.agent.logs()}"
    )


async def chat_in_thread(rig: FaultRig, user: Keypair, question: str) -> None:
    await asyncio.to_thread(chat, rig, user, question)
