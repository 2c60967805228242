"""The chat server under attack: admission before cost, hostile bodies, stalled connections, a locked ledger.

Real tiny GGUF, real llama.cpp, real ledger file, real aiohttp on a Unix socket; the lock on the ledger is
held by another process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

from solders.keypair import Keypair

from device.inference import ChatMessage
from tests.fixtures.chat import (
    HELLO,
    Device,
    chat,
    debits,
    device,
    llama_cpp_prompt_tokens,
    sock_dir,
    start_device,
    stop_device,
)
from tests.fixtures.ledger_lock import LedgerLockHolder

__all__ = ["device", "sock_dir"]  # the fixtures, imported for pytest


def raw_request(path: Path, data: bytes, *, read_within: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it or answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(read_within)
        conn.connect(str(path))
        conn.sendall(data)
        return conn.recv(65_536)


def closed_by_server(conn: socket.socket) -> bool:
    """True when the server closed or reset ``conn`` (it sent nothing else)."""
    conn.settimeout(1.0)
    try:
        return conn.recv(100) == b""
    except ConnectionResetError:
        return True


def post_headers(token: str, length: int) -> bytes:
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: device\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def healthz_seconds(dev: Device) -> float:
    async with dev.client() as http:
        started = time.monotonic()
        resp = await http.get("/healthz")
        assert resp.status == 200
        await resp.json()
        return time.monotonic() - started


async def blocked_worker(dev: Device) -> Any:
    """A generation that holds the inference worker until closed (its deltas are never read)."""
    prompt = await dev.engine.prompt_tokens([ChatMessage("user", "hi")])
    blocker = dev.engine.generate(prompt, max_tokens=400, budget=400)
    async for _ in blocker:
        break
    return blocker


# ----------------------------------------------------------------------------------- admission before cost
async def test_a_user_who_cannot_pay_one_token_is_refused_before_the_body_is_read(device: Device) -> None:
    user = Keypair()
    # the header announces 60 KB that never come: the answer must not wait for them
    answer = await asyncio.to_thread(
        raw_request, device.socket_path, post_headers(device.token(user), 60_000), read_within=2.0
    )
    assert answer.startswith(b"HTTP/1.1 402"), answer[:200]
    assert b'"insufficient_balance"' in answer


async def test_a_body_larger_than_the_balance_could_ever_pay_for_is_refused(device: Device) -> None:
    user = Keypair()
    device.fund(user, 5)
    big = [{"role": "user", "content": "x" * 6_000}]  # over 4096 bytes + 256 per available token
    status, body = await chat(device, user, {"messages": big})
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert "5 available tokens" in body["error"]["message"]
    assert device.ledger.balance(str(user.pubkey())).total == 5


async def test_unfunded_requests_never_take_a_place_in_the_queue(
    tiny_model: Path, sock_dir: Path, state_dir: Path
) -> None:
    dev = await start_device(tiny_model, sock_dir, state_dir, max_waiting=0)
    try:
        honest = Keypair()
        dev.fund(honest, 1_000)
        blocker = await blocked_worker(dev)
        flood = await asyncio.gather(*(chat(dev, Keypair(), {"messages": HELLO}) for _ in range(30)))
        assert {(status, body["error"]["code"]) for status, body in flood} == {(402, "insufficient_balance")}
        assert dev.service.in_flight == 0
        waiting = asyncio.create_task(chat(dev, honest, {"messages": HELLO, "max_tokens": 5}))
        await asyncio.sleep(0.2)
        await blocker.aclose()
        status, body = await waiting
        assert status == 200, body
    finally:
        await stop_device(dev)


async def test_one_user_has_at_most_one_chat_generating_and_one_waiting(
    tiny_model: Path, sock_dir: Path, state_dir: Path
) -> None:
    dev = await start_device(tiny_model, sock_dir, state_dir)
    try:
        user = Keypair()
        dev.fund(user, 10_000)
        blocker = await blocked_worker(dev)
        first = [asyncio.create_task(chat(dev, user, {"messages": HELLO, "max_tokens": 5})) for _ in range(2)]
        for _ in range(200):
            if dev.service.in_flight == 2:
                break
            await asyncio.sleep(0.01)
        status, body = await chat(dev, user, {"messages": HELLO, "max_tokens": 5})
        assert (status, body["error"]["code"]) == (429, "user_busy")
        other = Keypair()
        dev.fund(other, 10_000)
        third = asyncio.create_task(chat(dev, other, {"messages": HELLO, "max_tokens": 5}))
        await asyncio.sleep(0.1)
        await blocker.aclose()
        assert [(await t)[0] for t in [*first, third]] == [200, 200, 200]
    finally:
        await stop_device(dev)


# ------------------------------------------------------------------------------------------ hostile bodies
async def test_json_nested_thousands_deep_is_400_invalid_request(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1_000_000)
    nested = '{"messages":' + "[" * 5_000 + "]" * 5_000 + "}"
    async with device.client() as http:
        resp = await http.post(
            "/v1/chat/completions",
            data=nested,
            headers={"Authorization": f"Bearer {device.token(user)}", "Content-Type": "application/json"},
        )
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_request"


async def test_a_role_that_is_a_list_is_400_naming_the_field(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1_000)
    status, body = await chat(device, user, {"messages": [{"role": ["user"], "content": None}]})
    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "bad_request", "messages[0].role")


# ------------------------------------------------------------------------------------- connection limits
async def test_stalled_connections_are_capped_and_timed_out_while_honest_chat_is_served(
    tiny_model: Path, sock_dir: Path, state_dir: Path
) -> None:
    dev = await start_device(tiny_model, sock_dir, state_dir, max_connections=8, header_timeout_seconds=1.0)
    stalled: list[socket.socket] = []
    try:
        for _ in range(12):  # half a header each, then silence
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(dev.socket_path))
            conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: dev")
            stalled.append(conn)
        await asyncio.sleep(0.2)
        assert dev.service.connections.open_connections == 8
        assert dev.service.connections.refused == 4
        await asyncio.sleep(1.5)  # past the header deadline: every stalled connection is closed
        assert dev.service.connections.open_connections == 0
        assert all(closed_by_server(conn) for conn in stalled)
        user = Keypair()
        dev.fund(user, 1_000)
        status, body = await chat(dev, user, {"messages": HELLO, "max_tokens": 5})
        assert status == 200, body
    finally:
        for conn in stalled:
            conn.close()
        await stop_device(dev)


# ----------------------------------------------------------------------------------------- a locked ledger
async def test_a_ledger_locked_mid_stream_serves_no_free_token_and_never_blocks_healthz(
    tiny_model: Path, sock_dir: Path, state_dir: Path
) -> None:
    dev = await start_device(tiny_model, sock_dir, state_dir, n_ctx=2048, max_tokens=1900, busy_timeout_s=0.5)
    holder = LedgerLockHolder(state_dir / "ledger.sqlite3")
    try:
        user = Keypair()
        device_user = str(user.pubkey())
        dev.fund(user, 10_000)
        prompt = await llama_cpp_prompt_tokens(dev, HELLO)
        delivered, errors, health = 0, [], []
        async with dev.client() as http:
            resp = await http.post(
                "/v1/chat/completions",
                json={"messages": HELLO, "stream": True, "max_tokens": 1900},
                headers={"Authorization": f"Bearer {dev.token(user)}"},
            )
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    errors.append(event["error"]["code"])
                elif event["choices"] and event["choices"][0]["delta"].get("content"):
                    delivered += event["choices"][0]["delta"]["content"].count(" m")  # one token each
                    if delivered == 1:
                        await asyncio.to_thread(holder.lock)
                        health += [await healthz_seconds(dev) for _ in range(5)]
        assert errors == ["ledger_unavailable"]
        assert max(health) < 0.1, health
        for _ in range(100):  # the debit is waiting for the ledger: new chats are refused
            if not dev.service.meter.writable:
                break
            await asyncio.sleep(0.05)
        status, body = await chat(dev, user, {"messages": HELLO, "max_tokens": 5})
        assert (status, body["error"]["code"]) == (503, "ledger_unavailable")
        assert max([await healthz_seconds(dev) for _ in range(5)]) < 0.1

        await asyncio.to_thread(holder.unlock)
        for _ in range(200):
            if dev.service.meter.writable:
                break
            await asyncio.sleep(0.05)
        assert dev.service.meter.writable
        (debit,) = debits(dev, user)
        completion = -debit.tokens - prompt
        assert delivered <= completion < 1900  # every delivered token is charged: free tokens 0
        assert dev.ledger.balance(device_user).total == 10_000 + debit.tokens
        assert dev.ledger.open_holds() == []
        status, body = await chat(dev, user, {"messages": HELLO, "max_tokens": 5})
        assert status == 200, body
    finally:
        holder.close()
        await stop_device(dev)


async def test_kept_alive_connections_close_when_idle_or_when_a_follow_up_header_stalls(
    tiny_model: Path, sock_dir: Path, state_dir: Path
) -> None:
    dev = await start_device(
        tiny_model, sock_dir, state_dir, header_timeout_seconds=0.5, keepalive_timeout_seconds=1.5
    )
    request = b"GET /healthz HTTP/1.1\r\nHost: device\r\n\r\n"
    try:
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalling,
        ):
            for conn in (idle, stalling):
                conn.connect(str(dev.socket_path))
                conn.sendall(request)
                conn.settimeout(2.0)
                assert (await asyncio.to_thread(conn.recv, 65_536)).startswith(b"HTTP/1.1 200")
            stalling.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # half a follow-up header
            await asyncio.sleep(1.0)  # past the header deadline, within the keep-alive timeout
            assert await asyncio.to_thread(closed_by_server, stalling)
            assert dev.service.connections.open_connections == 1
            await asyncio.sleep(1.0)  # past the keep-alive timeout
            assert await asyncio.to_thread(closed_by_server, idle)
            assert dev.service.connections.open_connections == 0
    finally:
        await stop_device(dev)
