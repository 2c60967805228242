"""What users see of a pay-as-you-go session: the device's opening and closing Status payloads, the
wallet's reading of them back from signed events, and the chat REPL's ``/balance`` line."""

from __future__ import annotations

import json

from nostr_sdk import Event, EventBuilder, Keys, Kind, Tag

from device.commands.chat import balance_text
from device.ledger import SessionRow, SessionState
from device.protocol import DEFAULT_SESSION, KIND, MAX_CONTENT_BYTES, Status, encode_message, event_tags
from device.recharge.sessions import closing_status, opening_messages
from device.wallet.sessions import open_sessions

USER = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
PAYLOAD = json.dumps({"user": USER, "nonce": 0, "recover_info": "{}"}, separators=(",", ":"))
DEVICE = Keys.parse("2" * 64)
MACHINE = DEVICE.public_key().to_hex()


def closed_session(request_id: str = "ab" * 32, payload: str = PAYLOAD) -> SessionRow:
    return SessionRow(
        request_id=request_id,
        user=USER,
        nonce=0,
        locked_lamports=1_000,
        budget_tokens=3_000,
        tokens_per_lamport=3,
        payload=payload,
        state=SessionState.SUBMITTED,
        stop_reason="user_stop",
        used_tokens=100,
        settle_lamports=34,
        signature="sig",
        last_valid_block_height=1,
        tx_bytes=None,
        opened_at=1,
        closed_at=2,
        updated_at=2,
    )


def signed(status: Status, keys: Keys = DEVICE, created_at: int | None = None) -> Event:
    tags = [Tag.parse(t) for t in event_tags(DEFAULT_SESSION, MACHINE)]
    return EventBuilder(Kind(KIND), encode_message(status)).tags(tags).finalize(keys)


def test_the_working_status_keeps_the_payload_and_states_the_lock_and_budget() -> None:
    status, grant = opening_messages("ab" * 32, PAYLOAD, USER, locked_lamports=1_000, tokens=3_000)
    payload = json.loads(status.payload)
    assert (status.status, status.reason, status.initial_request) == ("Working", "UserRequest", "ab" * 32)
    assert payload == {**json.loads(PAYLOAD), "session": {"locked_lamports": 1_000, "budget_tokens": 3_000}}
    assert (grant.user, grant.tokens) == (USER, 3_000)


def test_the_closing_status_states_locked_settled_and_returned_lamports() -> None:
    status = closing_status(closed_session())
    assert (status.status, status.reason) == ("Available", "UserBehaviour")
    assert json.loads(status.payload)["session"] == {
        "locked_lamports": 1_000,
        "settled_lamports": 34,
        "returned_lamports": 966,
        "tokens_used": 100,
        "reason": "user_stop",
    }


def test_a_payload_too_large_to_extend_keeps_only_the_user_and_the_summary() -> None:
    huge = json.dumps({"user": USER, "nonce": 0, "recover_info": "{}", "pad": "x" * MAX_CONTENT_BYTES})
    status = closing_status(closed_session(payload=huge))
    encode_message(status)  # fits an event
    assert json.loads(status.payload) == {
        "user": USER,
        "session": json.loads(closing_status(closed_session()).payload)["session"],
    }


def test_the_wallet_finds_sessions_opened_and_not_closed_by_the_device_only() -> None:
    first, second, forged = "ab" * 32, "cd" * 32, "ef" * 32
    events = [
        signed(opening_messages(first, PAYLOAD, USER, locked_lamports=1_000, tokens=3_000)[0]),
        signed(closing_status(closed_session(first))),
        signed(opening_messages(second, PAYLOAD, USER, locked_lamports=2_000, tokens=6_000)[0]),
        signed(opening_messages(forged, PAYLOAD, USER, locked_lamports=9, tokens=9)[0], keys=Keys.generate()),
    ]

    found = open_sessions(events, device=MACHINE, session=DEFAULT_SESSION, machine=MACHINE, user=USER)

    assert [(s.request_id, s.locked_lamports, s.budget_tokens) for s in found] == [(second, 2_000, 6_000)]
    assert (
        open_sessions(events, device=MACHINE, session=DEFAULT_SESSION, machine=MACHINE, user="x" * 44) == []
    )


def test_balance_shows_the_session_budget_and_what_it_costs_so_far() -> None:
    text = balance_text(
        {
            "total": 2_900,
            "available": 2_900,
            "pricing_mode": "session",
            "session": {
                "request": "ab" * 32,
                "locked_lamports": 1_000,
                "budget_tokens": 3_000,
                "used_tokens": 100,
                "unused_tokens": 2_900,
                "tokens_per_lamport": 3,
                "owed_lamports": 34,
            },
        }
    )
    assert text.splitlines()[0] == "balance 2900 tokens (2900 available)"
    assert "100 of 3,000 budget tokens used, 2,900 left; 1,000 lamports locked, 34 owed so far" in text


def test_balance_in_prepaid_mode_is_one_line_and_says_nothing_of_sessions() -> None:
    assert balance_text({"total": 5, "available": 5, "pricing_mode": "prepaid", "session": None}) == (
        "balance 5 tokens (5 available)"
    )
    assert "no open session" in balance_text(
        {"total": 0, "available": 0, "pricing_mode": "session", "session": None}
    )
