"""The chat server end to end: real tiny GGUF, real llama.cpp, real ledger, real aiohttp on a Unix socket."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path
from typing import Any

import aiohttp
from nostr_sdk import Keys
from solders.keypair import Keypair

from device.chat.auth import issue_token
from device.chat.server import ChatService
from device.inference import ChatMessage, Engine
from device.ledger import Ledger
from device.nostr_events import EventSigner
from device.protocol import Transaction
from device.state import Activity, StateHub
from tests.fixtures.chat import (
    HELLO,
    Device,
    chat,
    debits,
    device,
    llama_cpp_prompt_tokens,
    make_config,
    sock_dir,
    start_device,
    stop_device,
    stream_events,
)

__all__ = ["device", "sock_dir"]  # fixtures used by name below


# ---------------------------------------------------------------------------------------- completions


async def test_completion_usage_matches_llama_cpp_and_is_debited(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1000)
    status, body = await chat(device, user, {"messages": HELLO, "max_tokens": 10})
    assert status == 200, body
    usage = body["usage"]
    assert usage["prompt_tokens"] == await llama_cpp_prompt_tokens(device, HELLO)
    assert usage["completion_tokens"] == 10
    assert body["choices"][0]["message"]["content"] == " m" * 10
    assert device.ledger.balance(str(user.pubkey())).total == 1000 - usage["total_tokens"]
    assert body["xephy"]["balance"] == 1000 - usage["total_tokens"]


async def test_debit_is_published_as_a_signed_negative_transaction(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1000)
    _, body = await chat(device, user, {"messages": HELLO, "max_tokens": 10})
    assert debits(device, user) == [
        Transaction(user=str(user.pubkey()), tokens=-body["usage"]["total_tokens"])
    ]
    assert device.notified == [1]


async def test_streamed_usage_equals_non_streamed_and_the_debit(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1000)
    _, plain = await chat(device, user, {"messages": HELLO, "max_tokens": 10})
    events = await stream_events(device, user, {"messages": HELLO, "max_tokens": 10})
    assert events[-1] == "[DONE]"
    last = events[-2]
    assert last["choices"] == []
    assert {k: last["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == {
        k: plain["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-2] if e["choices"])
    assert text == " m" * 10
    assert [d.tokens for d in debits(device, user)] == [-plain["usage"]["total_tokens"]] * 2


async def test_cached_tokens_count_only_the_users_own_earlier_turns(device: Device) -> None:
    alice, bob = Keypair(), Keypair()
    device.fund(alice, 1000)
    device.fund(bob, 1000)
    secret = [{"role": "user", "content": "my number is the time of day"}]
    _, first = await chat(device, alice, {"messages": secret, "max_tokens": 3})
    _, probe = await chat(device, bob, {"messages": secret, "max_tokens": 3})
    _, again = await chat(device, alice, {"messages": secret, "max_tokens": 3})

    def cached(body: dict[str, Any]) -> int:
        return int(body["usage"]["prompt_tokens_details"]["cached_tokens"])

    opening = device.engine.template_opening_tokens  # the template's own text, the same for everybody
    assert (cached(first), cached(probe)) == (opening, opening)  # bob learns nothing from alice's prompt
    assert cached(again) == again["usage"]["prompt_tokens"] - 1  # alice's own reuse survived bob's turn


async def test_zero_balance_is_refused_before_anything_runs(device: Device) -> None:
    user = Keypair()
    status, body = await chat(device, user, {"messages": HELLO})
    assert (status, body["error"]["code"]) == (402, "insufficient_balance")
    assert all(s.activity is Activity.IDLE for s in device.states)
    assert debits(device, user) == []


async def test_budget_running_out_stops_at_exactly_the_budget(device: Device) -> None:
    user = Keypair()
    prompt = await llama_cpp_prompt_tokens(device, HELLO)
    device.fund(user, prompt + 5)
    status, body = await chat(device, user, {"messages": HELLO, "max_tokens": 50})
    assert status == 200, body
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["xephy"] == {"stopped_by": "budget", "balance": 0}
    assert device.ledger.balance(str(user.pubkey())).total == 0


async def test_prompt_longer_than_the_context_is_refused(device: Device) -> None:
    user = Keypair()
    device.fund(user, 100_000)
    long = [{"role": "user", "content": "hello " * 600}]
    status, body = await chat(device, user, {"messages": long})
    assert (status, body["error"]["code"]) == (400, "context_length_exceeded")
    assert device.ledger.balance(str(user.pubkey())).total == 100_000


async def test_concurrent_chats_of_one_user_never_overspend(device: Device) -> None:
    user = Keypair()
    prompt = await llama_cpp_prompt_tokens(device, HELLO)
    device.fund(user, 3 * prompt + 20)
    results = await asyncio.gather(
        *(chat(device, user, {"messages": HELLO, "max_tokens": 40}) for _ in range(6))
    )
    charged = sum(b["usage"]["total_tokens"] for s, b in results if s == 200)
    refused = [b["error"]["code"] for s, b in results if s != 200]
    assert set(refused) <= {"insufficient_balance", "user_busy"}  # one generating + one waiting per user
    balance = device.ledger.balance(str(user.pubkey()))
    assert balance.total == 3 * prompt + 20 - charged >= 0
    assert -sum(d.tokens for d in debits(device, user)) == charged


async def test_client_disconnect_mid_stream_is_charged_only_what_was_generated(
    tiny_random_model: Path, sock_dir: Path, state_dir: Path
) -> None:
    dev = await start_device(tiny_random_model, sock_dir, state_dir, n_ctx=2048, max_tokens=1900)
    try:
        user = Keypair()
        device_user = str(user.pubkey())
        dev.fund(user, 10_000)
        prompt = await llama_cpp_prompt_tokens(dev, HELLO)
        async with dev.client() as http:
            resp = await http.post(
                "/v1/chat/completions",
                json={"messages": HELLO, "stream": True, "max_tokens": 1900},
                headers={"Authorization": f"Bearer {dev.token(user)}"},
            )
            received = 0
            async for line in resp.content:
                if b'"content"' in line:
                    received += 1
                if received >= 3:
                    break
            resp.close()
        for _ in range(200):
            if dev.ledger.balance(device_user).reserved == 0:
                break
            await asyncio.sleep(0.02)
        (debit,) = debits(dev, user)
        used = -debit.tokens
        assert prompt + 2 <= used < prompt + 1900
        assert dev.ledger.balance(device_user).total == 10_000 - used
    finally:
        await stop_device(dev)


# ----------------------------------------------------------------------------------------------- auth


async def test_forged_token_is_unauthorized(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1000)
    token = device.token(user)
    forged = token.replace(str(user.pubkey()), str(Keypair().pubkey()))
    status, body = await chat(device, user, {"messages": HELLO}, token=forged)
    assert (status, body["error"]["code"], body["error"]["type"]) == (
        401,
        "unauthorized",
        "authentication_error",
    )


async def test_expired_token_is_unauthorized(device: Device) -> None:
    user = Keypair()
    token = issue_token(user, device.machine, ttl_seconds=10, now=1_000_000)
    status, body = await chat(device, user, {"messages": HELLO}, token=token)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert "expired" in body["error"]["message"]


async def test_token_for_another_machine_is_unauthorized(device: Device) -> None:
    user = Keypair()
    token = issue_token(user, "ef" * 32, ttl_seconds=600)
    status, body = await chat(device, user, {"messages": HELLO}, token=token)
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_balance_reports_only_the_callers_tokens(device: Device) -> None:
    alice, bob = Keypair(), Keypair()
    device.fund(alice, 700)
    device.fund(bob, 5)
    async with device.client() as http:
        resp = await http.get("/v1/balance", headers={"Authorization": f"Bearer {device.token(bob)}"})
        body = await resp.json()
    assert (body["user"], body["total"], body["available"]) == (str(bob.pubkey()), 5, 5)


# ------------------------------------------------------------------------------------------- limits


async def test_oversized_body_is_413(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1_000_000)
    big = [{"role": "user", "content": "x" * 70_000}]
    status, body = await chat(device, user, {"messages": big})
    assert (status, body["error"]["code"]) == (413, "request_too_large")


async def test_malformed_request_is_400_naming_the_field(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1_000)
    status, body = await chat(device, user, {"messages": HELLO, "max_tokens": -1})
    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "bad_request", "max_tokens")


async def test_full_waiting_queue_answers_429_busy(tiny_model: Path, sock_dir: Path, state_dir: Path) -> None:
    dev = await start_device(tiny_model, sock_dir, state_dir, max_waiting=0)
    try:
        user = Keypair()
        dev.fund(user, 1000)
        prompt = await dev.engine.prompt_tokens([ChatMessage("user", "hi")])
        blocker = dev.engine.generate(
            prompt, user=str(user.pubkey()), max_tokens=400, budget=400
        )  # unread: holds the worker
        async for _ in blocker:
            break
        first = asyncio.create_task(chat(dev, user, {"messages": HELLO, "max_tokens": 5}))
        for _ in range(200):
            if dev.service.in_flight == 1:
                break
            await asyncio.sleep(0.01)
        status, body = await chat(dev, user, {"messages": HELLO, "max_tokens": 5})
        assert (status, body["error"]["code"], body["error"]["type"]) == (429, "busy", "rate_limit_error")
        await blocker.aclose()
        status, body = await first
        assert status == 200, body
    finally:
        await stop_device(dev)


# ---------------------------------------------------------------------------------------- endpoints


async def test_models_lists_the_loaded_model(device: Device) -> None:
    async with device.client() as http:
        resp = await http.get("/v1/models", headers={"Authorization": f"Bearer {device.token(Keypair())}"})
        body = await resp.json()
    assert [m["id"] for m in body["data"]] == [device.engine.model_name]


async def test_healthz_names_the_machine_without_auth(device: Device) -> None:
    async with device.client() as http:
        body = await (await http.get("/healthz")).json()
    assert (body["status"], body["machine"]) == ("ok", device.machine)


async def test_socket_gets_the_configured_mode(device: Device) -> None:
    assert stat.S_IMODE(device.socket_path.stat().st_mode) == 0o660


async def test_serves_on_a_socket_handed_in_by_socket_activation(
    tiny_model: Path, sock_dir: Path, state_dir: Path
) -> None:
    path = sock_dir / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    listener.setblocking(False)
    config = make_config(sock_dir / "unused.sock", state_dir)
    keys = Keys.generate()
    ledger = Ledger.open(state_dir / "ledger.sqlite3")
    engine = Engine(tiny_model, n_ctx=512, n_threads=1)
    signer = EventSigner(keys, session="test", machine_pubkey=str(keys.public_key().to_hex()))
    service = ChatService(config, ledger, engine, signer, StateHub(), lambda: None, sock=listener)
    await service.start()
    try:
        connector = aiohttp.UnixConnector(path=str(path))
        async with aiohttp.ClientSession(connector=connector) as http:
            assert (await http.get("http://device/healthz")).status == 200
        assert not (sock_dir / "unused.sock").exists()
    finally:
        await service.stop()
        await engine.close()
        ledger.close()
