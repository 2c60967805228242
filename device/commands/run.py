"""``xephy-device run``: the agent, until SIGINT/SIGTERM.

The state directory's lock (:mod:`device.instance_lock`) is the first thing taken: a second ``run`` on
the same directory exits 1 with ``agent_already_running`` before it creates keys, opens the ledger,
starts a relay or chain, or rewrites any file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from device.config import Config
from device.instance_lock import InstanceLock
from device.logs import configure_logging


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``run`` takes no arguments besides ``--config``."""
    parser.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """Start the agent and serve until SIGINT/SIGTERM."""
    configure_logging(config.device.log_level)
    with InstanceLock.acquire(config.device.state_dir):
        # Imported only once the lock is held: a second `run` is refused before the agent's libraries load.
        from device.agent import Agent, ServicePlan, run_until_signalled
        from device.keys import KeyStore
        from device.ledger import Ledger

        store = KeyStore(config.device.state_dir)
        keys, created = store.init()
        for path in created:
            print(f"generated {path}", file=sys.stderr)
        plan = ServicePlan.build(config, keys, os.environ)
        with Ledger.open(plan.ledger_path) as ledger:
            agent = Agent(config, keys, ledger, plan)
            asyncio.run(run_until_signalled(agent, sys.stdout))
    print("stopped", file=sys.stdout)
    return 0
