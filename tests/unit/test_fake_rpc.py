"""The fake JSON-RPC node's own behaviour (so a broken fake cannot make the client tests pass vacuously)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.fixtures.rpc import Drop, Error, FakeRpc, RawError, Result, post, reply_of


async def test_unknown_method_is_method_not_found(fake_rpc: FakeRpc) -> None:
    status, body = await post(fake_rpc.url, "getFooBar")
    assert status == 200
    assert body["error"]["code"] == -32601
    assert fake_rpc.methods() == ["getFooBar"]


async def test_scripted_replies_are_consumed_in_order_and_the_last_repeats(fake_rpc: FakeRpc) -> None:
    fake_rpc.script("getHealth", Result("a"), Error(-32005, "Node is unhealthy"), Result("ok"))
    answers = [(await post(fake_rpc.url, "getHealth"))[1] for _ in range(4)]
    assert [a.get("result", a.get("error", {}).get("code")) for a in answers] == ["a", -32005, "ok", "ok"]


async def test_drop_closes_the_connection_after_running_the_effect(fake_rpc: FakeRpc) -> None:
    seen: list[str] = []
    fake_rpc.script("sendTransaction", Drop(lambda: seen.append("landed")))
    with pytest.raises(aiohttp.ClientError):
        await post(fake_rpc.url, "sendTransaction", ["AA=="])
    assert seen == ["landed"]


async def test_a_raw_error_is_sent_exactly_as_given(fake_rpc: FakeRpc) -> None:
    fake_rpc.script("getHealth", RawError({"code": "not a number"}))
    assert (await post(fake_rpc.url, "getHealth"))[1]["error"] == {"code": "not a number"}


def test_fuzz_drawn_replies_map_to_scripted_ones() -> None:
    assert reply_of("result", 5) == Result(5)
    assert reply_of("error", {"code": -32005}) == RawError({"code": -32005})
    assert isinstance(reply_of("drop"), Drop)
    with pytest.raises(ValueError, match="unknown reply kind"):
        reply_of("teleport")
