"""The relay package's smaller parts: backoff, OK classification, log codes, embedded and served relays."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from nostr_sdk import Keys

from device.relay import Backoff, EmbeddedRelay
from device.relay.embedded import RelayBindError
from device.relay.outbox import SendOutcome, ok_prefix
from tests.fixtures.error_codes import code_literals, documented_codes
from tests.fixtures.relay import ROOT, RelayProcess, event_id, make_event, peer

# ------------------------------------------------------------------------------------------- backoff


def test_backoff_doubles_up_to_the_cap() -> None:
    b = Backoff(initial=0.5, factor=2.0, cap=30.0, jitter=0.2)
    assert [b.delay(n, rand=0.0) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert b.delay(10**9, rand=0.0) == 30.0  # no overflow however long the outage


def test_backoff_jitter_only_shortens_and_stays_within_its_fraction() -> None:
    b = Backoff(initial=1.0, factor=2.0, cap=8.0, jitter=0.25)
    assert b.delay(3, rand=0.999999) == pytest.approx(6.0, rel=1e-5)
    samples = [b.delay(5) for _ in range(500)]
    assert all(6.0 <= s <= 8.0 for s in samples)
    assert len(set(samples)) > 400  # devices that lost the same relay do not retry in lockstep


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"factor": 0.5}, {"initial": 2.0, "cap": 1.0}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff(**kwargs)


# ----------------------------------------------------------------------------- OK-answer classification


def test_ok_prefix_reads_the_machine_readable_part() -> None:
    assert ok_prefix("blocked: not on the list") == "blocked"
    assert ok_prefix("Rate-Limited: slow down") == "rate-limited"
    assert ok_prefix("timeout") == ""


def test_send_outcome_classification() -> None:
    assert SendOutcome.from_results(["wss://a"], {"wss://b": "timeout"}).acked_by == "wss://a"
    assert SendOutcome.from_results([], {"wss://b": "duplicate: have it"}).acked_by == "wss://b"
    refused = SendOutcome.from_results([], {"wss://a": "invalid: bad sig", "wss://b": "timeout"})
    assert (refused.acked_by, refused.refused) == (None, True)
    assert refused.refusals == (("wss://a", "invalid: bad sig"),)
    assert refused.failures == (("wss://b", "timeout"),)
    busy = SendOutcome.from_results([], {"wss://a": "rate-limited: slow down"})
    assert (busy.refused, busy.refusals) == (False, (("wss://a", "rate-limited: slow down"),))
    silent = SendOutcome.from_results([], {"wss://a": "relay not connected"})
    assert not silent.refused and silent.failures and not silent.refusals


# ---------------------------------------------------------------------------------------------- codes


RELAY_LOG_CODES = {
    "relay_connected",
    "relay_reconnected",
    "relay_unreachable",
    "relay_subscribe_refused",
    "relay_catchup_incomplete",
    "relay_event_invalid",
    "relay_event_foreign",
    "relay_handler_failed",
    "relay_callback_failed",
    "relay_cursor_failed",
    "relay_published",
    "relay_publish_failed",
    "relay_publish_refused",
    "relay_outbox_invalid",
    "relay_bind_failed",
    "relay_authenticated",
    "relay_auth_refused",
    "relay_store_failed",
}


def test_every_code_the_relay_package_writes_is_documented_in_the_relay_link_section() -> None:
    written = code_literals(ROOT / "device" / "relay")
    assert written == RELAY_LOG_CODES  # the codes operators grep for: none lost, none added undocumented
    assert written <= documented_codes(section="Relay link")


# ------------------------------------------------------------------------------------- embedded relay


async def test_embedded_relay_lifecycle() -> None:
    relay = EmbeddedRelay()
    with pytest.raises(RuntimeError, match="not running"):
        _ = relay.url
    url = await relay.start()
    assert url.startswith("ws://127.0.0.1:") and not url.endswith(":0")
    assert await relay.start() == url  # idempotent
    event = make_event(Keys.generate(), machine=Keys.generate().public_key().to_hex())
    async with peer(url) as p:
        await p.publish(event)
        assert set(await p.fetch_ids([event_id(event)])) == {event_id(event)}
    await relay.stop()
    await relay.stop()
    assert not relay.running


async def test_embedded_relay_on_a_taken_port_fails_with_a_code() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        relay = EmbeddedRelay(port=taken.getsockname()[1])
        with pytest.raises(RelayBindError) as caught:
            await relay.start()
    assert caught.value.code == "relay_bind_failed"


async def test_embedded_relay_accepts_a_burst_without_rate_limiting() -> None:
    # nostr-sdk's default rate limit (~60 events/min) would refuse most of these.
    machine = Keys.generate().public_key().to_hex()
    events = [make_event(Keys.generate(), machine=machine, content=str(i)) for i in range(200)]
    async with EmbeddedRelay() as relay, peer(relay.url) as p:
        await asyncio.gather(*(p.publish(e) for e in events))


# ------------------------------------------------------------------------------------- served relay


async def test_served_relay_persists_events_across_a_restart(tmp_path: Path) -> None:
    relay = RelayProcess(lmdb=tmp_path / "lmdb")
    event = make_event(Keys.generate(), machine=Keys.generate().public_key().to_hex())
    try:
        await relay.start()
        async with peer(relay.url) as p:
            await p.publish(event)
        await relay.restart()
        async with peer(relay.url) as p:
            assert set(await p.fetch_ids([event_id(event)])) == {event_id(event)}
    finally:
        await relay.stop()
    assert relay.exit_codes == [0, 0]  # clean exits, no segfault at interpreter exit


async def test_served_relay_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device.relay.serve",
            str(taken.getsockname()[1]),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert err.decode().startswith("relay_bind_failed: cannot listen on 127.0.0.1:")
