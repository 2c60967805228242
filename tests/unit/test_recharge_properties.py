"""Whatever an event carries, ``RechargeProcessor.handle`` never raises and never grants without a pay."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from nostr_sdk import Keys
from solders.keypair import Keypair

from device.config import Config
from device.ledger import Ledger
from device.protocol import DEFAULT_SESSION, KIND, ZERO_EVENT_ID
from device.relay import IncomingEvent
from tests.fixtures.settlement import offline_processor

DEVICE = Keys.generate()
MACHINE = DEVICE.public_key().to_hex()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
payloads = st.one_of(
    st.text(max_size=60),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"user": st.sampled_from([str(Keypair().pubkey()), "x"]), "nonce": st.integers(-1, 3)},
        optional={"recover_info": st.text(max_size=30), "namespace_id": st.integers(-1, 2)},
    ).map(json.dumps),
)
messages = st.builds(
    lambda name, status, reason, initial, payload: json.dumps(
        {
            name: {
                "to_status": status,
                "status": status,
                "reason": reason,
                "initial_request": initial,
                "payload": payload,
            }
        }
    ),
    st.sampled_from(["Request", "Status", "Transaction", "Other"]),
    st.sampled_from(["Working", "Available", 2, "working"]),
    st.sampled_from(["UserRequest", "AdminRequest", "Reset", "LockFailed", "UserBehaviour", 1]),
    st.sampled_from([ZERO_EVENT_ID, "ab" * 32, "x"]),
    payloads,
)
contents = st.one_of(st.text(max_size=200), json_values.map(json.dumps), messages)
tag_lists = st.one_of(
    st.just((("s", DEFAULT_SESSION), ("p", MACHINE))),
    st.lists(st.lists(st.text(max_size=70), max_size=3).map(tuple), max_size=3).map(tuple),
)


@settings(max_examples=150)
@given(
    content=contents,
    tags=tag_lists,
    kind=st.sampled_from([KIND, 1]),
    event_id=st.sampled_from(["ef" * 32, "EF" * 32, ""]),
    author=st.sampled_from([Keys.generate().public_key().to_hex(), MACHINE]),
)
def test_handle_never_raises(
    content: str, tags: tuple[tuple[str, ...], ...], kind: int, event_id: str, author: str
) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "ledger.db") as ledger:
            event = IncomingEvent(event_id, author, 1_700_000_000, kind, tags, content, "ws://relay.test")
            async with offline_processor(ledger, device=DEVICE, config=Config()) as processor:
                await processor.handle(event)
                await processor.handle(event)
            assert ledger.check() == []
            with ledger._lock:
                conn = ledger._conn
                assert conn is not None
                assert conn.execute("SELECT count(*) FROM ops").fetchone() == (0,)

    asyncio.run(run())
