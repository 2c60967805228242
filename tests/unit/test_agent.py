"""The composition root's own decisions (the parts it wires are tested where they live)."""

from __future__ import annotations

from pathlib import Path

from device.agent import Agent, ServicePlan
from device.config import Config, DeviceConfig, LlmConfig, NostrConfig, SolanaConfig
from device.keys import KeyStore
from device.ledger import Ledger


def test_device_state_names_the_model_by_its_file_stem(state_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model.write_bytes(b"GGUF")
    config = Config(
        device=DeviceConfig(state_dir=state_dir),
        nostr=NostrConfig(embedded_relay_port=0),
        solana=SolanaConfig(embedded_rpc_port=0),
        llm=LlmConfig(model_path=model),
    )
    keys, _ = KeyStore(state_dir).init()
    plan = ServicePlan.build(config, keys, {})
    with Ledger.open(plan.ledger_path) as ledger:
        agent = Agent(config, keys, ledger, plan, environ={})
    assert agent.hub.current.model == "SmolLM2-135M-Instruct.Q4_1"
    assert agent.hub.current.machine_pubkey == keys.nostr_pubkey_hex


def test_the_device_shows_loading_until_the_model_is_ready(state_dir: Path) -> None:
    config = Config(device=DeviceConfig(state_dir=state_dir))
    keys, _ = KeyStore(state_dir).init()
    plan = ServicePlan.build(config, keys, {})
    with Ledger.open(plan.ledger_path) as ledger:
        agent = Agent(config, keys, ledger, plan, environ={})
    assert agent.hub.current.loading is True  # cleared by Agent.run once the chat socket listens
