"""``localnet``: a loopback Solana JSON-RPC stand-in for tests and demos -- **not a validator**.

No Solana validator can run on a registries-only machine, so the real settlement path (instruction bytes,
signatures, solana-py ``AsyncClient`` over JSON-RPC) is exercised against this double:

- :mod:`.chain` -- the pure state model: accounts, a simulated 400 ms slot clock with 150-slot blockhash
  expiry, fees (5 000 lamports per signature, charged even when instructions fail), atomic transactions,
  rent-exemption rule, status cache, history; snapshots for the state file.
- :mod:`.runtime` -- account rules, CPI, the System program, errors in the node's JSON shapes.
- :mod:`.balance_payment` -- a model of both ``balance-payment`` versions following the protocol reference
  §6.4-6.6 (Anchor constraint order, error numbers, the in-program cofactorless Ed25519 check of
  ``recover_info`` from :mod:`.ed25519`).
- :mod:`.rpc` -- JSON-RPC 2.0 (batches too) with real error shapes.
- :mod:`.server` -- aiohttp on 127.0.0.1 only, optional state file.
- :mod:`.bootstrap` -- one-call operator/user setup through real transactions.
- :mod:`.embedded` -- ``solana.rpc_url: embedded``: the stand-in in-process with the device's bot registered.

The ``xephy-device localnet`` command is :mod:`device.commands.localnet`.

What it is not: no forks, votes or commitment differences (everything is final at once), no address lookup
tables, no BPF execution (the programs are Python models), no fee burning/rewards, no compute metering.
See ``docs/localnet.md``.
"""

from __future__ import annotations

from device.localnet.bootstrap import bootstrap_global_v1, bootstrap_namespace, bootstrap_user
from device.localnet.chain import (
    MAX_PROCESSING_AGE,
    SLOT_SECONDS,
    Chain,
    DroppedTransaction,
    ExecutionResult,
    InvalidTransaction,
    PreflightFailure,
    SignatureVerificationFailure,
    Simulation,
    TransactionRecord,
)
from device.localnet.runtime import (
    LAMPORTS_PER_SIGNATURE,
    Account,
    InstrError,
    LocalnetError,
    TxError,
    rent_exempt_minimum,
)
from device.localnet.server import LocalnetServer

__all__ = [
    "LAMPORTS_PER_SIGNATURE",
    "MAX_PROCESSING_AGE",
    "SLOT_SECONDS",
    "Account",
    "Chain",
    "DroppedTransaction",
    "ExecutionResult",
    "InstrError",
    "InvalidTransaction",
    "LocalnetError",
    "LocalnetServer",
    "PreflightFailure",
    "SignatureVerificationFailure",
    "Simulation",
    "TransactionRecord",
    "TxError",
    "bootstrap_global_v1",
    "bootstrap_namespace",
    "bootstrap_user",
    "rent_exempt_minimum",
]
