"""Fuzz the chat server over its Unix socket: headers, content types, bodies, sizes, routes.

One real service (tiny GGUF, real llama.cpp, real ledger) runs on its own event loop thread for the
module; requests are sent with ``http.client`` over AF_UNIX so every header and byte is ours.
Properties, per request:

* every non-2xx answer is OpenAI-shaped JSON ``{"error": {"message", "type", "param", "code"}}`` with
  a documented chat code and the HTTP status that code maps to -- except HTTP framing errors that
  aiohttp's parser answers before the application runs (bad ``Content-Length``), which must still
  be 4xx; ``internal_error`` (the catch-all for an unexpected exception) is a crash;
* refused requests leave the ledger unchanged (no tokens debited, nothing left reserved); a 200
  debits exactly its ``usage.total_tokens``;
* the server stays up (``/healthz`` answers after every request).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from solders.keypair import Keypair

from device.chat.auth import issue_token
from device.chat.openai import http_status
from tests.fixtures.chat import ThreadedChatServer, threaded_chat_server
from tests.fuzz import DOCUMENTED, TALLY, fuzz_settings
from tests.fuzz import strategies as fs
from tests.fuzz.strategies import ChatCall

MAX_BODY = 4096
CHAT_CODES = (
    frozenset(
        {
            "unauthorized",
            "insufficient_balance",
            "context_length_exceeded",
            "bad_request",
            "invalid_request",
            "request_too_large",
            "busy",
            "user_busy",
            "ledger_unavailable",
            "not_found",
            "method_not_allowed",
            "inference_failed",
            "model_not_loaded",
        }
    )
    & DOCUMENTED
)
TARGET = "chat.http"


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[ThreadedChatServer]:
    with threaded_chat_server(tiny_model, max_body=MAX_BODY) as running:
        yield running


def authorization(server: ThreadedChatServer, recipe: str, user: Keypair) -> str | None:
    if recipe == "none":
        return None
    if not recipe.startswith("valid"):
        return recipe
    mutation = recipe.partition(":")[2]
    if mutation == "expired":
        token = issue_token(user, server.machine, ttl_seconds=60, now=time.time() - 3600)
    elif mutation == "long-ttl":
        token = issue_token(user, server.machine, ttl_seconds=10**7)
    elif mutation == "other-machine":
        token = issue_token(user, "cd" * 32, ttl_seconds=600)
    else:
        token = issue_token(user, server.machine, ttl_seconds=600)
    return {
        "": f"Bearer {token}",
        "lower-scheme": f"bearer {token}",
        "no-scheme": token,
        "basic": f"Basic {token}",
        "flip": f"Bearer {token[:-3]}{'A' if token[-3] != 'A' else 'B'}{token[-2:]}",
        "truncate": f"Bearer {token[:-5]}",
        "double": f"Bearer {token} {token}",
        "spaces": f"   Bearer    {token}   ",
        "tab": f"Bearer\t{token}",
    }.get(mutation, f"Bearer {token}")


def _sse_events(body: bytes) -> list[Any]:
    events = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: "):
            data = line[6:].strip()
            events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


def check_error_body(status: int, body: bytes) -> str:
    """The code of an OpenAI-shaped error body; fails the test for anything else."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"HTTP {status} with a non-JSON body {body[:200]!r}") from None
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    error = doc["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str), error
    assert error["param"] is None or isinstance(error["param"], str), error
    code = error["code"]
    if code not in CHAT_CODES:
        raise AssertionError(f"HTTP {status} with undocumented code {code!r}: {error['message']}")
    assert http_status(code)[0] == status, (code, status)
    return str(code)


@fuzz_settings(300, long_examples=20_000)
@given(call=fs.chat_requests(max_body_bytes=MAX_BODY), rich=st.booleans())
@example(
    call=ChatCall(
        "POST",
        "/v1/chat/completions",
        "valid",
        "application/json",
        b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}',
    ),
    rich=True,
)
@example(
    call=ChatCall(
        "POST",
        "/v1/chat/completions",
        "valid",
        "application/json",
        b'{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":2}',
    ),
    rich=True,
)
@example(  # found by the long run: a list as role crashed with TypeError (unhashable type)
    call=ChatCall(
        "POST",
        "/v1/chat/completions",
        "valid",
        "application/json",
        b'{"messages":[{"role":["user"],"content":null}]}',
    ),
    rich=True,
)
@example(  # nested 3,000 deep: RecursionError in the JSON decoder
    call=ChatCall(
        "POST",
        "/v1/chat/completions",
        "valid",
        "application/json",
        b'{"messages":' + b"[" * 1500 + b"]" * 1500 + b"}",
    ),
    rich=True,
)
@example(call=ChatCall("POST", "/v1/chat/completions", "valid", None, b"{", "abc"), rich=True)
@example(call=ChatCall("POST", "/v1/chat/completions", "valid", None, b"{}", str(10**12)), rich=True)
def test_chat_requests(server: ThreadedChatServer, call: ChatCall, rich: bool) -> None:
    user = server.rich if rich else server.broke
    auth = authorization(server, call.auth, user)
    before = server.ledger.balance(str(user.pubkey()))
    TALLY.tried(TARGET)
    try:
        status, headers, body = server.request(call, auth)
    except (OSError, http.client.HTTPException) as exc:
        TALLY.crash(TARGET, exc)
        raise AssertionError(f"no answer from the chat server: {exc!r}") from exc
    try:
        if not server.healthy():
            raise AssertionError("the chat server stopped answering /healthz")
        after = server.ledger.balance(str(user.pubkey()))
        assert after.reserved == 0, after
        if status == 200 and call.path == "/v1/chat/completions":
            if headers.get("content-type", "").startswith("text/event-stream"):
                events = _sse_events(body)
                assert events[-1] == "[DONE]", events[-3:]
                for event in events[:-1]:
                    if "error" in event:  # in-band error after the headers went out
                        code = event["error"]["code"]
                        if code == "internal_error" or code not in CHAT_CODES:
                            raise AssertionError(f"in-band stream error {event['error']}")
                usages = [e["usage"] for e in events[:-1] if isinstance(e, dict) and e.get("usage")]
                used = usages[-1]["total_tokens"] if usages else 0
            else:
                used = json.loads(body)["usage"]["total_tokens"]
            assert before.total - after.total == used, (before, after, used)
            TALLY.accepted(TARGET)
        elif 200 <= status < 300:
            assert after.total == before.total
            TALLY.accepted(TARGET)
        else:
            assert after.total == before.total, (
                f"HTTP {status} but {before.total - after.total} tokens debited"
            )
            if body.startswith(b"{"):
                code = check_error_body(status, body)
            else:
                # aiohttp's HTTP parser refused the framing before any application code ran.
                assert 400 <= status < 500 and call.declared_length is not None, (status, body[:200])
                code = "(http_framing)"
            TALLY.refused(TARGET, code)
    except AssertionError as exc:
        if "internal_error" in str(exc) or "stopped answering" in str(exc):
            TALLY.crash(TARGET, exc)
        else:
            TALLY.unexpected(TARGET, exc)
        raise
