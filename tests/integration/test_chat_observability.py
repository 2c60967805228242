"""llama-server parity on the chat socket: ``/health``, Prometheus ``/metrics``, unsupported fields refused.

``/metrics`` is fetched with ``curl --unix-socket`` as an operator would, and parsed with
``prometheus_client``'s own text parser.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from device.state import ChainStatus, LinkStatus
from tests.fixtures.chat import HELLO, Device, chat, sock_dir, start_device, stop_device

parser = pytest.importorskip(
    "prometheus_client.parser", reason="prometheus_client is not installed (test extra)"
)

__all__ = ["sock_dir"]


@pytest.fixture
async def device(tiny_model: Path, sock_dir: Path, state_dir: Path) -> AsyncIterator[Device]:
    dev = await start_device(tiny_model, sock_dir, state_dir, metrics=True)
    yield dev
    await stop_device(dev)


async def curl(dev: Device, path: str) -> tuple[int, str]:
    """``curl --unix-socket SOCK http://device/PATH``: (HTTP status, body)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    argv = [
        "curl",
        "-sS",
        "--unix-socket",
        str(dev.socket_path),
        "-w",
        "\n%{http_code}",
        f"http://device{path}",
    ]
    done = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=30, check=True
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_health_answers_like_llama_server(device: Device) -> None:
    assert await curl(device, "/health") == (200, '{"status": "ok"}')


async def test_metrics_parse_as_prometheus_text_and_count_what_was_served(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1000)
    status, body = await chat(device, user, {"messages": HELLO, "max_tokens": 5})
    assert status == 200, body
    device.hub.update(relay=LinkStatus.READY, chain=ChainStatus.REACHABLE)

    status, text = await curl(device, "/metrics")
    assert status == 200
    got = samples(text)
    usage = body["usage"]
    assert got[("llamacpp:prompt_tokens_total", ())] == usage["prompt_tokens"]
    assert got[("llamacpp:tokens_predicted_total", ())] == usage["completion_tokens"] == 5
    assert got[("llamacpp:predicted_tokens_seconds", ())] > 0
    assert got[("llamacpp:requests_processing", ())] == 0
    assert got[("llamacpp:requests_deferred", ())] == 0
    assert got[("xephy_tokens_granted_total", ())] == 1000
    assert got[("xephy_tokens_debited_total", ())] == usage["total_tokens"]
    assert got[("xephy_balance_tokens", ())] == 1000 - usage["total_tokens"]
    assert got[("xephy_recharges", (("state", "granted"),))] == 0
    assert got[("xephy_relay_state", (("state", "ready"),))] == 1
    assert got[("xephy_relay_state", (("state", "connecting"),))] == 0
    assert got[("xephy_rpc_state", (("state", "reachable"),))] == 1


async def test_metrics_are_off_by_default(tiny_model: Path, sock_dir: Path, state_dir: Path) -> None:
    dev = await start_device(tiny_model, sock_dir, state_dir)
    try:
        status, body = await curl(dev, "/metrics")
    finally:
        await stop_device(dev)
    assert status == 501 and '"not_supported"' in body and "chat.metrics" in body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        ("tool_choice", "auto"),
        ("response_format", {"type": "json_object"}),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("logit_bias", {"42": 10}),
        ("frequency_penalty", 0.5),
    ],
)
async def test_unsupported_fields_are_refused_naming_the_field_and_nothing_is_charged(
    device: Device, field: str, value: Any
) -> None:
    user = Keypair()
    device.fund(user, 1000)
    status, body = await chat(device, user, {"messages": HELLO, "max_tokens": 3, field: value})
    assert status == 400
    assert body["error"]["code"] == "unsupported_field" and body["error"]["param"] == field
    assert field in body["error"]["message"]
    assert device.ledger.balance(str(user.pubkey())).total == 1000


@pytest.mark.parametrize(
    ("field", "value"),
    [("tools", []), ("tool_choice", "none"), ("response_format", {"type": "text"}), ("logprobs", False),
     ("frequency_penalty", 0), ("presence_penalty", 0.0), ("tools", None)],
)  # fmt: skip
async def test_the_not_used_value_of_an_unsupported_field_is_accepted(
    device: Device, field: str, value: Any
) -> None:
    user = Keypair()
    device.fund(user, 1000)
    status, body = await chat(device, user, {"messages": HELLO, "max_tokens": 2, field: value})
    assert status == 200, body


async def test_raw_completions_are_a_documented_404_pointing_at_chat_completions(device: Device) -> None:
    user = Keypair()
    device.fund(user, 1000)
    async with device.client() as http:
        resp = await http.post(
            "/v1/completions",
            json={"prompt": "Once upon a time", "max_tokens": 4},
            headers={"Authorization": f"Bearer {device.token(user)}"},
        )
        body = await resp.json()
    assert resp.status == 404
    assert body["error"]["code"] == "not_found" and "/v1/chat/completions" in body["error"]["message"]
    assert device.ledger.balance(str(user.pubkey())).total == 1000
