"""Solana JSON-RPC 2.0 over a :class:`~device.localnet.chain.Chain`: request parsing, methods, wire shapes.

Pure (no sockets): :meth:`RpcHandler.handle_body` takes the HTTP body and returns the HTTP body.
Shapes follow agave 2.2 as solana-py/solders parse them: ``{"context": {"slot", "apiVersion"},
"value": …}`` where a real node wraps results; envelope errors ``-32700``/``-32600``/``-32601``/
``-32602``/``-32603``; ``-32002`` preflight failures whose ``data`` is the simulation result (``err``,
``logs``, ``unitsConsumed`` …); ``-32003`` signature verification failures; ``-32015`` unsupported
transaction version; ``-32016`` min context slot not reached.

Methods: ``getLatestBlockhash``, ``sendTransaction``, ``simulateTransaction``, ``getSignatureStatuses``,
``getTransaction``, ``getAccountInfo``, ``getMultipleAccounts``, ``getBalance``, ``requestAirdrop``,
``getMinimumBalanceForRentExemption``, ``getHealth``, ``getVersion``, ``getSlot``, ``getBlockHeight``,
``isBlockhashValid``, ``getFeeForMessage``.  Anything else is ``-32601 Method not found``.
Commitment levels are accepted and ignored: everything here is final at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from solders.hash import Hash
from solders.message import Message, MessageV0, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from device.localnet.chain import (
    PACKET_DATA_SIZE,
    Chain,
    ExecutionResult,
    InvalidTransaction,
    PreflightFailure,
    SignatureVerificationFailure,
    TransactionRecord,
)
from device.localnet.runtime import Account, InnerInstruction, LocalnetError, rent_exempt_minimum
from device.solana.program import U64_MAX

log = logging.getLogger(__name__)

API_VERSION: Final = "2.2.0"
SOLANA_CORE_VERSION: Final = "2.2.0-xephy-localnet"
FEATURE_SET: Final = 0

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
PREFLIGHT_FAILURE: Final = -32002
SIGNATURE_VERIFICATION_FAILURE: Final = -32003
UNSUPPORTED_TRANSACTION_VERSION: Final = -32015
MIN_CONTEXT_SLOT_NOT_REACHED: Final = -32016

MAX_BASE58_SIZE: Final = 1683
MAX_BASE64_SIZE: Final = 1644
MAX_BASE58_BYTES: Final = 128
MAX_MULTIPLE_ACCOUNTS: Final = 100
MAX_SIGNATURE_STATUSES: Final = 256
_TX_TYPE: Final = "solana_transaction::versioned::VersionedTransaction"
_COMMITMENTS: Final = ("processed", "confirmed", "finalized")
_ACCOUNT_ENCODINGS: Final = ("binary", "base58", "base64", "base64+zstd", "jsonParsed")

_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (what Solana uses for keys, signatures and instruction data)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; ``ValueError`` on a character outside the alphabet."""
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise ValueError(f"InvalidCharacter {{ character: {char!r} }}")
        number = number * 58 + _B58_INDEX[char]
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


class RpcError(Exception):
    """A JSON-RPC error object ``{code, message, data?}``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.rpc_code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.rpc_code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _invalid(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


MAX_SIGNATURES_LIMIT: Final = 1000
"""``getSignaturesForAddress``'s largest ``limit``, as on a real node."""


def _list_params(params: Any, method: str, *, required: int, maximum: int) -> list[Any]:
    if params is None:
        params = []
    if not isinstance(params, list):
        raise _invalid(f"Invalid params: {method} expects a JSON array of parameters")
    if len(params) < required:
        raise _invalid(f"Invalid params: {method} needs at least {required} parameter(s), got {len(params)}")
    if len(params) > maximum:
        raise _invalid(f"Invalid params: {method} takes at most {maximum} parameter(s), got {len(params)}")
    return params


def _config(params: list[Any], index: int) -> dict[str, Any]:
    value = params[index] if len(params) > index else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(
            f"Invalid params: invalid type: expected a configuration object, got {json.dumps(value)}"
        )
    commitment = value.get("commitment")
    if commitment is not None and commitment not in _COMMITMENTS:
        raise _invalid(
            f"Invalid params: unknown variant `{commitment}`, "
            "expected one of `processed`, `confirmed`, `finalized`"
        )
    return value


