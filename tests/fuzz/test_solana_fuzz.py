"""Fuzz the settlement client with whatever a JSON-RPC node (or a proxy in front of it) may answer.

The fake JSON-RPC node (tests/fixtures/rpc.py) answers each method with a drawn reply: well-shaped or
near-miss results (getMultipleAccounts, getLatestBlockhash, sendTransaction, getSignatureStatuses,
getBlockHeight …), JSON-RPC errors (preflight failures with ``data.err``/``data.logs``, -32005 …), raw
bodies with any HTTP status, dropped connections -- on both JSON-RPC transports (solana-py's, the
agent's; the light stdlib one, the user commands').  Property: every client call returns or raises a
DeviceError (SettlementError / ChainUnavailable / AuthorizationError) whose code is documented --
in docs/errors.md, or a Solana runtime error name in snake_case ("runtime errors their snake_case
name") -- and a failed TxOutcome carries such a code too.  Nothing else escapes.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from device.errors import DeviceError
from device.protocol import RecoverInfo
from device.solana.client import SettlementClient, SignedTransaction, TxOutcome
from device.solana.errors import error_from_rpc_error, error_from_transaction_error
from device.solana.program import ProgramRef, ProgramVersion
from tests.fixtures.rpc import FakeRpc, reply_of
from tests.fixtures.settlement import TRANSPORTS, settlement_client
from tests.fuzz import DOCUMENTED, TALLY, attempt, fuzz_settings
from tests.fuzz import strategies as fs


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


SOLANA_CODES = DOCUMENTED | {_snake(name) for name in fs.KNOWN_RUNTIME_NAMES}
_IDENTIFIER = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")


def _allowed(exc: DeviceError) -> bool:
    """Documented, a known runtime name, or the snake_case of a runtime-shaped name the node sent."""
    if exc.code in SOLANA_CODES:
        return True
    name = getattr(exc, "error_name", None)
    return isinstance(name, str) and bool(_IDENTIFIER.fullmatch(name)) and exc.code == _snake(name)


def _check_error(target: str, exc: DeviceError) -> None:
    if not _allowed(exc):
        TALLY.unexpected(target, exc)
        raise AssertionError(f"{target}: code {exc.code!r} is not documented ({exc.message})")


def run(target: str, call: Any) -> Any:
    """``attempt`` with the Solana code rule: count, check, and look inside failed outcomes."""
    result = attempt(target, call, error=DeviceError, allowed=_AnyCode())
    if isinstance(result, DeviceError):
        _check_error(target, result)
    elif isinstance(result, TxOutcome) and result.error is not None:
        _check_error(target, result.error)
    return result


class _AnyCode(frozenset[str]):
    """``allowed`` for :func:`attempt` that admits every string; :func:`_check_error` decides."""

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str)


# ------------------------------------------------------------------------------ pure mappers (cheap)


@fuzz_settings(1000)
@given(st.sampled_from(ProgramVersion), fs.transaction_errors, fs.log_lines, st.booleans())
@example(ProgramVersion.V2, {"InstructionError": [0, "Weird Name!"]}, [], False)  # was code "weird _name!"
@example(ProgramVersion.V2, "", [], True)  # was code ""
@example(ProgramVersion.V2, {"💥": 1}, [], True)
def test_transaction_error_mapping(version: ProgramVersion, err: Any, logs: list[str], landed: bool) -> None:
    run(
        "solana.error_from_transaction_error",
        lambda: _raise(error_from_transaction_error(version, err, logs=logs, landed=landed)),
    )


@fuzz_settings(600)
@given(st.sampled_from(ProgramVersion), fs.rpc_errors())
def test_rpc_error_mapping(version: ProgramVersion, error: dict[str, Any]) -> None:
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, int) or not isinstance(message, str):
        return  # solana-py only builds SolanaJsonRpcError from int/str; other shapes are tested end to end
    run(
        "solana.error_from_rpc_error",
        lambda: _raise(error_from_rpc_error(version, code=code, message=message, data=error.get("data"))),
    )


def _raise(exc: DeviceError) -> None:
    raise exc


# ------------------------------------------------------------------------------ end to end over HTTP

METHODS = [
    "getMultipleAccounts",
    "getLatestBlockhash",
    "getMinimumBalanceForRentExemption",
    "sendTransaction",
    "getSignatureStatuses",
    "getBlockHeight",
    "getBalance",
]
PROGRAM = ProgramRef.default(ProgramVersion.V2)


@st.composite
def scripts(draw: st.DrawFn) -> dict[str, list[fs.RpcReply]]:
    owner = str(PROGRAM.program_id)
    return {m: draw(st.lists(fs.rpc_replies(m, owner=owner), min_size=1, max_size=3)) for m in METHODS}


USER = Keypair().pubkey()
SIGNATURE = str(Keypair().sign_message(b"fuzz"))
AUTH = RecoverInfo(bytes(64), bytes(64), 2_000_000_000, "extra_data")

OPERATIONS = ["balance", "latest_blockhash", "check_bot", "submit", "resume", "prepare_pay"]


async def _operate(client: SettlementClient, operation: str) -> Any:
    if operation == "balance":
        return await client.balance(USER)
    if operation == "latest_blockhash":
        return await client.latest_blockhash()
    if operation == "check_bot":
        return await client.check_bot()
    if operation == "submit":
        return await client.submit(SignedTransaction(SIGNATURE, b"\x01" * 120, 200))
    if operation == "resume":
        return await client.resume(SIGNATURE, 200, tx_bytes=b"\x01" * 120)
    return await client.prepare_pay(USER, AUTH, payload_nonce=0, amount=1000, now=1_700_000_000)


def _script(**overrides: fs.RpcReply) -> dict[str, list[fs.RpcReply]]:
    """Sane answers for every method, except ``overrides``."""
    ctx = {"context": {"slot": 110}}
    sane = {
        "getMultipleAccounts": fs.RpcReply("result", {**ctx, "value": [None, None, None]}),
        "getLatestBlockhash": fs.RpcReply(
            "result", {**ctx, "value": {"blockhash": fs.BLOCKHASH, "lastValidBlockHeight": 250}}
        ),
        "getMinimumBalanceForRentExemption": fs.RpcReply("result", 890_880),
        "sendTransaction": fs.RpcReply("result", SIGNATURE),
        "getSignatureStatuses": fs.RpcReply("result", {**ctx, "value": [None]}),
        "getBlockHeight": fs.RpcReply("result", 100),
        "getBalance": fs.RpcReply("result", {**ctx, "value": 0}),
    }
    sane.update(overrides)
    return {method: [reply] for method, reply in sane.items()}


SHORT_BLOCKHASH = fs.RpcReply(
    "result", {"context": {"slot": 1}, "value": {"blockhash": "1111", "lastValidBlockHeight": 5}}
)
NO_ACCOUNTS = fs.RpcReply("result", {"context": {"slot": 1}, "value": []})
PREFLIGHT_WITHOUT_DATA = fs.RpcReply("error", {"code": -32002, "message": "Transaction simulation failed"})


@fuzz_settings(100, long_examples=5_000)
@given(st.sampled_from(OPERATIONS), scripts())
# solders' parser panicked (pyo3 PanicException, a BaseException) on -32002 without "data" (fixed):
@example("balance", _script(getMultipleAccounts=PREFLIGHT_WITHOUT_DATA))
@example("submit", _script(sendTransaction=PREFLIGHT_WITHOUT_DATA))
# solders returned the bare int 5 for an error with an unknown code; `.value` raised AttributeError (fixed):
@example("resume", _script(getSignatureStatuses=fs.RpcReply("error", {"code": 5, "message": "x"})))
# a blockhash of the wrong size panicked only when read, outside the client's guard (fixed):
@example("latest_blockhash", _script(getLatestBlockhash=SHORT_BLOCKHASH))
@example("prepare_pay", _script(getLatestBlockhash=SHORT_BLOCKHASH))
# an empty account list raised "not enough values to unpack" (fixed):
@example("balance", _script(getMultipleAccounts=NO_ACCOUNTS))
@example("check_bot", _script(getMultipleAccounts=NO_ACCOUNTS))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_against_a_scripted_node(
    transport: str, operation: str, script: dict[str, list[fs.RpcReply]]
) -> None:
    async def scenario() -> None:
        async with FakeRpc() as node:
            for method, replies in script.items():
                node.script(method, *(reply_of(r.kind, r.value, r.status) for r in replies))
            client = settlement_client(
                node.url,
                program=PROGRAM,
                transport=transport,
                confirm_timeout=0.3,
                rpc_timeout=2.0,
                resend_interval=0.05,
            )
            try:
                loop = asyncio.get_running_loop()
                task = loop.create_task(_operate(client, operation))
                try:
                    result = await asyncio.wait_for(asyncio.shield(task), 10.0)
                except BaseException as exc:  # re-raised inside run() for counting
                    if isinstance(exc, TimeoutError) and not task.done():
                        task.cancel()
                        raise AssertionError(f"{operation} hung against the scripted node") from None
                    error: BaseException = exc

                    def fail() -> None:
                        raise error

                    run(f"solana.{operation}", fail)
                    return
                run(f"solana.{operation}", lambda: result)
            finally:
                await client.close()

    asyncio.run(scenario())


def test_signature_fixture_is_valid() -> None:
    assert str(Signature.from_string(SIGNATURE)) == SIGNATURE
    assert isinstance(USER, Pubkey)
