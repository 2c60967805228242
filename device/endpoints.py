"""``state_dir/endpoints.json``: where a running agent can be reached.

The agent writes it once everything is listening, so the user commands in a
second terminal (``xephy-device user recharge``, ``xephy-device chat``) need no
flags on a laptop: they read the relay URLs, the RPC URL, the machine pubkey and
the chat socket from here.  Written atomically; removed on a clean stop.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from device.errors import DeviceError

ENDPOINTS_FILE = "endpoints.json"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The addresses of one running agent."""

    relays: tuple[str, ...]
    rpc_url: str
    machine_pubkey: str
    device_pubkey: str
    session: str
    chat_socket: str
    program: str
    program_id: str
    namespace_id: int
    pid: int
    pricing_mode: str = "prepaid"  # pricing.mode: prepaid | session

    def write(self, state_dir: Path) -> Path:
        """Write ``endpoints.json`` atomically into ``state_dir``; return its path."""
        path = state_dir / ENDPOINTS_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, state_dir: Path) -> Endpoints:
        """Read the endpoints of the agent running on ``state_dir``."""
        path = state_dir / ENDPOINTS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["relays"] = tuple(data["relays"])
            endpoints = cls(**data)
        except FileNotFoundError:
            raise DeviceError(
                f"{path} not found: is `xephy-device run` running with this state_dir?",
                code="agent_not_running",
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise DeviceError(f"{path}: unreadable endpoints file: {exc}", code="endpoints_invalid") from exc
        return endpoints

    @staticmethod
    def remove(state_dir: Path) -> None:
        """Delete the file (on a clean stop)."""
        (state_dir / ENDPOINTS_FILE).unlink(missing_ok=True)

    def is_live(self) -> bool:
        """True when the process that wrote the file still exists."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
