r"""XePHY wire protocol for the LLM-proxy session: messages, payloads, ``recover_info``, tags.

Pure: no I/O, no network or hardware library.  Everything here turns text into frozen
dataclasses and back, and refuses anything else with a :class:`ProtocolError` carrying a
stable ``code``.  Reference: ``shared/reference/xephy-protocol.md`` §2 (transport) and §3
(schemas); the names below follow the Rust reference (``DephyDsProxyMessage``).

Transport (§2)
==============
Every message is a Nostr event of kind :data:`KIND` (1573) with exactly two tags, in this
order: ``["s", <session>]`` (the channel, :data:`DEFAULT_SESSION` for the LLM proxy) and
``["p", <machine pubkey hex>]`` (the machine the message concerns -- also on replies, never the
recipient).  :func:`event_tags` writes them; :func:`read_routing` checks an incoming event's
kind and tags before its content is decoded.

Three levels of JSON-in-a-string
================================
The event ``content`` is JSON, and two of its fields are *strings that contain JSON*:

=====  ============  ===========================================================================
level  document      where it lives, and its shape
=====  ============  ===========================================================================
1      message       the event's ``content``: ``{"Request":{…,"payload":"<level 2>"}}``
2      payload       a JSON *string* in 1: ``{"user":…,"nonce":…,"recover_info":"<level 3>"}``
3      recover_info  a JSON *string* in 2: ``{"signature":[64 ints],"extra_data":[64 ints],"deadline":N}``
=====  ============  ===========================================================================

Each level is serialized, then embedded as a string in the level above, so every level adds
one round of escaping.  A quote of level 3 is therefore written ``"`` in the recover_info text,
``\"`` in the payload text, and ``\\\"`` in the content (and ``\\\\\\\"`` once the relay frame
wraps the whole event as JSON again -- that fourth level is nostr-sdk's business, not ours)::

    {"Request":{..."payload":"{\"user\":\"AKnL…\",\"nonce\":0,\"recover_info\":\"{\\\"signature\\\":[77,…],…}\"}"}}

Rules that follow from this:

* :func:`decode_message` un-escapes level 1 only.  ``Request.payload`` / ``Status.payload`` are
  the level-2 text **exactly as received** (after the one JSON un-escape of its string
  literal).  The controller echoes that text verbatim in its ``Status`` replies; it must never
  be re-serialized, because peers compare it and because key order/spacing differ between
  writers (the OLD dApp writes ``recover_info, nonce, user``; Rust writes ``user, nonce,
  recover_info``).  Parsed access is a separate step: :func:`decode_payload`.
* Likewise :attr:`Payload.recover_info` is the level-3 text verbatim; :func:`decode_recover_info`
  parses it when the signature has to be checked.
* Writing goes the other way: :func:`encode_recover_info` → text, put it in a :class:`Payload`,
  :func:`encode_payload` → text, put it in a :class:`Request`/:class:`Status`,
  :func:`encode_message` → content.  ``json.dumps`` does the escaping at each step; never build
  these strings by hand.

Output is compact JSON with the field order of the Rust reference and non-ASCII written as
UTF-8 (``serde_json`` style), so ``encode_message(decode_message(v)) == v`` for everything a
serde peer writes.

Strictness (what is refused, and why)
=====================================
Decoding follows serde's semantics where they are safe (any key order; unknown keys ignored;
missing ``Option`` fields are ``None``) and is stricter where serde or Python would be lax:
duplicate keys, numeric enum values (the ``#[repr(u8)]`` numbers never appear on the wire),
floats or booleans where integers are expected, ``NaN``/``Infinity``, uppercase hex, content
over :data:`MAX_CONTENT_BYTES`, nesting deeper than :data:`MAX_JSON_DEPTH`, strings that are
not valid Unicode.  Decoding functions raise nothing but :class:`ProtocolError`.

Error codes: see :data:`ERROR_CODES`; the field path (``Request.initial_request``,
``payload.recover_info.signature[3]``) is in the message and in :attr:`ProtocolError.field`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, NoReturn, TypeAlias, TypeVar

from solders.pubkey import Pubkey

from device.errors import DeviceError
from device.solana.program import I64_MAX, I64_MIN, U64_MAX

__all__ = [
    "DEFAULT_SESSION",
    "ERROR_CODES",
    "KIND",
    "MAX_CONTENT_BYTES",
    "MAX_JSON_DEPTH",
    "ZERO_EVENT_ID",
    "MachineStatus",
    "Message",
    "Payload",
    "PayloadError",
    "ProtocolError",
    "Reason",
    "RecoverInfo",
    "Request",
    "Routing",
    "Status",
    "Transaction",
    "decode_message",
    "decode_payload",
    "decode_payload_error",
    "decode_recover_info",
    "encode_message",
    "encode_payload",
    "encode_recover_info",
    "event_tags",
    "read_routing",
]

KIND = 1573
"""Nostr event kind of every XePHY message (regular, stored)."""
DEFAULT_SESSION = "dephy-dsproxy-controller"
"""Value of the ``s`` tag for the LLM-proxy application."""
MAX_CONTENT_BYTES = 16 * 1024
"""Largest JSON text (UTF-8 bytes) any decoder here accepts, and any encoder emits."""
MAX_JSON_DEPTH = 32
"""Deepest array/object nesting accepted; real messages need 2."""
ZERO_EVENT_ID = "0" * 64
"""``initial_request`` meaning "none" (64 ``'0'`` chars, as the reference writes it)."""

_SIG_LEN = 64

ERROR_CODES: Mapping[str, str] = MappingProxyType(
    {
        "content_too_large": f"the JSON text is over {MAX_CONTENT_BYTES} UTF-8 bytes (encoders refuse too)",
        "content_not_utf8": "the bytes are not UTF-8 (or the text holds lone surrogates)",
        "malformed_json": "not JSON (syntax, NaN/Infinity, BOM, oversized number literal, not text at all)",
        "nesting_too_deep": f"arrays/objects nested deeper than {MAX_JSON_DEPTH}",
        "duplicate_key": "an object repeats a key",
        "unknown_message": "content is not one object with exactly one key Request, Status or Transaction",
        "missing_field": "a required field is absent",
        "invalid_field": "a field has the wrong JSON type or an invalid value",
        "invalid_enum": "a status/reason is not one of the variant names (numbers are refused)",
        "deadline_not_integer": "recover_info.deadline is not a JSON integer (e.g. the Anchor CLI's hex BN)",
        "wrong_kind": f"the event kind is not {KIND}",
        "missing_tag": "the event has no s or no p tag",
        "invalid_tag": "a tag is malformed (p not 64 lowercase hex, empty session, non-string items)",
    }
)
"""Every ``code`` a :class:`ProtocolError` can carry, with its meaning."""


class ProtocolError(DeviceError):
    """Refused wire data.  ``code`` is one of :data:`ERROR_CODES`; ``field`` is the path, if any."""

    def __init__(self, message: str, *, code: str, field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


def _fail(code: str, message: str, field: str | None = None) -> NoReturn:
    raise ProtocolError(message, code=code, field=field)


# ---------------------------------------------------------------------------------------------
# Enums and dataclasses
# ---------------------------------------------------------------------------------------------


class MachineStatus(StrEnum):
    """Rust ``MachineStatus``; on the wire as the variant name."""

    Available = "Available"
    Working = "Working"


class Reason(StrEnum):
    """Rust ``MachineStatusReason``; on the wire as the variant name."""

    UserRequest = "UserRequest"
    AdminRequest = "AdminRequest"
    UserBehaviour = "UserBehaviour"
    Reset = "Reset"
    LockFailed = "LockFailed"


@dataclass(frozen=True, slots=True)
class Request:
    """A request to move a machine to ``to_status``.  ``payload`` is the raw level-2 JSON text."""

    to_status: MachineStatus
    reason: Reason
    initial_request: str
    payload: str

    def __post_init__(self) -> None:
        _check_member(MachineStatus, self.to_status, "Request.to_status")
        _check_member(Reason, self.reason, "Request.reason")
        _event_id(self.initial_request, "Request.initial_request")
        _text(self.payload, "Request.payload")


@dataclass(frozen=True, slots=True)
class Status:
    """A machine's new status, answering ``initial_request``.  ``payload`` is raw level-2 JSON text."""

    status: MachineStatus
    reason: Reason
    initial_request: str
    payload: str

    def __post_init__(self) -> None:
        _check_member(MachineStatus, self.status, "Status.status")
        _check_member(Reason, self.reason, "Status.reason")
        _event_id(self.initial_request, "Status.initial_request")
        _text(self.payload, "Status.payload")


