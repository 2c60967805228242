"""Translation of what a Solana JSON-RPC node answers into typed settlement errors with stable codes.

:class:`SettlementError` (a :class:`~device.errors.DeviceError`) carries a stable ``code``:

- program errors (``{"InstructionError":[i,{"Custom":N}]}`` or a ``custom program error: 0x…`` log/message
  line) through :func:`~device.solana.program.describe_custom_error`: ``signature_expired``,
  ``signature_mismatch``, ``insufficient_funds``, ``account_not_initialized``, ``constraint_has_one`` …;
- runtime errors: ``blockhash_not_found``, ``already_processed``, ``insufficient_funds_for_fee`` (also for
  ``AccountNotFound``: a fee payer with no lamports), ``insufficient_funds_for_rent``, other names in
  snake_case (``invalid_account_data`` …);
- ``blockhash_expired`` (never landed), ``bot_not_registered``, ``namespace_not_found``,
  ``global_not_found``, ``account_owned_by_wrong_program`` (raised by :mod:`device.solana.client`);
- RPC: ``rpc_unreachable`` / ``rpc_timeout`` (:class:`ChainUnavailable`), ``rpc_error`` (the node answered,
  but not usefully), ``signature_verification_failed``.

Three entry points, all pure: :func:`error_from_transaction_error` (a ``TransactionError`` in its JSON
form), :func:`error_from_rpc_error` (a JSON-RPC ``error`` object) and :func:`error_from_rpc_exception`
(whatever the HTTP/RPC stack raised: :mod:`device.solana.rpc`'s transport-neutral failures, or solana-py's
and httpx's own, whose modules are imported only when such an exception is seen).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

from solders.errors import SerdeJSONError
from solders.rpc.errors import NodeUnhealthyMessage

from device.errors import DeviceError
from device.solana import program as prog
from device.solana.program import ProgramVersion
from device.solana.rpc import (
    RpcConnectError,
    RpcErrorReply,
    RpcFailure,
    RpcHttpStatus,
    RpcMalformed,
    RpcTimeout,
)

__all__ = [
    "ChainUnavailable",
    "SettlementError",
    "error_from_rpc_error",
    "error_from_rpc_exception",
    "error_from_transaction_error",
]


class SettlementError(DeviceError):
    """A settlement step failed; ``code`` says why (see the module docstring for the codes).

    ``landed`` is True when the transaction was executed with an error (the bot paid its fee, no lamports
    moved); ``signature`` names it when one exists.  ``error_name`` is the program's or runtime's name
    (``SignatureExpired``, ``BlockhashNotFound``), ``custom_code`` the program's number, ``logs`` the
    program logs the node returned.
    """

    code = "settlement_failed"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        landed: bool = False,
        signature: str | None = None,
        error_name: str | None = None,
        custom_code: int | None = None,
        instruction_index: int | None = None,
        logs: Sequence[str] = (),
        rpc_code: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.landed = landed
        self.signature = signature
        self.error_name = error_name
        self.custom_code = custom_code
        self.instruction_index = instruction_index
        self.logs = tuple(logs)
        self.rpc_code = rpc_code


class ChainUnavailable(SettlementError):
    """The RPC node could not be reached or did not answer in time: the outcome is unknown, resume later.

    ``code`` is ``rpc_unreachable`` or ``rpc_timeout``.  ``may_have_arrived`` is False only when the request
    certainly never reached the node (the connection could not be opened).  ``signature`` and
    ``last_valid_block_height`` are set when a transaction is in flight: pass them to
    :meth:`ChainClient.resume`.
    """

    code = "rpc_unreachable"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        may_have_arrived: bool = True,
        signature: str | None = None,
        last_valid_block_height: int | None = None,
    ) -> None:
        super().__init__(message, code=code, signature=signature)
        self.may_have_arrived = may_have_arrived
        self.last_valid_block_height = last_valid_block_height


_RUST_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")


def _name_code(name: str, table: dict[str, str] | None = None) -> str:
    """The code of a runtime/instruction error name: its snake_case (or ``table``'s entry).  A name that
    is not a Rust variant name (empty, spaces, punctuation: a proxy's or a broken node's text) gives the
    generic ``settlement_failed``, never a code made of whatever the node wrote."""
    if not _RUST_NAME.fullmatch(name):
        return "settlement_failed"
    return (table or {}).get(name, prog.snake_case(name))


_CUSTOM_IN_TEXT = re.compile(r"custom program error: 0x([0-9a-fA-F]+)")
_INSTRUCTION_IN_TEXT = re.compile(r"Error processing Instruction (\d+)")

# Runtime (top-level TransactionError) names whose stable code is not just their snake_case name.
_RUNTIME_CODES: Final = {
    # "Attempt to debit an account but found no record of a prior credit": a fee payer without lamports.
    "AccountNotFound": "insufficient_funds_for_fee",
}
# Message fragments of preflight failures that come without ``data.err`` (older or proxied nodes).
_MESSAGE_CODES: Final = (
    ("blockhash not found", "BlockhashNotFound"),
    ("already been processed", "AlreadyProcessed"),
    ("alreadyprocessed", "AlreadyProcessed"),
    ("insufficient funds for fee", "InsufficientFundsForFee"),
    ("no record of a prior credit", "AccountNotFound"),
    ("insufficient funds for rent", "InsufficientFundsForRent"),
)


def _custom_from_text(lines: Sequence[str]) -> tuple[int | None, int | None]:
    """(instruction index, custom code) from ``custom program error: 0x…`` text, if any line has one."""
    for line in lines:
        match = _CUSTOM_IN_TEXT.search(line)
        if match:
            index = _INSTRUCTION_IN_TEXT.search(line)
            return (int(index.group(1)) if index else None), int(match.group(1), 16)
    return None, None


def _program_error(
    version: ProgramVersion,
    number: int,
    index: int | None,
    *,
    logs: Sequence[str],
    landed: bool,
    signature: str | None,
    rpc_code: int | None = None,
) -> SettlementError:
    name, code = prog.describe_custom_error(version, number)
    where = f"instruction {index}" if index is not None else "the transaction"
    return SettlementError(
        f"{where} failed with program error {number} ({name})",
        code=code,
        landed=landed,
        signature=signature,
        error_name=name,
        custom_code=number,
        instruction_index=index,
        logs=logs,
        rpc_code=rpc_code,
    )


def error_from_transaction_error(
    version: ProgramVersion,
    err: object,
    *,
    logs: Sequence[str] = (),
    landed: bool = False,
    signature: str | None = None,
    rpc_code: int | None = None,
) -> SettlementError:
    """Map a ``TransactionError`` in its JSON form to a :class:`SettlementError`.

    ``err`` is what the node writes in ``data.err`` / ``meta.err`` / a signature status:
    ``"BlockhashNotFound"``, ``{"InstructionError":[0,{"Custom":6008}]}``,
    ``{"InstructionError":[0,"InvalidAccountData"]}``, ``{"InsufficientFundsForRent":{"account_index":4}}``.
    A solders ``TransactionError*`` object is accepted too (converted through its JSON form).
    Custom numbers are looked up in ``version``'s table; an unknown shape gives ``program_error`` unless a
    ``custom program error: 0x…`` line in ``logs`` says more.
    """
    err = _json_form(err)
    common: dict[str, Any] = {"landed": landed, "signature": signature, "logs": logs, "rpc_code": rpc_code}
    if isinstance(err, dict) and "InstructionError" in err:
        detail = err["InstructionError"]
        index = detail[0] if isinstance(detail, list) and detail and isinstance(detail[0], int) else None
        inner = detail[1] if isinstance(detail, list) and len(detail) > 1 else None
        if isinstance(inner, dict) and isinstance(inner.get("Custom"), int):
            return _program_error(version, inner["Custom"], index, **common)
        inner_name = (
            inner if isinstance(inner, str) else next(iter(inner), None) if isinstance(inner, dict) else None
        )
        if inner_name is None:
            text_index, number = _custom_from_text(logs)
            if number is not None:
                return _program_error(version, number, index if index is not None else text_index, **common)
            inner_name = "InstructionError"
        return SettlementError(
            f"instruction {index} failed: {inner_name}",
            code=_name_code(inner_name),
            error_name=inner_name,
            instruction_index=index,
            **common,
        )
    name: str | None = None
    if isinstance(err, str):
        name = err
    elif isinstance(err, dict) and len(err) == 1:
        name = next(iter(err))
    if name is None:
        text_index, number = _custom_from_text(logs)
        if number is not None:
            return _program_error(version, number, text_index, **common)
        return SettlementError(f"transaction failed: {err!r}", code="program_error", **common)
    detail_text = f" ({err[name]})" if isinstance(err, dict) else ""
    return SettlementError(
        f"transaction failed: {name}{detail_text}",
        code=_name_code(name, _RUNTIME_CODES),
        error_name=name,
        **common,
    )


def _json_form(err: object) -> object:
    """A solders ``TransactionError*`` / ``InstructionError*`` object as the JSON the node sent; plain JSON
    values unchanged.  (solders' own ``to_json`` of these drops the variant names.)"""
    if err is None or isinstance(err, str | int | float | bool | list | dict):
        return err
    kind = type(err).__name__
    if kind.endswith("Fieldless"):  # TransactionErrorFieldless / InstructionErrorFieldless enum members
        return str(err).rsplit(".", 1)[-1]
    if kind == "TransactionErrorInstructionError":
        return {"InstructionError": [getattr(err, "index", None), _json_form(getattr(err, "err", None))]}
    if kind == "InstructionErrorCustom":
        return {"Custom": getattr(err, "code", None)}
    if kind == "InstructionErrorBorshIO":
        return {"BorshIoError": str(getattr(err, "value", ""))}
    if kind.startswith("TransactionError"):
        to_json = getattr(err, "to_json", None)
        body: object = json.loads(to_json()) if callable(to_json) else None
        return {kind.removeprefix("TransactionError"): body}
    return str(err)


def error_from_rpc_error(
    version: ProgramVersion,
    *,
    code: int,
    message: str,
    data: object = None,
    signature: str | None = None,
) -> SettlementError:
    """Map a JSON-RPC ``error`` object (``{"code","message","data"}``) to a :class:`SettlementError`.

    ``-32002`` (preflight failure) carries the simulation result in ``data``: ``data.err`` and
    ``data.logs`` are mapped by :func:`error_from_transaction_error`; without ``data.err`` the message is
    searched for ``custom program error: 0x…`` and well-known phrases.  ``-32005`` (node unhealthy /
    behind) is :class:`ChainUnavailable`.  Anything else is ``rpc_error``.
    """
    logs: list[str] = []
    if isinstance(data, dict):
        raw_logs = data.get("logs")
        if isinstance(raw_logs, list):
            logs = [str(line) for line in raw_logs]
        if data.get("err") is not None:
            return error_from_transaction_error(
                version, data["err"], logs=logs, signature=signature, rpc_code=code
            )
    if code == -32005:
        return ChainUnavailable(f"RPC node unhealthy: {message}", code="rpc_unreachable", signature=signature)
    if code == -32003:
        return SettlementError(
            f"RPC refused the transaction: {message}",
            code="signature_verification_failed",
            signature=signature,
            rpc_code=code,
        )
    index, number = _custom_from_text([message, *logs])
    if number is not None:
        return _program_error(
            version, number, index, logs=logs, landed=False, signature=signature, rpc_code=code
        )
    lowered = message.lower()
    for fragment, name in _MESSAGE_CODES:
        if fragment in lowered:
            return SettlementError(
                f"transaction refused: {message}",
                code=_name_code(name, _RUNTIME_CODES),
                error_name=name,
                signature=signature,
                logs=logs,
                rpc_code=code,
            )
    return SettlementError(
        f"RPC error {code}: {message}", code="rpc_error", signature=signature, rpc_code=code
    )


def error_from_rpc_exception(exc: BaseException, what: str) -> SettlementError:
    """Turn anything the RPC stack raised into a typed error (:class:`ChainUnavailable` when the outcome
    of the request is unknown)."""
    if isinstance(exc, RpcFailure):
        return _from_rpc_failure(exc, what)
    return _from_solana_py(exc, what)


def _from_rpc_failure(exc: RpcFailure, what: str) -> SettlementError:
    if isinstance(exc, RpcConnectError):
        return ChainUnavailable(f"{what}: cannot connect to the RPC node ({exc})", may_have_arrived=False)
    if isinstance(exc, RpcTimeout):
        return ChainUnavailable(f"{what}: the RPC node did not answer in time", code="rpc_timeout")
    if isinstance(exc, RpcHttpStatus):
        return _from_http_status(exc.status, what)
    if isinstance(exc, RpcErrorReply):
        return _from_error_reply(exc.detail, what)
    if isinstance(exc, RpcMalformed):
        return SettlementError(f"{what}: malformed RPC response ({exc})", code="rpc_error")
    return ChainUnavailable(f"{what}: connection to the RPC node failed ({exc})")


def _from_http_status(status: int, what: str) -> SettlementError:
    if status == 429 or status >= 500:
        return ChainUnavailable(f"{what}: RPC node answered HTTP {status}")
    return SettlementError(f"{what}: RPC node answered HTTP {status}", code="rpc_error")


def _from_error_reply(detail: object, what: str) -> SettlementError:
    if isinstance(detail, NodeUnhealthyMessage):
        return ChainUnavailable(f"{what}: RPC node unhealthy: {detail.message}")
    message = getattr(detail, "message", None) or str(detail)
    return SettlementError(f"{what}: RPC error: {message}", code="rpc_error")


def _from_solana_py(exc: BaseException, what: str) -> SettlementError:
    """What solana-py's ``AsyncClient`` stack raised (imported here: only the agent's transport uses it)."""
    import httpx2
    import pydantic
    from solana.exceptions import SolanaRpcException
    from solana.rpc.core import RPCException

    cause: BaseException | None = exc
    while isinstance(cause, SolanaRpcException) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, httpx2.ConnectTimeout | httpx2.ConnectError):
        return ChainUnavailable(f"{what}: cannot connect to the RPC node ({cause})", may_have_arrived=False)
    if isinstance(cause, httpx2.TimeoutException):
        return ChainUnavailable(f"{what}: the RPC node did not answer in time", code="rpc_timeout")
    if isinstance(cause, httpx2.HTTPStatusError):
        return _from_http_status(cause.response.status_code, what)
    if isinstance(cause, httpx2.TransportError | OSError):
        return ChainUnavailable(
            f"{what}: connection to the RPC node failed ({type(cause).__name__}: {cause})"
        )
    if isinstance(cause, RPCException):
        return _from_error_reply(cause.args[0] if cause.args else cause, what)
    if isinstance(cause, pydantic.ValidationError | SerdeJSONError | ValueError | KeyError | TypeError):
        return SettlementError(f"{what}: malformed RPC response ({type(cause).__name__})", code="rpc_error")
    return SettlementError(f"{what}: {type(cause).__name__}: {cause}", code="rpc_error")
