"""``xephy-device run``: the agent, until SIGINT/SIGTERM.

The state directory's lock (:mod:`device.instance_lock`) is the first thing taken: a second ``run`` on
the same directory exits 1 with ``agent_already_running`` before it creates keys, opens the ledger,
starts a relay or chain, or rewrites any file.

Any failure ends in one line ``xephy-device: <code>: <message>`` and exit 1 (2 for a configuration
error): a :class:`~device.errors.DeviceError` keeps its code, anything else becomes ``agent_failed``
naming the exception; its traceback is logged only at ``device.log_level: debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from device.config import Config
from device.errors import DeviceError
from device.instance_lock import InstanceLock
from device.logs import configure_logging

log = logging.getLogger(__name__)


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
            log.info("generated %s", path, extra={"code": "key_created"})
        plan = ServicePlan.build(config, keys, os.environ)
        try:
            with Ledger.open(plan.ledger_path) as ledger:
                agent = Agent(config, keys, ledger, plan)
                asyncio.run(run_until_signalled(agent, sys.stdout))
        except DeviceError:
            raise
        except Exception as exc:
            log.debug("the agent failed", exc_info=True, extra={"code": "agent_failed"})
            raise DeviceError(f"{type(exc).__name__}: {exc}", code="agent_failed") from None
    print("stopped", file=sys.stdout)
    return 0