def _pubkey(value: Any) -> Pubkey:
    if not isinstance(value, str):
        raise _invalid("Invalid param: Invalid")
    try:
        return Pubkey.from_string(value)
    except ValueError as exc:
        raise _invalid("Invalid param: Invalid") from exc


def _signature(value: Any) -> Signature:
    if not isinstance(value, str):
        raise _invalid("Invalid param: Invalid")
    try:
        return Signature.from_string(value)
    except ValueError as exc:
        raise _invalid("Invalid param: Invalid") from exc


def _u64(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise _invalid(f"Invalid params: {what} must be an integer in [0, 2^64-1], got {json.dumps(value)}")
    return value


def _bool(config: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(f"Invalid params: {key} must be a boolean, got {json.dumps(value)}")
    return value


def _decode_wire(encoded: Any, encoding: str, type_name: str) -> bytes:
    """The node's ``decode_and_deserialize`` size and encoding checks."""
    if not isinstance(encoded, str):
        raise _invalid(f"Invalid params: expected an encoded {type_name} string")
    if encoding == "base58":
        if len(encoded) > MAX_BASE58_SIZE:
            raise _invalid(
                f"base58 encoded {type_name} too large: {len(encoded)} bytes "
                f"(max: encoded/raw {MAX_BASE58_SIZE}/{PACKET_DATA_SIZE})"
            )
        try:
            return b58decode(encoded)
        except ValueError as exc:
            raise _invalid(f"invalid base58 encoding: {exc}") from exc
    if len(encoded) > MAX_BASE64_SIZE:
        raise _invalid(
            f"base64 encoded {type_name} too large: {len(encoded)} bytes "
            f"(max: encoded/raw {MAX_BASE64_SIZE}/{PACKET_DATA_SIZE})"
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid(f"invalid base64 encoding: {exc}") from exc


def _tx_encoding(config: Mapping[str, Any]) -> str:
    encoding = config.get("encoding") or "base58"
    if encoding not in ("base58", "base64"):
        raise _invalid(f"unsupported encoding: {encoding}. Supported encodings: base58, base64")
    return str(encoding)


def _err_json(result: ExecutionResult) -> Any:
    return None if result.err is None else result.err.json


def _ui_inner(index: int, items: tuple[InnerInstruction, ...]) -> dict[str, Any]:
    return {
        "index": index,
        "instructions": [
            {
                "programIdIndex": item.program_id_index,
                "accounts": list(item.accounts),
                "data": b58encode(item.data),
                "stackHeight": item.stack_height,
            }
            for item in items
        ],
    }


def simulation_json(
    result: ExecutionResult,
    *,
    accounts: list[Any] | None = None,
    inner_instructions: bool = False,
    replacement: tuple[Hash, int] | None = None,
) -> dict[str, Any]:
    """``RpcSimulateTransactionResult`` (also the ``data`` of a ``-32002`` preflight failure)."""
    return {
        "err": _err_json(result),
        "logs": list(result.logs),
        "accounts": accounts,
        "unitsConsumed": result.units_consumed,
        "loadedAccountsDataSize": result.loaded_accounts_data_size,
        "returnData": None,
        "innerInstructions": [_ui_inner(i, items) for i, items in result.inner_instructions]
        if inner_instructions
        else None,
        "replacementBlockhash": None
        if replacement is None
        else {"blockhash": str(replacement[0]), "lastValidBlockHeight": replacement[1]},
    }


class RpcHandler:
    """Dispatches JSON-RPC requests to a :class:`Chain`."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._methods: dict[str, Callable[[Any], Any]] = {
            "getLatestBlockhash": self.get_latest_blockhash,
            "sendTransaction": self.send_transaction,
            "simulateTransaction": self.simulate_transaction,
            "getSignatureStatuses": self.get_signature_statuses,
            "getTransaction": self.get_transaction,
            "getSignaturesForAddress": self.get_signatures_for_address,
            "getAccountInfo": self.get_account_info,
            "getMultipleAccounts": self.get_multiple_accounts,
            "getBalance": self.get_balance,
            "requestAirdrop": self.request_airdrop,
            "getMinimumBalanceForRentExemption": self.get_minimum_balance_for_rent_exemption,
            "getHealth": self.get_health,
            "getVersion": self.get_version,
            "getSlot": self.get_slot,
            "getBlockHeight": self.get_block_height,
            "isBlockhashValid": self.is_blockhash_valid,
            "getFeeForMessage": self.get_fee_for_message,
        }

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self._methods)

    # ------------------------------------------------------------------------------------------------------
    # Envelope

    def handle_body(self, body: bytes) -> bytes | None:
        """HTTP body in, HTTP body out (``None``: only notifications, nothing to answer)."""
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _dump(_error_response(None, RpcError(PARSE_ERROR, "Parse error")))
        answer = self.handle(payload)
        return None if answer is None else _dump(answer)

    def handle(self, payload: Any) -> Any:
        """A parsed request (object) or batch (array) -> the response JSON (``None`` for notifications)."""
        if isinstance(payload, list):
            if not payload:
                return _error_response(None, RpcError(INVALID_REQUEST, "Invalid request"))
            answers = [self._one(item) for item in payload]
            kept = [a for a in answers if a is not None]
            return kept or None
        return self._one(payload)

    def _one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error_response(None, RpcError(INVALID_REQUEST, "Invalid request"))
        request_id = request.get("id")
        has_id = "id" in request
        if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, str | int)):
            return _error_response(None, RpcError(INVALID_REQUEST, "Invalid request"))
        method = request.get("method")
        if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return _error_response(request_id, RpcError(INVALID_REQUEST, "Invalid request"))
        try:
            handler = self._methods.get(method)
            if handler is None:
                raise RpcError(METHOD_NOT_FOUND, "Method not found")
            result = handler(request.get("params"))
            response: dict[str, Any] = {"jsonrpc": "2.0", "result": result, "id": request_id}
        except RpcError as exc:
            response = _error_response(request_id, exc)
        except Exception:
            log.exception("localnet %s failed", method, extra={"code": "localnet_internal_error"})
            response = _error_response(request_id, RpcError(INTERNAL_ERROR, "Internal error"))
        return response if has_id else None

    def _context(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        slot = self.chain.slot
        wanted = (config or {}).get("minContextSlot")
        if wanted is not None and _u64(wanted, "minContextSlot") > slot:
            raise RpcError(
                MIN_CONTEXT_SLOT_NOT_REACHED,
                "Minimum context slot has not been reached",
                {"contextSlot": slot},
            )
        return {"slot": slot, "apiVersion": API_VERSION}

    def _with_context(self, value: Any, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"context": self._context(config), "value": value}

    # ------------------------------------------------------------------------------------------------------
    # Cluster and clock

    def get_health(self, params: Any) -> str:
        _list_params(params, "getHealth", required=0, maximum=0)
        return "ok"

    def get_version(self, params: Any) -> dict[str, Any]:
        _list_params(params, "getVersion", required=0, maximum=0)
        return {"solana-core": SOLANA_CORE_VERSION, "feature-set": FEATURE_SET}

    def get_slot(self, params: Any) -> int:
        config = _config(_list_params(params, "getSlot", required=0, maximum=1), 0)
        self._context(config)
        return self.chain.slot

    def get_block_height(self, params: Any) -> int:
        config = _config(_list_params(params, "getBlockHeight", required=0, maximum=1), 0)
        self._context(config)
        return self.chain.block_height

    def get_latest_blockhash(self, params: Any) -> dict[str, Any]:
        config = _config(_list_params(params, "getLatestBlockhash", required=0, maximum=1), 0)
        blockhash, last_valid = self.chain.latest_blockhash()
        return self._with_context({"blockhash": str(blockhash), "lastValidBlockHeight": last_valid}, config)

    def is_blockhash_valid(self, params: Any) -> dict[str, Any]:
        items = _list_params(params, "isBlockhashValid", required=1, maximum=2)
        config = _config(items, 1)
        if not isinstance(items[0], str):
            raise _invalid("Invalid param: Invalid")
        try:
            blockhash = Hash.from_string(items[0])
        except ValueError as exc:
            raise _invalid("Invalid param: Invalid") from exc
        return self._with_context(self.chain.is_blockhash_valid(blockhash), config)

    def get_minimum_balance_for_rent_exemption(self, params: Any) -> int:
        items = _list_params(params, "getMinimumBalanceForRentExemption", required=1, maximum=2)
        _config(items, 1)
        return rent_exempt_minimum(_u64(items[0], "data length"))

    def get_fee_for_message(self, params: Any) -> dict[str, Any]:
        items = _list_params(params, "getFeeForMessage", required=1, maximum=2)
        config = _config(items, 1)
        raw = _decode_wire(items[0], "base64", "solana_message::versioned::VersionedMessage")
        try:
            message = from_bytes_versioned(raw)
        except ValueError as exc:
            raise _invalid(
                f"failed to deserialize solana_message::versioned::VersionedMessage: {exc}"
            ) from exc
        if not isinstance(message, Message | MessageV0):
            raise _invalid("invalid transaction message: unsupported message version")
        if isinstance(message, MessageV0):
            try:
                message.sanitize()
            except Exception as exc:
                raise _invalid(f"invalid transaction message: {exc}") from exc
        return self._with_context(self.chain.fee_for_message(message), config)

    # ------------------------------------------------------------------------------------------------------
    # Accounts

    def _ui_account(self, account: Account | None, config: Mapping[str, Any]) -> dict[str, Any] | None:
        if account is None:
            return None
        encoding = config.get("encoding") or "binary"
        if encoding not in _ACCOUNT_ENCODINGS:
            raise _invalid(
                f"Invalid params: unknown variant `{encoding}`, expected one of "
                "`binary`, `base58`, `base64`, `jsonParsed`, `base64+zstd`"
            )
        data = account.data
        data_slice = config.get("dataSlice")
        if data_slice is not None:
            if not isinstance(data_slice, dict):
                raise _invalid("Invalid params: dataSlice must be an object {offset, length}")
            offset = _u64(data_slice.get("offset"), "dataSlice.offset")
            length = _u64(data_slice.get("length"), "dataSlice.length")
            data = data[offset : offset + length]
        ui_data: Any
        if encoding in ("binary", "base58"):
            if len(data) > MAX_BASE58_BYTES:
                raise RpcError(
                    INVALID_REQUEST,
                    f"Encoded binary (base 58) data should be less than {MAX_BASE58_BYTES} bytes, "
                    "please use Base64 encoding.",
                )
            ui_data = b58encode(data) if encoding == "binary" else [b58encode(data), "base58"]
        elif encoding == "base64+zstd":
            raise _invalid("base64+zstd account encoding is not supported by this stand-in; use base64")
        else:  # base64, and jsonParsed, which falls back to base64 where no parser applies (always, here)
            ui_data = [base64.b64encode(data).decode("ascii"), "base64"]
        return {
            "data": ui_data,
            "executable": account.executable,
            "lamports": account.lamports,
            "owner": str(account.owner),
            "rentEpoch": account.rent_epoch,
            "space": len(account.data),
        }

    def get_account_info(self, params: Any) -> dict[str, Any]:
        items = _list_params(params, "getAccountInfo", required=1, maximum=2)
        config = _config(items, 1)
        key = _pubkey(items[0])
        return self._with_context(self._ui_account(self.chain.account(key), config), config)

    def get_multiple_accounts(self, params: Any) -> dict[str, Any]:
        items = _list_params(params, "getMultipleAccounts", required=1, maximum=2)
        config = _config(items, 1)
        if not isinstance(items[0], list):
            raise _invalid("Invalid params: expected an array of base58 pubkeys")
        if len(items[0]) > MAX_MULTIPLE_ACCOUNTS:
            raise _invalid(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        keys = [_pubkey(k) for k in items[0]]
        return self._with_context([self._ui_account(self.chain.account(k), config) for k in keys], config)

    def get_balance(self, params: Any) -> dict[str, Any]:
        items = _list_params(params, "getBalance", required=1, maximum=2)
        config = _config(items, 1)
        return self._with_context(self.chain.balance(_pubkey(items[0])), config)

    def request_airdrop(self, params: Any) -> str:
        items = _list_params(params, "requestAirdrop", required=2, maximum=3)
        _config(items, 2)
        key = _pubkey(items[0])
        lamports = _u64(items[1], "lamports")
        try:
            return str(self.chain.request_airdrop(key, lamports))
        except LocalnetError as exc:
            raise _invalid(f"airdrop request failed: {exc.message}") from exc

    # ------------------------------------------------------------------------------------------------------
    # Transactions

    def _decode_transaction(self, encoded: Any, config: Mapping[str, Any]) -> VersionedTransaction:
        raw = _decode_wire(encoded, _tx_encoding(config), _TX_TYPE)
        try:
            return self.chain.decode_transaction(raw)
        except InvalidTransaction as exc:
            raise _invalid(exc.message) from exc

    def send_transaction(self, params: Any) -> str:
        items = _list_params(params, "sendTransaction", required=1, maximum=2)
        config = _config(items, 1)
        preflight = config.get("preflightCommitment")
        if preflight is not None and preflight not in _COMMITMENTS:
            raise _invalid(f"Invalid params: unknown variant `{preflight}` for preflightCommitment")
        if config.get("maxRetries") is not None:
            _u64(config["maxRetries"], "maxRetries")
        self._context(config)
        tx = self._decode_transaction(items[0], config)
        try:
            return str(self.chain.send_transaction(tx, skip_preflight=_bool(config, "skipPreflight")))
        except SignatureVerificationFailure as exc:
            raise RpcError(
                SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure"
            ) from exc
        except PreflightFailure as exc:
            raise RpcError(PREFLIGHT_FAILURE, exc.message, simulation_json(exc.result)) from exc

    def simulate_transaction(self, params: Any) -> dict[str, Any]:
        items = _list_params(params, "simulateTransaction", required=1, maximum=2)
        config = _config(items, 1)
        context = self._context(config)
        sig_verify = _bool(config, "sigVerify")
        replace = _bool(config, "replaceRecentBlockhash")
        if sig_verify and replace:
            raise _invalid("sigVerify may not be used with replaceRecentBlockhash")
        tx = self._decode_transaction(items[0], config)
        try:
            simulation = self.chain.simulate_transaction(
                tx, sig_verify=sig_verify, replace_recent_blockhash=replace
            )
        except SignatureVerificationFailure as exc:
            raise RpcError(
                SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure"
            ) from exc
        accounts = None
        wanted = config.get("accounts")
        if wanted is not None:
            if not isinstance(wanted, dict) or not isinstance(wanted.get("addresses"), list):
                raise _invalid("Invalid params: accounts must be {addresses: [...], encoding}")
            account_config = {"encoding": wanted.get("encoding") or "base64"}
            if account_config["encoding"] in ("binary", "base58"):
                raise _invalid("base58 encoding not supported")
            accounts = []
            for address in wanted["addresses"]:
                key = _pubkey(address)
                after = simulation.accounts_after.get(key, self.chain.account(key))
                accounts.append(self._ui_account(after, account_config))
        value = simulation_json(
            simulation.result,
            accounts=accounts,
            inner_instructions=_bool(config, "innerInstructions"),
            replacement=simulation.replacement_blockhash,
        )
        return {"context": context, "value": value}

    def get_signature_statuses(self, params: Any) -> dict[str, Any]:
        items = _list_params(params, "getSignatureStatuses", required=1, maximum=2)
        config = _config(items, 1)
        if not isinstance(items[0], list):
            raise _invalid("Invalid params: expected an array of base58 signatures")
        if len(items[0]) > MAX_SIGNATURE_STATUSES:
            raise _invalid(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        signatures = [_signature(s) for s in items[0]]
        statuses: list[dict[str, Any] | None] = []
        for signature in signatures:
            record = self.chain.record(signature)
            if record is None:
                statuses.append(None)
                continue
            err = _err_json(record.result)
            statuses.append(
                {
                    "slot": record.slot,
                    "confirmations": None,
                    "err": err,
                    "status": {"Ok": None} if err is None else {"Err": err},
                    "confirmationStatus": "finalized",
                }
            )
        return self._with_context(statuses, config)

    def get_transaction(self, params: Any) -> dict[str, Any] | None:
        items = _list_params(params, "getTransaction", required=1, maximum=2)
        raw_config = items[1] if len(items) > 1 else None
        config = {"encoding": raw_config} if isinstance(raw_config, str) else _config(items, 1)
        encoding = config.get("encoding") or "json"
        if encoding not in ("json", "base64", "base58"):
            raise _invalid(
                f"{encoding} encoding is not supported by this stand-in; use json, base64 or base58"
            )
        max_version = config.get("maxSupportedTransactionVersion")
        if max_version is not None:
            _u64(max_version, "maxSupportedTransactionVersion")
        record = self.chain.record(_signature(items[0]))
        if record is None:
            return None
        version = record.transaction.message
        is_v0 = isinstance(version, MessageV0)
        if is_v0 and max_version is None:
            raise RpcError(
                UNSUPPORTED_TRANSACTION_VERSION,
                "Transaction version (0) is not supported by the requesting client. "
                "Please try the request again "
                'with the following configuration parameter: "maxSupportedTransactionVersion": 0',
            )
        answer: dict[str, Any] = {
            "slot": record.slot,
            "transaction": _ui_transaction(record, encoding),
            "meta": _ui_meta(record),
            "blockTime": record.block_time,
        }
        if max_version is not None:
            answer["version"] = 0 if is_v0 else "legacy"
        return answer

    def get_signatures_for_address(self, params: Any) -> list[dict[str, Any]]:
        """Landed transactions that name ``address`` among their account keys, newest first.

        Config as on a real node: ``limit`` (1..1000, default 1000), ``before`` / ``until`` (signatures,
        both exclusive), ``commitment``, ``minContextSlot``.  Only the history the stand-in still holds is
        searched (:data:`device.localnet.server.PERSISTED_TRANSACTIONS` across a restart).
        """
        items = _list_params(params, "getSignaturesForAddress", required=1, maximum=2)
        config = _config(items, 1)
        address = _pubkey(items[0])
        limit = config.get("limit")
        if limit is None:  # absent or null: the default
            limit = MAX_SIGNATURES_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SIGNATURES_LIMIT:
            raise _invalid(f"Invalid limit; max {MAX_SIGNATURES_LIMIT}")
        before = _optional_signature(config, "before")
        until = _optional_signature(config, "until")
        self._context(config)  # minContextSlot
        found: list[dict[str, Any]] = []
        started = before is None
        for record in reversed(list(self.chain.records())):
            if not started:
                started = record.signature == before
                continue
            if record.signature == until or len(found) == limit:
                break
            if _mentions(record, address):
                found.append(
                    {
                        "signature": str(record.signature),
                        "slot": record.slot,
                        "err": _err_json(record.result),
                        "memo": None,
                        "blockTime": record.block_time,
                        "confirmationStatus": "finalized",
                    }
                )
        return found


def _mentions(record: TransactionRecord, address: Pubkey) -> bool:
    return address in record.transaction.message.account_keys


def _optional_signature(config: Mapping[str, Any], key: str) -> Signature | None:
    value = config.get(key)
    return None if value is None else _signature(value)


def _ui_transaction(record: TransactionRecord, encoding: str) -> Any:
    tx = record.transaction
    if encoding == "base64":
        return [base64.b64encode(bytes(tx)).decode("ascii"), "base64"]
    if encoding == "base58":
        return [b58encode(bytes(tx)), "base58"]
    message = tx.message
    header = message.header
    ui_message: dict[str, Any] = {
        "accountKeys": [str(k) for k in message.account_keys],
        "header": {
            "numRequiredSignatures": header.num_required_signatures,
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
        },
        "recentBlockhash": str(message.recent_blockhash),
        "instructions": [
            {
                "programIdIndex": ix.program_id_index,
                "accounts": list(ix.accounts),
                "data": b58encode(bytes(ix.data)),
                "stackHeight": None,
            }
            for ix in message.instructions
        ],
    }
    if isinstance(message, MessageV0):
        ui_message["addressTableLookups"] = []
    return {"signatures": [str(s) for s in tx.signatures], "message": ui_message}


def _ui_meta(record: TransactionRecord) -> dict[str, Any]:
    result = record.result
    err = _err_json(result)
    return {
        "err": err,
        "status": {"Ok": None} if err is None else {"Err": err},
        "fee": result.fee,
        "preBalances": list(result.pre_balances),
        "postBalances": list(result.post_balances),
        "innerInstructions": [_ui_inner(i, items) for i, items in result.inner_instructions],
        "logMessages": list(result.logs),
        "preTokenBalances": [],
        "postTokenBalances": [],
        "rewards": [],
        "loadedAddresses": {"writable": [], "readonly": []},
        "computeUnitsConsumed": result.units_consumed,
    }


def _error_response(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
