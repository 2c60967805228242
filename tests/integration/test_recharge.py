"""Recharge end to end: real signed Nostr Requests → RechargeProcessor → the localnet stand-in → the ledger.

Everything here is real except the relay: Request events are signed with nostr_sdk by a throw-away key and
handed to ``handle`` as the relay link would (id and signature verified, routing checked); ``pay`` goes over
JSON-RPC to the in-process localnet stand-in; the ledger is a real SQLite file.  Helpers at the top are
shared with ``test_recharge_crash.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nostr_sdk import Keys
from solders.keypair import Keypair

from device.ledger import OutboxPriority, RechargeState
from device.localnet import LocalnetServer, bootstrap_user
from device.protocol import (
    DEFAULT_SESSION,
    KIND,
    ZERO_EVENT_ID,
    MachineStatus,
    Reason,
    Request,
    Status,
    Transaction,
    encode_message,
)
from device.recharge import FaultPoints
from device.recharge.refusal_limit import RefusalLimiter
from device.relay import IncomingEvent
from device.solana.authorization import encode_binding
from device.state import Activity, ChainStatus
from tests.fixtures.proxy import FlakyProxy
from tests.fixtures.recharge import (
    DEPOSIT,
    MAX_RECHARGE,
    PRICE,
    Rig,
    both,
    grant_tokens,
    rig,
    server,
)

__all__ = ["both", "rig", "server"]  # fixtures used by name below


# ---------------------------------------------------------------------------------------------------------
# The happy path, for both program versions (v2 extra_data spelling, v1 payload spelling)


async def test_a_dapp_request_is_paid_once_and_granted(both: Rig) -> None:
    rig = both
    before = rig.chain_state()
    payload = rig.payload()
    event = rig.request(payload)

    await rig.processor().handle(event)

    after = rig.chain_state()
    assert after["vault"] == before["vault"] - PRICE
    assert after["treasury"] == before["treasury"] + PRICE
    assert after["nonce"] == before["nonce"] + 1
    assert rig.ledger.balance(str(rig.user.pubkey())).total == grant_tokens()
    row = rig.ledger.recharge(event.event_id)
    assert row is not None and row.state is RechargeState.GRANTED and row.signature is not None
    assert rig.notified


async def test_a_grant_publishes_working_transaction_available_in_that_order(both: Rig) -> None:
    rig = both
    payload = rig.payload()
    event = rig.request(payload)

    await rig.processor().handle(event)

    events = rig.outbox()
    assert [e["pubkey"] for e in events] == [rig.machine] * 3
    assert all(
        e["tags"] == [["s", DEFAULT_SESSION], ["p", rig.machine]] and e["kind"] == KIND for e in events
    )
    assert [json.loads(e["content"]) for e in events] == [
        {
            "Status": {
                "status": "Working",
                "reason": "UserRequest",
                "initial_request": event.event_id,
                "payload": payload,
            }
        },
        {"Transaction": {"user": str(rig.user.pubkey()), "tokens": grant_tokens()}},
        {
            "Status": {
                "status": "Available",
                "reason": "UserBehaviour",
                "initial_request": event.event_id,
                "payload": payload,
            }
        },
    ]


async def test_a_bound_authorization_charges_the_bound_amount(rig: Rig) -> None:
    amount = 7_000_000
    info = rig.authorize(extra_data=encode_binding(bytes.fromhex(rig.machine), amount))
    before = rig.chain_state()

    await rig.processor().handle(rig.request(rig.payload(info)))

    assert rig.chain_state()["vault"] == before["vault"] - amount
    assert rig.ledger.balance(str(rig.user.pubkey())).total == grant_tokens(amount)


async def test_the_state_hub_shows_the_grant_and_ends_idle(rig: Rig) -> None:
    seen: list[Activity] = []
    rig.hub.subscribe(lambda s: seen.append(s.activity))

    await rig.processor().handle(rig.request())

    state = rig.hub.current
    assert Activity.SETTLING in seen and state.activity is Activity.IDLE
    assert state.chain is ChainStatus.REACHABLE
    assert state.user == str(rig.user.pubkey())
    assert state.user_balance == state.user_last_grant == grant_tokens()
    assert state.last_grant is not None and state.last_grant.tokens == grant_tokens()


# ---------------------------------------------------------------------------------------------------------
# Exactly once


async def test_the_same_request_twice_charges_and_grants_once(rig: Rig) -> None:
    event = rig.request()
    proc = rig.processor()
    await proc.handle(event)
    before, outbox = rig.chain_state(), rig.outbox()

    await proc.handle(event)

    assert rig.chain_state() == before
    assert rig.outbox() == outbox
    assert rig.ledger.balance(str(rig.user.pubkey())).total == grant_tokens()


async def test_the_same_request_twice_concurrently_charges_and_grants_once(rig: Rig) -> None:
    event = rig.request()
    before = rig.chain_state()
    proc = rig.processor()

    await asyncio.gather(proc.handle(event), proc.handle(event), proc.handle(event))

    assert rig.chain_state()["vault"] == before["vault"] - PRICE
    assert len(rig.outbox()) == 3
    assert rig.ledger.balance(str(rig.user.pubkey())).total == grant_tokens()


async def test_two_requests_with_one_nonce_charge_once_and_refuse_the_other(rig: Rig) -> None:
    first, second = rig.request(), rig.request()  # two authorizations of nonce 0
    before = rig.chain_state()
    proc = rig.processor()

    await asyncio.gather(proc.handle(first), proc.handle(second))

    assert rig.chain_state()["vault"] == before["vault"] - PRICE
    states = {rig.ledger.recharge(e.event_id).state for e in (first, second)}  # type: ignore[union-attr]
    assert states == {RechargeState.GRANTED, RechargeState.FAILED}
    codes = [
        json.loads(r["Status"]["payload"]).get("error", {}).get("code")
        for r in rig.replies()
        if "Status" in r
    ]
    assert "nonce_mismatch" in codes


async def test_a_refused_request_delivered_again_adds_no_reply(rig: Rig) -> None:
    event = rig.request(rig.payload(rig.authorize(deadline=rig.now - 10)))
    proc = rig.processor()
    await proc.handle(event)

    await proc.handle(event)

    assert len(rig.outbox()) == 1


# ---------------------------------------------------------------------------------------------------------
# Drops: a Request failing the cheap checks is logged with its code; nothing stored, signed or sent


def dropped(rig: Rig, event: IncomingEvent, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Assert ``event`` left no trace but log lines; return their codes."""
    assert rig.outbox() == []
    assert rig.ledger.recharge(event.event_id) is None
    assert rig.notified == []
    return [getattr(r, "code", "") for r in caplog.records]