@dataclass(frozen=True, slots=True)
class Transaction:
    """A token grant (``tokens > 0``) or debit (``tokens < 0``) for the Solana account ``user``."""

    user: str
    tokens: int

    def __post_init__(self) -> None:
        _pubkey(self.user, "Transaction.user")
        _int(self.tokens, "Transaction.tokens", I64_MIN, I64_MAX, "i64")


Message: TypeAlias = Request | Status | Transaction


@dataclass(frozen=True, slots=True)
class PayloadError:
    """Why we refused a Request; carried as ``"error"`` in our ``Status`` reply payload."""

    code: str
    message: str

    def __post_init__(self) -> None:
        _text(self.code, "payload.error.code")
        _text(self.message, "payload.error.message")


@dataclass(frozen=True, slots=True)
class Payload:
    """Parsed level-2 payload.  ``recover_info`` stays the raw level-3 text (parse it with
    :func:`decode_recover_info`).  ``namespace_id`` is present for the NEW program only."""

    user: str
    nonce: int
    recover_info: str
    namespace_id: int | None = None
    error: PayloadError | None = None

    def __post_init__(self) -> None:
        _pubkey(self.user, "payload.user")
        _int(self.nonce, "payload.nonce", 0, U64_MAX, "u64")
        _text(self.recover_info, "payload.recover_info")
        if self.namespace_id is not None:
            _int(self.namespace_id, "payload.namespace_id", 0, U64_MAX, "u64")
        if self.error is not None and not isinstance(self.error, PayloadError):
            _fail("invalid_field", "payload.error: expected a PayloadError", "payload.error")


