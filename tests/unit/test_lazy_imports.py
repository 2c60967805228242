"""The command line starts cheap: the root imports a command's module only when that command runs.

In the style of aioesphomeapi's ``tests/test_lazy_imports.py``: each case runs in a fresh interpreter
and looks at ``sys.modules`` afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from solders.keypair import Keypair

from device.keys import create_keypair_file
from device.localnet import LocalnetServer
from tests.fixtures.imports import ROOT, cycles, import_graph, loaded_from, modules_loaded_by
from tests.fixtures.localnet import server

__all__ = ["server"]  # the fixture

#: What a user's second-terminal command must never pay for: the web server, the model, the Solana
#: client stack, the chain stand-in and the agent's services.
HEAVY = ("aiohttp", "llama_cpp", "solana", "device.localnet", "device.agent")
#: What a user command that reads the chain must not pay for either: solana-py's client stack (its HTTP
#: library and pydantic); the user commands talk JSON-RPC through :class:`device.solana.rpc.HttpRpc`.
CHAIN_CLIENT_STACK = ("solana", "httpx2", "httpx", "httpcore2", "httpcore", "pydantic")


def test_importing_the_cli_loads_no_heavy_stack() -> None:
    assert loaded_from(modules_loaded_by("import device.cli"), HEAVY) == set()


def test_root_help_loads_no_heavy_stack_and_no_command_module() -> None:
    loaded = modules_loaded_by("from device.cli import main; main(['--help'])")
    assert loaded_from(loaded, HEAVY) == set()
    assert loaded_from(loaded, ["device.commands"]) == set()


def test_a_command_group_help_loads_only_that_group() -> None:
    loaded = modules_loaded_by("from device.cli import main; main(['user', '--help'])")
    assert loaded_from(loaded, ["device.commands"]) == {
        "device.commands",
        "device.commands.user",
        "device.commands.arguments",
    }
    assert loaded_from(loaded, ["aiohttp", "llama_cpp", "device.localnet", "device.agent"]) == set()


async def test_user_balance_reads_the_chain_without_the_solana_py_stack(
    server: LocalnetServer, tmp_path: Path
) -> None:
    keypair = create_keypair_file(tmp_path / "id.json", Keypair())
    argv = ["user", "balance", "--json", "--keypair", str(keypair), "--rpc-url", server.url]
    code = f"from device.cli import main; assert main({argv!r}) == 0"
    loaded = await asyncio.to_thread(modules_loaded_by, code, cwd=tmp_path)
    assert loaded_from(loaded, [*HEAVY, *CHAIN_CLIENT_STACK]) == set()
    assert "device.solana.client" in loaded  # it did read the chain
    assert loaded_from(loaded, ["nostr_sdk", "device.ledger"]) == set()  # no device known: no relay to ask


def test_the_agent_loads_the_chain_stand_in_only_for_an_embedded_rpc() -> None:
    assert loaded_from(modules_loaded_by("import device.agent"), ["device.localnet"]) == set()


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert cycles(import_graph(ROOT / "device")) == []
