"""The official ``openai`` client talks to the device over its Unix socket (httpx transport)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from tests.fixtures.chat import Device, sock_dir, start_device, stop_device

openai = pytest.importorskip("openai", reason="the openai package is not installed (test extra)")


def _http_module() -> object:
    """The HTTP library this openai release is built on (``httpx``, or ``httpx2`` from openai 3)."""
    for name in ("httpx2", "httpx"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip("neither httpx nor httpx2 is installed")


httpx: Any = _http_module()

__all__ = ["sock_dir"]


@pytest.fixture
async def device(tiny_model: Path, sock_dir: Path, state_dir: Path) -> AsyncIterator[Device]:
    dev = await start_device(tiny_model, sock_dir, state_dir)
    yield dev
    await stop_device(dev)


def client(dev: Device, api_key: str) -> Any:
    transport = httpx.AsyncHTTPTransport(uds=str(dev.socket_path))
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url="http://device/v1",
        http_client=httpx.AsyncClient(transport=transport),
        max_retries=0,
    )


async def test_openai_client_streams_a_chat_with_usage(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1000)
    async with client(device, device.token(user)) as ai:
        stream = await ai.chat.completions.create(
            model="anything",
            messages=[{"role": "user", "content": "hello there"}],
            max_tokens=6,
            stream=True,
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
    assert text == " m" * 6
    assert usage is not None and usage.completion_tokens == 6
    assert device.ledger.balance(str(user.pubkey())).total == 1000 - usage.total_tokens


async def test_openai_client_sees_a_bad_token_as_authentication_error(device: Device) -> None:
    async with client(device, "sk-not-a-device-token") as ai:
        with pytest.raises(openai.AuthenticationError) as info:
            await ai.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "unauthorized"
