"""``xephy-device doctor`` against a temporary state dir, the localnet stand-in and a real websocket."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from solders.keypair import Keypair

from device.commands.doctor import cmd_doctor
from device.config import Config, load_config
from device.doctor import CheckResult, Doctor, Status
from device.keys import KeyStore
from device.localnet import LocalnetServer, bootstrap_namespace


@dataclass
class World:
    state: Path
    rpc_url: str
    namespace_id: int
    relay_url: str
    tmp: Path

    def config(self, extra: str = "", *, relay: str | None = None, namespace: int | None = None) -> Config:
        path = self.tmp / "config.yaml"
        ns = self.namespace_id if namespace is None else namespace
        path.write_text(
            f"device:\n  state_dir: {self.state}\n"
            f"nostr:\n  relays: [{relay or self.relay_url}]\n"
            f"solana:\n  rpc_url: {self.rpc_url}\n  namespace_id: {ns}\n" + extra
        )
        return load_config(path)


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close()
    return ws


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    state = tmp_path / "state"
    keys, _ = KeyStore(state).init()
    state.chmod(0o700)
    app = web.Application()
    app.router.add_get("/", _ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    chat = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    chat.bind(str(state / "chat.sock"))
    (state / "chat.sock").chmod(0o660)
    async with LocalnetServer(port=0, state_file=None, extra_programs={}) as server:
        ns = await bootstrap_namespace(server.chain, Keypair(), keys.bot_pubkey, Keypair().pubkey(), "Gacha")
        yield World(state, server.url, ns, f"ws://127.0.0.1:{port}/", tmp_path)
    chat.close()
    await runner.cleanup()


async def rows_of(config: Config, *, quick: bool = True, **kw: object) -> dict[str, CheckResult]:
    doctor = Doctor(config, config_source="test", environ={}, quick=quick, timeout=3.0, **kw)  # type: ignore[arg-type]
    return {row.name.split(" ")[0]: row for row in await doctor.run()}


async def test_healthy_device_has_only_ok_rows(world: World) -> None:
    rows = await rows_of(world.config())
    assert {name: row.status for name, row in rows.items()} == {
        name: Status.OK
        for name in (
            "config",
            "keys",
            "state",
            "model",
            "memory",
            "gpio",
            "serial",
            "relay",
            "rpc",
            "chat",
            "clock",
        )
    }
    assert "bot registered in namespace 'Gacha'" in rows["rpc"].detail
    assert "RPC server's clock" in rows["clock"].detail


async def test_group_readable_key_is_a_fail_row_with_chmod_hint(world: World) -> None:
    (world.state / "nostr.key").chmod(0o644)
    rows = await rows_of(world.config())
    assert rows["keys"].status is Status.FAIL
    assert "key_permissions" in rows["keys"].detail
    assert rows["keys"].hint.startswith("chmod 600")


async def test_bot_not_in_namespace_is_a_fail_row(world: World) -> None:
    async with LocalnetServer(port=0, state_file=None, extra_programs={}) as other:
        ns = await bootstrap_namespace(
            other.chain, Keypair(), Keypair().pubkey(), Keypair().pubkey(), "Other"
        )
        world.rpc_url = other.url
        rows = await rows_of(world.config(namespace=ns))
    assert rows["rpc"].status is Status.FAIL
    assert "bot_not_registered" in rows["rpc"].detail


async def test_unreachable_relay_is_a_fail_row(world: World) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rows = await rows_of(world.config(relay=f"ws://127.0.0.1:{port}/"))
    assert rows["relay"].status is Status.FAIL


async def test_chat_socket_with_wrong_mode_is_a_fail_row(world: World) -> None:
    (world.state / "chat.sock").chmod(0o666)
    rows = await rows_of(world.config())
    assert rows["chat"].status is Status.FAIL
    assert rows["chat"].hint == f"chmod 660 {world.state / 'chat.sock'}"


async def test_configured_gpio_without_chip_is_a_fail_row(world: World) -> None:
    rows = await rows_of(
        world.config("indicators:\n  leds:\n    enabled: true\n    status_pin: 5\n"),
        gpio_chips=[world.tmp / "gpiochip0"],
    )
    assert rows["gpio"].status is Status.FAIL


async def test_clock_far_from_rpc_time_is_a_fail_row(world: World) -> None:
    rows = await rows_of(world.config(), clock=lambda: 2_000_000_000.0)
    assert rows["clock"].status is Status.FAIL


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")
async def test_model_loads_in_a_subprocess(world: World) -> None:
    rows = await rows_of(world.config(), quick=False)
    assert rows["model"].status is Status.OK, rows["model"]
    assert "loads" in rows["model"].detail


async def test_model_and_caches_larger_than_ram_is_a_warn_row(world: World, tiny_model: Path) -> None:
    mib = 1024 * 1024
    model = f"llm:\n  model_path: {tiny_model}\n  n_ctx: 2048\n"
    small_ram = {"ram_bytes": lambda: 100 * mib}
    too_big = await rows_of(world.config(model), **small_ram)  # the default 128 MiB state cache
    fits = await rows_of(world.config(model + "  state_cache_mb: 64\n"), **small_ram)
    assert too_big["memory"].status is Status.WARN
    assert "state cache 128 MiB" in too_big["memory"].detail
    assert "llm.state_cache_mb" in too_big["memory"].hint
    assert fits["memory"].status is Status.OK
    assert "KV cache 0 MiB (n_ctx 2048)" in fits["memory"].detail  # 256 B a token: 512 KiB


async def test_non_gguf_model_is_a_fail_row(world: World) -> None:
    bad = world.tmp / "model.gguf"
    bad.write_bytes(b"not a model")
    rows = await rows_of(world.config(f"llm:\n  model_path: {bad}\n"))
    assert rows["model"].status is Status.FAIL


def test_command_exits_1_and_prints_table_when_a_row_fails(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"device:\n  state_dir: {tmp_path / 'none'}\n")
    args = argparse.Namespace(config=cfg, config_source=str(cfg), quick=True, timeout=2.0, json=False)
    out = io.StringIO()
    assert cmd_doctor(args, load_config(cfg), out) == 1
    text = out.getvalue()
    assert text.startswith("CHECK")
    assert "keys" in text and "fail" in text and "hint: xephy-device keys init" in text


def test_command_json_output(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"device:\n  state_dir: {tmp_path / 'none'}\n")
    args = argparse.Namespace(config=cfg, config_source=str(cfg), quick=True, timeout=2.0, json=True)
    out = io.StringIO()
    cmd_doctor(args, load_config(cfg), out)
    rows = json.loads(out.getvalue())
    assert rows[0] == {"name": "config", "status": "ok", "detail": f"valid ({cfg})", "hint": ""}