RecoverInfoFieldName: TypeAlias = Literal["payload", "extra_data"]


@dataclass(frozen=True, slots=True)
class RecoverInfo:
    """Parsed level-3 ``recover_info`` (Rust ``ED25519RecoverInfo``).

    ``field_name`` remembers how the 64 opaque bytes were spelled: ``"payload"`` (OLD program)
    or ``"extra_data"`` (NEW program); :func:`encode_recover_info` writes the same spelling."""

    signature: bytes
    extra_data: bytes
    deadline: int
    field_name: RecoverInfoFieldName

    def __post_init__(self) -> None:
        for name in ("signature", "extra_data"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != _SIG_LEN:
                _fail(
                    "invalid_field", f"recover_info.{name}: expected {_SIG_LEN} bytes", f"recover_info.{name}"
                )
        _int(self.deadline, "recover_info.deadline", I64_MIN, I64_MAX, "i64")
        if self.field_name not in ("payload", "extra_data"):
            _fail(
                "invalid_field",
                "recover_info.field_name: expected 'payload' or 'extra_data'",
                "recover_info.field_name",
            )


@dataclass(frozen=True, slots=True)
class Routing:
    """The envelope facts of an incoming event: its session (``s``) and machine (``p``)."""

    session: str
    machine: str


# ---------------------------------------------------------------------------------------------
# Value validators (shared by decoders and __post_init__; ``path`` names the field)
# ---------------------------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}")
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")
_E = TypeVar("_E", MachineStatus, Reason)


def _describe(value: object) -> str:
    """A short, always-safe description of a JSON value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {json.dumps(shown)}"
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _invalid(path: str, expected: str, value: object) -> NoReturn:
    _fail("invalid_field", f"{path}: expected {expected}, got {_describe(value)}", path)


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        _invalid(path, "a string", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail("invalid_field", f"{path}: the string holds a lone surrogate (not valid Unicode)", path)
    return value


def _int(value: object, path: str, lo: int, hi: int, kind: str) -> int:
    if type(value) is not int:
        _invalid(path, f"an integer ({kind})", value)
    if not lo <= value <= hi:
        _fail("invalid_field", f"{path}: {_describe(value)} is out of {kind} range", path)
    return value


def _event_id(value: object, path: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        _invalid(path, "a 64-char lowercase hex event id", value)
    return value


def _pubkey(value: object, path: str) -> str:
    if not isinstance(value, str) or not _BASE58.fullmatch(value):
        _invalid(path, "a base58 Solana public key", value)
    try:
        canonical = str(Pubkey.from_string(value))
    except ValueError:
        _fail("invalid_field", f"{path}: {_describe(value)} does not decode to 32 bytes", path)
    if canonical != value:  # pragma: no cover - base58 of a fixed width is canonical; belt and braces
        _fail("invalid_field", f"{path}: {_describe(value)} is not canonical base58", path)
    return value


def _enum(cls: type[_E], value: object, path: str) -> _E:
    names = ", ".join(m.value for m in cls)
    if isinstance(value, int) and not isinstance(value, bool):
        _fail(
            "invalid_enum",
            f"{path}: expected one of {names}, got the number {_describe(value)} "
            "(the #[repr(u8)] numbers never appear on the wire)",
            path,
        )
    if not isinstance(value, str):
        _fail("invalid_enum", f"{path}: expected one of {names}, got {_describe(value)}", path)
    try:
        return cls(value)
    except ValueError:
        _fail("invalid_enum", f"{path}: expected one of {names}, got {_describe(value)}", path)


def _check_member(cls: type[_E], value: object, path: str) -> None:
    if not isinstance(value, cls):
        _fail("invalid_enum", f"{path}: expected a {cls.__name__}, got {_describe(value)}", path)


def _byte_array(value: object, path: str) -> bytes:
    """A JSON array of exactly 64 integers 0..255 (how ``serde_with::Bytes`` writes ``[u8; 64]``)."""
    if not isinstance(value, list):
        _invalid(path, f"an array of {_SIG_LEN} integers 0..255", value)
    if len(value) != _SIG_LEN:
        _fail("invalid_field", f"{path}: expected {_SIG_LEN} items, got {len(value)}", path)
    for i, item in enumerate(value):
        if type(item) is not int or not 0 <= item <= 255:
            _invalid(f"{path}[{i}]", "an integer 0..255", item)
    return bytes(value)


# ---------------------------------------------------------------------------------------------
# JSON loading and dumping
# ---------------------------------------------------------------------------------------------

# A JSON string literal (closing quote optional, so an unterminated one cannot make the scan
# quadratic) or a bracket.  Used to measure nesting before json.loads recurses into it.
_DEPTH_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def _too_deep(text: str) -> bool:
    depth = 0
    for match in _DEPTH_TOKEN.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            _fail("duplicate_key", f"duplicate key {json.dumps(key)} in a JSON object")
        obj[key] = value
    return obj


def _no_constants(name: str) -> NoReturn:
    _fail("malformed_json", f"{name} is not JSON")


def _load_json(data: object, what: str) -> object:
    """Size-check, UTF-8-decode, depth-check and parse ``data``; refuse duplicate keys."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > MAX_CONTENT_BYTES:
            _fail("content_too_large", f"{what} is {len(raw)} bytes, over the {MAX_CONTENT_BYTES}-byte limit")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            _fail("content_not_utf8", f"{what} is not UTF-8 (byte {exc.start})")
    elif isinstance(data, str):
        text = data
        if len(text) > MAX_CONTENT_BYTES:
            _fail("content_too_large", f"{what} is over the {MAX_CONTENT_BYTES}-byte limit")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            _fail("content_not_utf8", f"{what} holds a lone surrogate at {exc.start} (not UTF-8 encodable)")
        if size > MAX_CONTENT_BYTES:
            _fail("content_too_large", f"{what} is {size} bytes, over the {MAX_CONTENT_BYTES}-byte limit")
    else:
        _fail("malformed_json", f"{what}: expected JSON text (str or bytes), got {_describe(data)}")
    if _too_deep(text):
        _fail("nesting_too_deep", f"{what} nests arrays/objects deeper than {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:  # pragma: no cover - _too_deep bounds the depth first
        _fail("nesting_too_deep", f"{what} nests arrays/objects too deeply")
    except ValueError as exc:  # JSONDecodeError, and int literals over Python's digit limit
        _fail("malformed_json", f"{what} is not valid JSON: {exc}")


def _dump(obj: object, what: str) -> str:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        _fail("content_too_large", f"encoded {what} would be {size} bytes, over {MAX_CONTENT_BYTES}")
    return text


def _object(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        _invalid(path, "a JSON object", value)
    return value


def _get(obj: dict[str, object], key: str, path: str) -> object:
    if key not in obj:
        _fail("missing_field", f"{path}.{key}: missing", f"{path}.{key}")
    return obj[key]


# ---------------------------------------------------------------------------------------------
# Messages (level 1)
# ---------------------------------------------------------------------------------------------


def decode_message(content: str | bytes) -> Message:
    """Parse an event's ``content`` into a :class:`Request`, :class:`Status` or :class:`Transaction`.

    Payload strings are kept verbatim (see the module docstring).  Raises only
    :class:`ProtocolError`."""
    doc = _load_json(content, "content")
    if not isinstance(doc, dict) or len(doc) != 1:
        keys = f"{len(doc)} keys" if isinstance(doc, dict) else _describe(doc)
        _fail(
            "unknown_message",
            "content must be one JSON object with exactly one key "
            f"(Request, Status or Transaction), got {keys}",
        )
    ((name, body),) = doc.items()
    if name == "Transaction":
        obj = _object(body, name)
        return Transaction(
            user=_pubkey(_get(obj, "user", name), f"{name}.user"),
            tokens=_int(_get(obj, "tokens", name), f"{name}.tokens", I64_MIN, I64_MAX, "i64"),
        )
    if name not in ("Request", "Status"):
        _fail(
            "unknown_message", f"unknown message {_describe(name)} (expected Request, Status or Transaction)"
        )
    obj = _object(body, name)
    status_key = "to_status" if name == "Request" else "status"
    status = _enum(MachineStatus, _get(obj, status_key, name), f"{name}.{status_key}")
    reason = _enum(Reason, _get(obj, "reason", name), f"{name}.reason")
    initial_request = _event_id(_get(obj, "initial_request", name), f"{name}.initial_request")
    payload = _text(_get(obj, "payload", name), f"{name}.payload")
    if name == "Request":
        return Request(status, reason, initial_request, payload)
    return Status(status, reason, initial_request, payload)


def encode_message(message: Message) -> str:
    """Compact content JSON in the Rust field order (§3.4); payload strings embedded verbatim."""
    body: dict[str, object]
    match message:
        case Request():
            name, body = (
                "Request",
                {
                    "to_status": message.to_status.value,
                    "reason": message.reason.value,
                    "initial_request": message.initial_request,
                    "payload": message.payload,
                },
            )
        case Status():
            name, body = (
                "Status",
                {
                    "status": message.status.value,
                    "reason": message.reason.value,
                    "initial_request": message.initial_request,
                    "payload": message.payload,
                },
            )
        case Transaction():
            name, body = "Transaction", {"user": message.user, "tokens": message.tokens}
        case _:
            raise TypeError(f"not a protocol message: {type(message).__name__}")
    return _dump({name: body}, "content")


# ---------------------------------------------------------------------------------------------
# Payload (level 2)
# ---------------------------------------------------------------------------------------------


def decode_payload(text: str | bytes) -> Payload:
    """Parse a Request/Status ``payload`` string.  Any key order; unknown keys ignored;
    ``recover_info`` kept verbatim (not parsed here)."""
    obj = _object(_load_json(text, "payload"), "payload")
    user = _pubkey(_get(obj, "user", "payload"), "payload.user")
    nonce = _int(_get(obj, "nonce", "payload"), "payload.nonce", 0, U64_MAX, "u64")
    recover_info = _text(_get(obj, "recover_info", "payload"), "payload.recover_info")
    namespace_id = obj.get("namespace_id")  # absent or null: OLD program
    if namespace_id is not None:
        namespace_id = _int(namespace_id, "payload.namespace_id", 0, U64_MAX, "u64")
    return Payload(user, nonce, recover_info, namespace_id, _payload_error(obj))


def decode_payload_error(text: str | bytes) -> PayloadError | None:
    """The ``error`` of a reply's payload (a refusal's is ``{"error": {"code", "message"}}`` alone, a
    full payload may carry one too); None when it has none."""
    return _payload_error(_object(_load_json(text, "payload"), "payload"))


def _payload_error(obj: dict[str, object]) -> PayloadError | None:
    if (error_obj := obj.get("error")) is None:
        return None
    eobj = _object(error_obj, "payload.error")
    return PayloadError(
        code=_text(_get(eobj, "code", "payload.error"), "payload.error.code"),
        message=_text(_get(eobj, "message", "payload.error"), "payload.error.message"),
    )


def encode_payload(payload: Payload) -> str:
    """Compact payload JSON, keys in this order: ``namespace_id`` (if set), ``user``, ``nonce``,
    ``recover_info`` (embedded verbatim), ``error`` (if set)."""
    obj: dict[str, object] = {}
    if payload.namespace_id is not None:
        obj["namespace_id"] = payload.namespace_id
    obj["user"] = payload.user
    obj["nonce"] = payload.nonce
    obj["recover_info"] = payload.recover_info
    if payload.error is not None:
        obj["error"] = {"code": payload.error.code, "message": payload.error.message}
    return _dump(obj, "payload")


# ---------------------------------------------------------------------------------------------
# recover_info (level 3)
# ---------------------------------------------------------------------------------------------


def decode_recover_info(text: str | bytes, *, path: str = "recover_info") -> RecoverInfo:
    """Parse a ``recover_info`` string (OLD ``payload`` or NEW ``extra_data`` spelling).

    ``path`` prefixes field names in errors, e.g. ``path="payload.recover_info"`` when the
    text came out of a :class:`Payload`."""
    obj = _object(_load_json(text, path), path)
    has_old, has_new = "payload" in obj, "extra_data" in obj
    if has_old and has_new:
        _fail(
            "invalid_field", f"{path}: has both 'payload' (OLD program) and 'extra_data' (NEW program)", path
        )
    if not (has_old or has_new):
        _fail(
            "missing_field",
            f"{path}.extra_data: missing (nor is the OLD spelling 'payload' present)",
            f"{path}.extra_data",
        )
    field_name: RecoverInfoFieldName = "payload" if has_old else "extra_data"
    signature = _byte_array(_get(obj, "signature", path), f"{path}.signature")
    extra_data = _byte_array(obj[field_name], f"{path}.{field_name}")
    deadline = _get(obj, "deadline", path)
    if type(deadline) is not int:
        hint = ""
        if isinstance(deadline, str) and re.fullmatch(r"(0x)?[0-9a-fA-F]{1,16}", deadline):
            hint = (
                "; the NEW Anchor CLI writes deadline as a hex BN string, which no controller parses:"
                f" send the JSON integer instead (read as hex, {json.dumps(deadline)} = {int(deadline, 16)})"
            )
        _fail(
            "deadline_not_integer",
            f"{path}.deadline: expected a JSON integer (unix seconds), got {_describe(deadline)}{hint}",
            f"{path}.deadline",
        )
    _int(deadline, f"{path}.deadline", I64_MIN, I64_MAX, "i64")
    return RecoverInfo(signature, extra_data, deadline, field_name)


def encode_recover_info(info: RecoverInfo) -> str:
    """Compact ``{"signature":[...],"<field_name>":[...],"deadline":N}``."""
    obj = {
        "signature": list(info.signature),
        info.field_name: list(info.extra_data),
        "deadline": info.deadline,
    }
    return _dump(obj, "recover_info")


# ---------------------------------------------------------------------------------------------
# Tags / routing (§2.2)
# ---------------------------------------------------------------------------------------------


def _session(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        _fail("invalid_tag", f"{path}: expected a non-empty session string, got {_describe(value)}", path)
    return value


def _machine(value: object, path: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        _fail("invalid_tag", f"{path}: expected a 64-char lowercase hex pubkey, got {_describe(value)}", path)
    return value


def event_tags(session: str, machine_pubkey_hex: str) -> list[list[str]]:
    """The two tags every message carries, in order: ``[["s", session], ["p", machine]]``."""
    return [["s", _session(session, "s")], ["p", _machine(machine_pubkey_hex, "p")]]


def read_routing(kind: int, tags: Sequence[Sequence[str]]) -> Routing:
    """Check an incoming event's envelope: kind 1573, first ``s`` tag, first ``p`` tag (hex)."""
    if type(kind) is not int or kind != KIND:
        _fail("wrong_kind", f"event kind is {_describe(kind)}, expected {KIND}")
    if not isinstance(tags, list | tuple):
        _fail("invalid_tag", f"tags: expected an array of arrays, got {_describe(tags)}", "tags")
    found: dict[str, str] = {}
    for i, tag in enumerate(tags):
        if not isinstance(tag, list | tuple) or not tag or not isinstance(tag[0], str):
            _fail(
                "invalid_tag",
                f"tags[{i}]: expected a non-empty array of strings, got {_describe(tag)}",
                f"tags[{i}]",
            )
        name = tag[0]
        if name not in ("s", "p") or name in found:
            continue
        if len(tag) < 2:
            _fail("invalid_tag", f"tags[{i}]: '{name}' tag has no value", f"tags[{i}]")
        check = _session if name == "s" else _machine
        found[name] = check(tag[1], f"tags[{i}] ({name})")
    for name, meaning in (("s", "session"), ("p", "machine")):
        if name not in found:
            _fail("missing_tag", f"event has no '{name}' ({meaning}) tag", name)
    return Routing(session=found["s"], machine=found["p"])