async def test_malformed_content_is_dropped(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    event = rig.event('{"Request": ')

    await rig.processor().handle(event)

    assert "malformed_json" in dropped(rig, event, caplog)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("payload_with_a_bad_user", "invalid_field"),
        ("other_namespace", "namespace_mismatch"),
        ("bound_to_another_machine", "binding_wrong_machine"),
        ("reset_from_a_stranger", "unauthorized"),
        ("user_stop_request", "request_unsupported"),
    ],
)
async def test_a_request_not_readable_or_not_for_this_device_is_dropped(
    rig: Rig, case: str, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    other_namespace = json.loads(rig.payload())
    other_namespace["namespace_id"] = rig.namespace_id + 1
    event = {
        "payload_with_a_bad_user": lambda: rig.request('{"user":"nobody","nonce":0}'),
        "other_namespace": lambda: rig.request(json.dumps(other_namespace)),
        "bound_to_another_machine": lambda: rig.request(
            rig.payload(rig.authorize(extra_data=encode_binding(bytes(32), PRICE)))
        ),
        "reset_from_a_stranger": lambda: rig.request(to_status=MachineStatus.Available, reason=Reason.Reset),
        "user_stop_request": lambda: rig.request(to_status=MachineStatus.Available),
    }[case]()
    before = rig.chain_state()

    await rig.processor().handle(event)

    assert rig.chain_state() == before
    assert code in dropped(rig, event, caplog)


async def test_the_screen_says_which_events_handle_would_drop(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    proc = rig.processor()
    junk = rig.event("not json")
    stranger_reset = rig.request(to_status=MachineStatus.Available, reason=Reason.Reset)
    real = rig.request()
    refusable = rig.request(rig.payload(rig.authorize(deadline=rig.now - 10)))

    verdicts = [proc.screen(e) for e in (junk, stranger_reset, real, refusable)]

    assert verdicts == [False, False, True, True]
    assert {"malformed_json", "unauthorized"} <= set(dropped(rig, junk, caplog))


async def test_a_flood_of_drops_is_logged_once_a_minute_per_code(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    proc = rig.processor()
    for _ in range(20):
        await proc.handle(rig.event("not json"))

    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [getattr(r, "code", "") for r in warnings] == ["malformed_json"]
    assert rig.outbox() == []


# ---------------------------------------------------------------------------------------------------------
# Refusals: a LockFailed reply naming the Request with the code, zero lamports moved


async def refused(rig: Rig, event: IncomingEvent) -> dict[str, Any]:
    before = rig.chain_state()
    await rig.processor().handle(event)
    assert rig.chain_state() == before
    assert rig.ledger.balance(str(rig.user.pubkey())).total == 0
    row = rig.ledger.recharge(event.event_id)
    assert row is not None and row.state is RechargeState.FAILED
    reply = rig.refusal()
    assert reply["initial_request"] == event.event_id
    assert row.error_code == reply["payload"]["error"]["code"]
    return reply


async def test_a_refusal_carries_the_request_id_and_the_error_not_the_payload(rig: Rig) -> None:
    event = rig.request(rig.payload(rig.authorize(deadline=rig.now - 10)))

    reply = await refused(rig, event)

    assert reply["payload"] == {
        "error": {"code": "signature_expired", "message": reply["payload"]["error"]["message"]}
    }
    (row,) = rig.ledger.pending_outbox()
    assert row.priority is OutboxPriority.LOW


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("expired", "signature_expired"),
        ("wrong_signer", "signature_invalid"),
        ("future_nonce", "nonce_mismatch"),
        ("bound_over_max", "binding_amount_invalid"),
        ("bound_over_funds", "insufficient_funds"),
        ("deadline_too_far", "deadline_too_far"),
    ],
)
async def test_an_authorization_the_chain_or_the_device_would_refuse_is_refused(
    rig: Rig, case: str, code: str
) -> None:
    info = {
        "expired": lambda: rig.authorize(deadline=rig.now - 10),
        "wrong_signer": lambda: rig.authorize(signer=Keypair()),
        "future_nonce": lambda: rig.authorize(nonce=1),
        "bound_over_max": lambda: rig.authorize(
            extra_data=encode_binding(bytes.fromhex(rig.machine), MAX_RECHARGE + 1)
        ),
        "bound_over_funds": lambda: rig.authorize(
            extra_data=encode_binding(bytes.fromhex(rig.machine), DEPOSIT + 1)
        ),
        "deadline_too_far": lambda: rig.authorize(
            deadline=rig.now + rig.config.max_authorization_seconds + 60
        ),
    }[case]()
    nonce = 1 if case == "future_nonce" else 0
    reply = await refused(rig, rig.request(rig.payload(info, nonce=nonce)))
    assert reply["payload"]["error"]["code"] == code


async def test_refusals_beyond_an_authors_limit_are_recorded_but_not_answered(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = Keys.generate()
    proc = rig.processor(refusal_limiter=RefusalLimiter(per_author_per_minute=2, per_minute=100))
    events = [
        rig.request(rig.payload(rig.authorize(deadline=rig.now - 10 - i)), author=stranger) for i in range(5)
    ]
    other = rig.request(rig.payload(rig.authorize(deadline=rig.now - 10)))

    for event in [*events, other]:
        await proc.handle(event)

    answered = [r["Status"]["initial_request"] for r in rig.replies()]
    assert answered == [events[0].event_id, events[1].event_id, other.event_id]
    for event in events:
        row = rig.ledger.recharge(event.event_id)
        assert row is not None and row.error_code == "signature_expired"
    assert "recharge_refusal_unanswered" in [getattr(r, "code", "") for r in caplog.records]


async def test_refusals_beyond_the_overall_limit_are_not_answered_whoever_sends_them(rig: Rig) -> None:
    proc = rig.processor(refusal_limiter=RefusalLimiter(per_author_per_minute=5, per_minute=3))

    for i in range(6):  # six throw-away keys
        await proc.handle(rig.request(rig.payload(rig.authorize(deadline=rig.now - 10 - i))))

    assert len(rig.replies()) == 3


async def test_a_replayed_nonce_is_refused(rig: Rig) -> None:
    info = rig.authorize()
    await rig.processor().handle(rig.request(rig.payload(info)))
    before = rig.chain_state()
    replay = rig.request(rig.payload(info))  # the same authorization in a new Request

    await rig.processor().handle(replay)

    assert rig.chain_state() == before
    row = rig.ledger.recharge(replay.event_id)
    assert row is not None and row.error_code == "nonce_mismatch"


async def test_an_unbound_request_without_funds_for_the_price_is_refused(rig: Rig) -> None:
    poor = Keypair()
    await bootstrap_user(rig.server.url, poor, PRICE - 1, program=rig.program)
    info = rig.authorize(signer=poor)
    reply = await refused(rig, rig.request(rig.payload(info, user=poor.pubkey())))
    assert reply["payload"]["error"]["code"] == "insufficient_funds"


async def test_an_admin_request_from_an_admin_is_acknowledged_without_charging(rig: Rig) -> None:
    before = rig.chain_state()
    payload = rig.payload()
    event = rig.request(
        payload, to_status=MachineStatus.Available, reason=Reason.AdminRequest, author=rig.admin
    )
    proc = rig.processor()

    await proc.handle(event)
    await proc.handle(event)

    assert rig.chain_state() == before
    assert rig.ledger.balance(str(rig.user.pubkey())).total == 0
    assert rig.replies() == [
        {
            "Status": {
                "status": "Available",
                "reason": "AdminRequest",
                "initial_request": event.event_id,
                "payload": payload,
            }
        }
    ]


@pytest.mark.parametrize(
    "message",
    [
        Transaction(user="AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9", tokens=1_000_000),
        Status(MachineStatus.Working, Reason.UserRequest, "ab" * 32, "{}"),
    ],
    ids=["transaction", "status"],
)
async def test_a_forged_event_from_a_foreign_key_is_ignored(
    rig: Rig, message: Transaction | Status, caplog: pytest.LogCaptureFixture
) -> None:
    event = rig.event(encode_message(message))

    await rig.processor().handle(event)

    assert rig.outbox() == []
    assert rig.ledger.recharge(event.event_id) is None
    assert rig.ledger.balance("AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9").total == 0
    assert any(getattr(r, "code", None) == "event_untrusted" for r in caplog.records)


async def test_an_event_from_a_trusted_author_is_not_logged_untrusted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    event = rig.event(encode_message(Transaction(user=str(rig.user.pubkey()), tokens=5)), author=rig.trusted)

    await rig.processor().handle(event)

    assert rig.outbox() == []
    assert not any(getattr(r, "code", None) == "event_untrusted" for r in caplog.records)


async def test_a_request_for_another_machine_is_ignored(rig: Rig) -> None:
    message = Request(MachineStatus.Working, Reason.UserRequest, ZERO_EVENT_ID, rig.payload())
    event = rig.event(encode_message(message), machine="cd" * 32)
    before = rig.chain_state()

    await rig.processor().handle(event)

    assert rig.chain_state() == before
    assert rig.outbox() == []
    assert rig.ledger.recharge(event.event_id) is None


# ---------------------------------------------------------------------------------------------------------
# The chain going away


@pytest.fixture
async def proxy(server: LocalnetServer) -> AsyncIterator[FlakyProxy]:
    flaky = FlakyProxy(server.port)
    await flaky.start()
    try:
        yield flaky
    finally:
        await flaky.stop()


async def wait_for_state(rig: Rig, request_id: str, state: RechargeState) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 20.0
    while loop.time() < end:
        row = rig.ledger.recharge(request_id)
        if row is not None and row.state is state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{request_id} did not reach {state}: {rig.ledger.recharge(request_id)}")


async def test_rpc_down_during_submit_stays_submitted_then_the_retry_loop_grants_once(
    rig: Rig, proxy: FlakyProxy
) -> None:
    event = rig.request()
    before = rig.chain_state()
    proc = rig.processor(
        url=proxy.url, faults=FaultPoints(["after_submit"], kill=proxy.cut), retry_initial=0.2
    )

    await proc.handle(event)

    row = rig.ledger.recharge(event.event_id)
    assert row is not None and row.state is RechargeState.SUBMITTED
    assert rig.hub.current.chain is ChainStatus.UNREACHABLE and proc.retrying
    assert rig.chain_state() == before and rig.outbox() == []

    proxy.down = False
    await wait_for_state(rig, event.event_id, RechargeState.GRANTED)

    assert rig.chain_state()["vault"] == before["vault"] - PRICE
    assert rig.ledger.balance(str(rig.user.pubkey())).total == grant_tokens()
    assert [next(iter(r)) for r in rig.replies()] == ["Status", "Transaction", "Status"]


async def test_a_submission_whose_blockhash_expired_unsent_is_refused_blockhash_expired(
    rig: Rig, proxy: FlakyProxy
) -> None:
    event = rig.request()
    before = rig.chain_state()
    proc = rig.processor(url=proxy.url, faults=FaultPoints(["after_submit"], kill=proxy.cut))
    await proc.handle(event)
    rig.server.chain.advance_clock(120)  # 300 slots: past last_valid_block_height
    proxy.down = False

    await proc.resume_unfinished()

    assert rig.chain_state() == before
    row = rig.ledger.recharge(event.event_id)
    assert row is not None and row.state is RechargeState.FAILED and row.error_code == "blockhash_expired"
    assert rig.refusal()["payload"]["error"]["code"] == "blockhash_expired"


async def test_background_settlement_returns_once_the_request_is_recorded_then_grants(rig: Rig) -> None:
    event = rig.request()
    before = rig.chain_state()
    proc = rig.processor(background=True)

    await proc.handle(event)

    assert rig.ledger.recharge(event.event_id) is not None  # durable before the link moves its cursor
    await wait_for_state(rig, event.event_id, RechargeState.GRANTED)
    assert rig.chain_state()["vault"] == before["vault"] - PRICE
    assert rig.ledger.balance(str(rig.user.pubkey())).total == grant_tokens()


async def test_background_settlement_of_a_redelivered_request_charges_once(rig: Rig) -> None:
    event = rig.request()
    before = rig.chain_state()
    proc = rig.processor(background=True)

    await asyncio.gather(proc.handle(event), proc.handle(event), proc.handle(event))
    await wait_for_state(rig, event.event_id, RechargeState.GRANTED)
    await proc.handle(event)

    assert rig.chain_state()["vault"] == before["vault"] - PRICE
    assert rig.ledger.balance(str(rig.user.pubkey())).total == grant_tokens()
    assert [next(iter(r)) for r in rig.replies()] == ["Status", "Transaction", "Status"]


async def test_closing_mid_settlement_leaves_the_request_to_resume(rig: Rig, proxy: FlakyProxy) -> None:
    event = rig.request()
    proxy.cut()
    proc = rig.processor(url=proxy.url, background=True)
    await proc.handle(event)
    await proc.aclose()
    row = rig.ledger.recharge(event.event_id)
    assert row is not None and not row.state.finished

    proxy.down = False
    await rig.processor(url=proxy.url).resume_unfinished()

    assert rig.ledger.balance(str(rig.user.pubkey())).total == grant_tokens()
