"""Hypothesis strategies for bad input at every boundary of the device (see README.md).

Each family starts from *valid-ish* data (so inputs get deep into the code under test) and
mutates it at every level: JSON structure, types, enum spellings, ids, sizes, encodings.

* kind-1573 event contents (:func:`event_contents`) and their inner ``payload`` /
  ``recover_info`` texts (:func:`payload_texts`, :func:`recover_info_texts`);
* Solana JSON-RPC replies (:func:`rpc_replies`) for ``getMultipleAccounts``/``getAccountInfo``,
  ``getLatestBlockhash``, ``sendTransaction``, ``getSignatureStatuses`` …, plus transaction
  errors in their JSON form (:data:`transaction_errors`);
* chat HTTP requests (:func:`chat_requests`): Authorization variants, content types, bodies;
* config files as YAML *text* (:func:`yaml_texts`);
* display text (:data:`display_texts`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from solders.pubkey import Pubkey

from device.protocol import MAX_CONTENT_BYTES, ZERO_EVENT_ID, MachineStatus, Reason
from device.solana.authorization import BINDING_MAGIC, BINDING_VERSION

# ----------------------------------------------------------------------------------------- shared atoms

#: Any Unicode text, control characters and lone surrogates included.
any_text = st.text(st.characters(codec=None), max_size=40)
#: Characters that break things: controls, bidi, combining marks, wide/expanding, surrogates, NUL.
NASTY_CHARS = (
    "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x7f\x80\x9b\u00a0\u00ad\u0301\u034f\u200b\u200d\u200e\u202e"
    "\u2028\u2029\u2066\ufeff\ufffd\ufffe\uffff\ud800\udfff\U0001f600\U0001f468\u200d\U0001f469"
    "\ufdfa\u3300\u2167\u00df\u00e6\u20ac\u00b5\u0130\u0131\u01c4\u1e9e\uff21|~\\\"'<>{}[]%$"
)
nasty_text = st.text(st.sampled_from(NASTY_CHARS) | st.characters(codec=None), max_size=40)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 255, 256, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=15,
)

pubkeys = st.binary(min_size=32, max_size=32).map(lambda raw: str(Pubkey.from_bytes(raw)))
event_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)

# ----------------------------------------------------------------------------------------- protocol


def _bad_base58() -> st.SearchStrategy[Any]:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    return st.one_of(
        st.text(alphabet, min_size=30, max_size=46),  # right alphabet, maybe not 32 bytes
        st.text("0OIl" + alphabet, min_size=32, max_size=44),  # characters base58 excludes
        pubkeys.map(lambda k: k + "1"),
        pubkeys.map(lambda k: k[:-1]),
        pubkeys.map(str.lower),
        pubkeys.map(lambda k: " " + k),
        pubkeys.map(lambda k: k.encode().hex()),
        st.sampled_from(["", "1" * 32, "1" * 44, "z" * 44, "11111111111111111111111111111111"]),
        json_scalars,
    )


def one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in ``n`` draws (``st.integers`` would favour its bounds)."""
    return not draw(st.sampled_from(range(n)))


def mostly(
    valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any], odds: int = 5
) -> st.SearchStrategy[Any]:
    """``valid`` about ``odds - 1`` times out of ``odds``, else ``invalid``: mutations at one field at a
    time get deep, mutations everywhere at once stop at the first check."""
    return st.sampled_from([True] * (odds - 1) + [False]).flatmap(lambda ok: valid if ok else invalid)


user_values = mostly(pubkeys, _bad_base58())


def _bad_hex_id() -> st.SearchStrategy[Any]:
    return st.one_of(
        event_ids.map(str.upper),
        event_ids.map(lambda h: h[:-1]),
        event_ids.map(lambda h: h + "0"),
        event_ids.map(lambda h: h[:10] + "g" + h[11:]),
        event_ids.map(lambda h: "0x" + h[2:]),
        event_ids.map(lambda h: h[:32] + "\u0660" + h[33:]),  # Arabic-Indic digit: \d would match it
        st.sampled_from(["", "0", ZERO_EVENT_ID + "\n"]),
        json_scalars,
    )


id_values = mostly(event_ids | st.just(ZERO_EVENT_ID), _bad_hex_id())
status_values = mostly(
    st.sampled_from([s.value for s in MachineStatus]),
    st.sampled_from(["working", "AVAILABLE", "Working ", "", "Idle", 0, 1, 2, True, None, ["Working"]])
    | json_scalars,
)
reason_values = mostly(
    st.sampled_from([r.value for r in Reason]),
    st.sampled_from(["userrequest", "UserRequest\x00", "", 0, 4, 5, -1, False, {"UserRequest": None}])
    | json_scalars,
)
nonce_values = mostly(
    st.integers(0, 5),
    st.sampled_from([-1, 2**64 - 1, 2**64, 2**70, 1.0, 0.5, -0.0, 1e19, "0", "0x1", True, False, None, []])
    | json_scalars,
)
deadline_values = mostly(
    st.integers(1_600_000_000, 2_000_000_000),
    st.sampled_from(
        [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 0, 1.7e9, "6553f100", "0x6553f100", "1700000000"]
    )
    | json_scalars,
)


@st.composite
def byte_arrays(draw: st.DrawFn, *, binding: bool = False, machine: bytes | None = None) -> Any:
    """A JSON array of 64 integers 0..255 -- or a near miss (63/65 items, 256, -1, floats, strings)."""
    if binding:
        raw = bytearray(
            BINDING_MAGIC
            + bytes([draw(st.sampled_from([BINDING_VERSION, BINDING_VERSION, 0, 2, 255]))])
            + (
                machine
                if machine is not None and draw(st.booleans())
                else draw(st.binary(min_size=32, max_size=32))
            )
            + draw(st.sampled_from([0, 1, 1_000_000, 10**9, 2**64 - 1])).to_bytes(8, "little")
            + draw(st.binary(min_size=19, max_size=19))
        )
        items: list[Any] = list(raw)
    else:
        items = list(draw(st.binary(min_size=64, max_size=64)))
    mutation = draw(st.sampled_from(["none"] * 12 + ["short", "long", "item", "float", "string", "empty"]))
    if mutation == "short":
        items = items[: draw(st.integers(0, 63))]
    elif mutation == "long":
        items += draw(st.lists(st.integers(0, 255), min_size=1, max_size=3))
    elif mutation == "item":
        items[draw(st.integers(0, 63))] = draw(
            st.sampled_from([256, -1, 1.0, True, None, "1", 2**64]) | json_scalars
        )
    elif mutation == "float":
        items = [float(x) for x in items]
    elif mutation == "string":
        return base64.b64encode(bytes(x for x in items if isinstance(x, int) and 0 <= x < 256)).decode()
    elif mutation == "empty":
        items = []
    return items


@st.composite
def recover_info_docs(draw: st.DrawFn, *, machine: bytes | None = None) -> dict[str, Any]:
    """A recover_info object (NEW ``extra_data`` or OLD ``payload`` spelling), fields mutated."""
    spelling = draw(st.sampled_from(["extra_data"] * 6 + ["payload"] * 3 + ["both", "neither"]))
    doc: dict[str, Any] = {"signature": draw(byte_arrays())}
    bound = draw(st.booleans())
    if spelling in ("extra_data", "both"):
        doc["extra_data"] = draw(byte_arrays(binding=bound, machine=machine))
    if spelling in ("payload", "both"):
        doc["payload"] = draw(byte_arrays(binding=bound, machine=machine))
    if not one_in(draw, 10):
        doc["deadline"] = draw(deadline_values)
    return _mutate_object(draw, doc)


def _mutate_object(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """Sometimes drop, retype or add one key."""
    action = draw(st.sampled_from(["keep"] * 9 + ["drop", "retype", "add"]))
    if action == "drop" and doc:
        doc.pop(draw(st.sampled_from(sorted(doc))))
    elif action == "retype" and doc:
        doc[draw(st.sampled_from(sorted(doc)))] = draw(json_values)
    elif action == "add":
        doc[
            draw(
                st.sampled_from(["error", "namespace_id", "extra", "Request", "deadline"])
                | st.text(max_size=6)
            )
        ] = draw(json_values)
    return doc


@st.composite
def recover_info_texts(draw: st.DrawFn, *, machine: bytes | None = None) -> str | bytes:
    """The level-3 text: a (mutated) recover_info document, then maybe mangled as text."""
    return draw(mangled_json(recover_info_docs(machine=machine)))


@st.composite
def payload_docs(draw: st.DrawFn, *, machine: bytes | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "user": draw(user_values),
        "nonce": draw(nonce_values),
        "recover_info": draw(
            mostly(
                recover_info_texts(machine=machine).map(_as_text),
                recover_info_docs(machine=machine) | json_scalars,  # an object where the string belongs
            )
        ),
    }
    if draw(st.booleans()):
        doc["namespace_id"] = draw(st.one_of(st.integers(0, 2), st.none(), json_scalars))
    if one_in(draw, 6):
        doc["error"] = draw(
            st.one_of(
                st.fixed_dictionaries({"code": any_text, "message": any_text}),
                json_values,
            )
        )
    return _mutate_object(draw, doc)


@st.composite
def payload_texts(draw: st.DrawFn, *, machine: bytes | None = None) -> str | bytes:
    """The level-2 text: a (mutated) payload document, then maybe mangled as text."""
    return draw(mangled_json(payload_docs(machine=machine)))


def _as_text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "surrogateescape")


@st.composite
def message_docs(draw: st.DrawFn, *, machine: bytes | None = None) -> Any:
    name = draw(
        mostly(
            st.sampled_from(["Request", "Request", "Request", "Status", "Transaction"]),
            st.sampled_from(["request", "Other", "", "Request "]),
            odds=8,
        )
    )
    if name == "Transaction":
        body: Any = {
            "user": draw(user_values),
            "tokens": draw(st.one_of(st.integers(-(2**63), 2**63 - 1), nonce_values)),
        }
    else:
        body = {
            "to_status" if name != "Status" else "status": draw(status_values),
            "reason": draw(reason_values),
            "initial_request": draw(id_values),
            "payload": draw(
                mostly(
                    payload_texts(machine=machine).map(_as_text),
                    payload_docs(machine=machine) | json_scalars,  # an object instead of a JSON string
                )
            ),
        }
        body = _mutate_object(draw, body)
    shape = draw(st.sampled_from(["one"] * 12 + ["two", "none", "array", "scalar"]))
    if shape == "two":
        return {name: body, "Status": body}
    if shape == "none":
        return {}
    if shape == "array":
        return [{name: body}]
    if shape == "scalar":
        return body
    return {name: body}


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@st.composite
def mangled_json(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> str | bytes:
    """Serialize a document, then maybe damage the text: truncation, insertion, duplicate keys,
    NaN, BOM, deep nesting, padding to around 16 KiB, or another encoding."""
    doc = draw(docs)
    text = json.dumps(
        doc, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    )
    mangle = draw(
        st.sampled_from(
            ["none"] * 20
            + [
                "truncate",
                "insert",
                "delete",
                "dupkey",
                "nan",
                "bom",
                "deep",
                "pad",
                "bigint",
                "trailing",
                "ws",
            ]
        )
    )
    if mangle == "truncate" and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif mangle == "insert":
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from([*'{}[]",:\\', "\\u", "\\ud800", "\x00", "NaN"]) | nasty_text)
            + text[at:]
        )
    elif mangle == "delete" and text:
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + text[at + 1 :]
    elif mangle == "dupkey" and text.startswith("{") and len(text) > 2:
        first = text[1:].split(",", 1)[0].rstrip("}")
        text = "{" + first + "," + text[1:]
    elif mangle == "nan":
        text = text.replace("0", draw(st.sampled_from(["NaN", "Infinity", "-Infinity"])), 1)
    elif mangle == "bom":
        text = "\ufeff" + text
    elif mangle == "deep":
        depth = draw(st.sampled_from([31, 32, 33, 200, 5000]))
        text = text[:-1] + ',"x":' + _deep(depth) + "}" if text.endswith("}") else _deep(depth)
    elif mangle == "pad":
        text = pad_to_size(
            text, MAX_CONTENT_BYTES + draw(st.integers(-64, 64)), draw(st.sampled_from("aé€😀"))
        )
    elif mangle == "bigint":
        text = text.replace("0", "9" * draw(st.sampled_from([20, 400, 4301, 5000])), 1)
    elif mangle == "trailing":
        text += draw(st.sampled_from([" ", "\n", "x", "{}", ",", "\x00"]))
    elif mangle == "ws":
        text = text.replace(",", draw(st.sampled_from([" ,", "\n,", "\t,", "\u00a0,"])))
    encoding = draw(st.sampled_from(["str"] * 12 + ["utf-8", "utf-8", "latin-1", "utf-16", "junk"]))
    if encoding == "str":
        return text
    if encoding == "junk":
        raw = text.encode("utf-8", "surrogatepass")
        at = draw(st.integers(0, len(raw)))
        return (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]))
            + raw[at:]
        )
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


def pad_to_size(text: str, size: int, char: str = "a") -> str:
    """Grow a JSON object text with an unknown key so that it is about ``size`` UTF-8 bytes."""
    if not text.startswith("{") or not text.endswith("}"):
        return text
    filler_bytes = len(char.encode())
    missing = size - len(text.encode("utf-8", "surrogatepass")) - len(',"zz":""')
    if missing <= 0:
        return text
    filler = char * (missing // filler_bytes) + "a" * (missing % filler_bytes)
    inner = text[1:-1]
    return "{" + inner + ("," if inner else "") + '"zz":"' + filler + '"}'


@st.composite
def event_contents(draw: st.DrawFn, *, machine: bytes | None = None) -> str | bytes:
    """A kind-1573 event's content: a (mutated) message with its nested payload and recover_info
    texts, then maybe mangled; sometimes raw noise."""
    return draw(
        mostly(
            mangled_json(message_docs(machine=machine)),
            st.one_of(st.text(max_size=100), st.binary(max_size=100), json_values.map(json.dumps)),
            odds=8,
        )
    )


MACHINE_HEX = "ab" * 32
valid_tags = st.builds(
    lambda session, machine, extra, order: (
        [["s", session], ["p", machine], *extra] if order else [*extra, ["p", machine], ["s", session]]
    ),
    mostly(st.just("dephy-dsproxy-controller"), any_text | st.just("")),
    mostly(st.just(MACHINE_HEX) | event_ids, _bad_hex_id()),
    st.lists(st.lists(any_text, max_size=3), max_size=2),
    st.booleans(),
)
tag_lists = mostly(
    valid_tags,
    st.one_of(
        st.lists(
            st.lists(st.one_of(st.sampled_from(["s", "p", "e", "S", ""]), any_text, event_ids), max_size=4),
            max_size=5,
        ),
        st.lists(st.one_of(st.text(max_size=3), st.none(), st.integers()), max_size=3),
        json_values,
    ),
    odds=3,
)
kinds = mostly(
    st.just(1573), st.sampled_from([0, 1, 1572, 1574, -1573, 2**64, 1573.0, "1573", True]) | json_scalars
)

# ----------------------------------------------------------------------------------------- Solana RPC


#: Every runtime error name solders knows (TransactionError and InstructionError variants).
def known_runtime_names() -> frozenset[str]:
    import solders.transaction_status as ts

    names = {m for m in dir(ts.TransactionErrorFieldless) if m[:1].isupper()}
    names |= {m for m in dir(ts.InstructionErrorFieldless) if m[:1].isupper()}
    names |= {
        "InstructionError",
        "InsufficientFundsForRent",
        "DuplicateInstruction",
        "ProgramExecutionTemporarilyRestricted",
        "Custom",
        "BorshIoError",
    }
    return frozenset(names)


KNOWN_RUNTIME_NAMES = known_runtime_names()

_error_names = st.one_of(
    st.sampled_from(sorted(KNOWN_RUNTIME_NAMES)),
    st.sampled_from(["", "Weird Name!", "x", "ÄÖÜ", "a_b", "HTTP2Error", "💥", "Custom"]),
    st.text(max_size=12),
)
transaction_errors = st.recursive(
    st.one_of(
        _error_names,
        st.builds(
            lambda i, n: {"InstructionError": [i, {"Custom": n}]},
            st.integers(-1, 3) | json_scalars,
            st.sampled_from([6000, 6005, 6008, 100, 2000, 3012, 0, -1, 2**32, 2**70]) | json_scalars,
        ),
        st.builds(lambda i, n: {"InstructionError": [i, n]}, st.integers(0, 2), _error_names),
        st.builds(lambda n, d: {n: d}, _error_names, json_values),
        st.builds(lambda d: {"InstructionError": d}, json_values),
        json_values,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_error_names, inner, max_size=2),
    max_leaves=6,
)
log_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "Program log: AnchorError occurred. Error Code: SignatureExpired. Error Number: 6005.",
                "Program 11111111111111111111111111111111 failed: custom program error: 0x1775",
                "Error processing Instruction 0: custom program error: 0x1",
                "custom program error: 0xffffffffffffffffffffffffffffffff",
                "custom program error: 0x",
            ]
        ),
        any_text,
    ),
    max_size=4,
)


@dataclass(frozen=True)
class RpcReply:
    """One scripted HTTP reply: ``kind`` is ``result`` / ``error`` / ``raw`` / ``drop``."""

    kind: str
    value: Any = None
    status: int = 200

    def __repr__(self) -> str:  # short, for hypothesis' falsifying example output
        return f"RpcReply({self.kind!r}, {self.value!r:.300}, {self.status})"


BLOCKHASH = "EkSnNWid2cvwEVnVx9aBqawnmiCNiDgp3gUdkDPTKN1N"


def _ctx(value: Any) -> Any:
    return {"context": {"slot": 110, "apiVersion": "2.2.0"}, "value": value}


def _account_json(draw: st.DrawFn, owner: str | None) -> Any:
    data = draw(st.binary(max_size=200))
    account: dict[str, Any] = {
        "lamports": draw(st.integers(0, 10**12) | json_scalars),
        "owner": owner if owner is not None and draw(st.booleans()) else draw(pubkeys | json_scalars),
        "data": draw(
            st.one_of(
                st.just([base64.b64encode(data).decode(), "base64"]),
                st.just([base64.b64encode(data).decode(), "base58"]),
                st.just(base64.b64encode(data).decode()),
                st.just(["!!notbase64", "base64"]),
                json_values,
            )
        ),
        "executable": draw(st.booleans() | json_scalars),
        "rentEpoch": draw(st.sampled_from([18446744073709551615, 0, -1, 2**64]) | json_scalars),
        "space": draw(st.integers(0, 300) | json_scalars),
    }
    return _mutate_object(draw, account)


@st.composite
def rpc_results(draw: st.DrawFn, method: str, *, owner: str | None = None) -> Any:
    """A well-shaped or near-miss ``result`` for ``method``."""
    if one_in(draw, 7):
        return draw(json_values)
    if method in ("getMultipleAccounts",):
        n = draw(st.integers(0, 4))
        return _ctx([None if draw(st.booleans()) else _account_json(draw, owner) for _ in range(n)])
    if method == "getAccountInfo":
        return _ctx(None if draw(st.booleans()) else _account_json(draw, owner))
    if method == "getLatestBlockhash":
        value = {
            "blockhash": draw(st.just(BLOCKHASH) | pubkeys | user_values),
            "lastValidBlockHeight": draw(st.integers(0, 300) | nonce_values),
        }
        return _ctx(_mutate_object(draw, value))
    if method in ("getBlockHeight", "getMinimumBalanceForRentExemption"):
        return draw(st.integers(0, 10**9) | nonce_values)
    if method == "getBalance":
        return _ctx(draw(st.integers(0, 10**12) | nonce_values))
    if method == "sendTransaction":
        return draw(
            st.one_of(
                st.binary(min_size=64, max_size=64).map(lambda b: str(Pubkey.from_bytes(b[:32]))),
                any_text,
                json_scalars,
            )
        )
    if method == "getSignatureStatuses":

        def status() -> Any:
            if draw(st.booleans()):
                return None
            err = None if draw(st.booleans()) else draw(transaction_errors)
            value = {
                "slot": draw(st.integers(0, 10**6) | json_scalars),
                "confirmations": draw(st.none() | st.integers(0, 40) | json_scalars),
                "err": err,
                "status": {"Ok": None} if err is None else {"Err": err},
                "confirmationStatus": draw(
                    st.sampled_from(["processed", "confirmed", "finalized", None, "rooted", 2])
                ),
            }
            return _mutate_object(draw, value)

        return _ctx([status() for _ in range(draw(st.integers(0, 2)))])
    if method == "getVersion":
        return {"solana-core": draw(any_text | json_scalars), "feature-set": draw(st.integers(0, 2**32))}
    return draw(json_values)


@st.composite
def rpc_errors(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON-RPC error object, e.g. a preflight failure (-32002) with ``data.err``/``data.logs``."""
    code = draw(
        st.sampled_from([-32002, -32002, -32003, -32005, -32600, -32601, -32602, -32603, -32004, 0, 429])
        | json_scalars
    )
    message = draw(
        st.sampled_from(
            [
                "Transaction simulation failed: Blockhash not found",
                "Transaction simulation failed: This transaction has already been processed",
                "Transaction simulation failed: Attempt to debit an account but found no record of a prior"
                " credit.",
                "Transaction simulation failed: Error processing Instruction 0: custom program error: 0x1775",
                "Node is unhealthy",
                "insufficient funds for fee",
                "insufficient funds for rent",
            ]
        )
        | any_text
        | json_scalars
    )
    error: dict[str, Any] = {"code": code, "message": message}
    if draw(st.booleans()):
        error["data"] = draw(
            st.one_of(
                st.fixed_dictionaries(
                    {"err": transaction_errors, "logs": log_lines | json_values},
                    optional={"accounts": st.none(), "unitsConsumed": st.integers(0, 10**6)},
                ),
                json_values,
            )
        )
    return _mutate_object(draw, error)


@st.composite
def rpc_replies(draw: st.DrawFn, method: str, *, owner: str | None = None) -> RpcReply:
    """What the node answers to ``method``: a result, a JSON-RPC error, a raw (maybe non-JSON) body
    with any HTTP status, or a dropped connection."""
    kind = draw(st.sampled_from(["result"] * 5 + ["error"] * 3 + ["raw", "raw", "drop"]))
    if kind == "result":
        return RpcReply("result", draw(rpc_results(method, owner=owner)))
    if kind == "error":
        return RpcReply("error", draw(rpc_errors()))
    if kind == "raw":
        body = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "",
                        "null",
                        "[]",
                        "{}",
                        '{"jsonrpc":"2.0","id":1}',
                        '{"jsonrpc":"2.0","id":99,"result":null}',
                        '{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}}',
                        '{"jsonrpc":"2.0","id":1,"error":null}',
                        '{"jsonrpc":"2.0","id":1,"error":"boom"}',
                        "<html>502 Bad Gateway</html>",
                        '{"jsonrpc":"2.0","id":1,"result":' + "[" * 3000 + "]" * 3000 + "}",
                    ]
                ),
                st.text(max_size=60),
                json_values.map(json.dumps),
            )
        )
        status = draw(st.sampled_from([200] * 6 + [201, 204, 301, 400, 404, 413, 429, 500, 502, 503]))
        return RpcReply("raw", body, status)
    return RpcReply("drop")


# ----------------------------------------------------------------------------------------- chat HTTP


@dataclass(frozen=True)
class ChatCall:
    """One HTTP request to the chat socket (``auth`` is a recipe resolved by the test)."""

    method: str
    path: str
    auth: str  # "valid", "none", or a literal header value (or "valid:<mutation>")
    content_type: str | None
    body: bytes
    declared_length: str | None = None  # lie about Content-Length (None: the true length)

    def __repr__(self) -> str:
        return (
            f"ChatCall({self.method!r}, {self.path!r}, auth={self.auth!r:.80}, ct={self.content_type!r}, "
            f"body={self.body[:300]!r}{'...' if len(self.body) > 300 else ''} ({len(self.body)} bytes))"
        )


roles = mostly(
    st.sampled_from(["user", "user", "system", "assistant", "developer"]),
    st.sampled_from(["tool", "function", "USER", "", None, 1, True, ["user"]]) | any_text,
)
contents = mostly(
    st.text(max_size=60) | nasty_text,
    st.one_of(
        st.lists(
            st.one_of(
                st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=30)}),
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["image_url", "input_audio", "TEXT"]), "text": any_text}
                ),
                json_values,
            ),
            max_size=3,
        ),
        json_scalars,
    ),
)
messages_values = mostly(
    st.lists(
        mostly(
            st.fixed_dictionaries(
                {"role": roles, "content": contents},
                optional={"name": any_text, "tool_calls": json_values},
            ),
            st.fixed_dictionaries({"role": roles}) | json_scalars,
        ),
        min_size=1,
        max_size=4,
    ),
    json_scalars | st.just([]) | st.dictionaries(st.text(max_size=5), json_values, max_size=2),
)
int_params = mostly(
    st.integers(1, 8),
    st.sampled_from([0, -1, -(2**63), 2**31, 2**63, 2**64, 10**30, 1.5, 4.0, "8", True, False, None, []]),
    odds=3,
)


@st.composite
def chat_bodies(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {"messages": draw(messages_values)}
    optional = {
        "max_tokens": int_params,
        "max_completion_tokens": int_params,
        "stream": st.booleans() | st.sampled_from(["true", 1, 0, None, "yes", []]),
        "stop": st.none() | st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | json_values,
        "n": st.sampled_from([1, 2, 0, True, 1.0, "1", None]),
        "seed": st.sampled_from([0, 42, -1, 2**32, 2**32 - 1, True, 1.5, None]),
        "temperature": st.sampled_from([0, 0.0, 0.7, 2, 2.5, -0.1, True, "1", None])
        | st.floats(allow_nan=False),
        "top_p": st.sampled_from([0, 1, 1.01, -1, True, None]) | st.floats(allow_nan=False),
        "model": any_text | json_scalars,
        "stream_options": json_values,
        "tools": json_values,
    }
    for key, strategy in optional.items():
        if one_in(draw, 4):
            body[key] = draw(strategy)
    if one_in(draw, 5):
        return draw(json_values)
    return body


@st.composite
def chat_requests(draw: st.DrawFn, *, max_body_bytes: int) -> ChatCall:
    """A request to the chat socket: mostly ``POST /v1/chat/completions`` with a fuzzed body."""
    method, path = draw(
        st.sampled_from(
            [("POST", "/v1/chat/completions")] * 30
            + [
                ("GET", "/v1/chat/completions"),
                ("PUT", "/v1/chat/completions"),
                ("GET", "/v1/balance"),
                ("GET", "/v1/models"),
                ("GET", "/healthz"),
                ("POST", "/v1/completions"),
                ("GET", "/v1/chat/completions/../../etc/passwd"),
                ("GET", "/%ff"),
                ("DELETE", "/v1/balance"),
            ]
        )
    )
    auth = draw(
        mostly(
            st.just("valid"),
            st.sampled_from(
                [
                    "none",
                    "valid:lower-scheme",
                    "valid:no-scheme",
                    "valid:basic",
                    "valid:flip",
                    "valid:truncate",
                    "valid:double",
                    "valid:spaces",
                    "valid:expired",
                    "valid:long-ttl",
                    "valid:other-machine",
                    "valid:tab",
                    "Bearer",
                    "Bearer ",
                    "Bearer xct1....",
                    "Bearer xct1.a.b.c.d",
                    "bearer x" * 100,
                    "Bearer " + "A" * 600,
                    "Bearer xct1.11111111111111111111111111111111." + "0" * 64 + ".1.AA",
                ]
            )
            | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
                lambda t: "Bearer " + t
            ),
            odds=3,
        )
    )
    content_type = draw(
        st.sampled_from(
            ["application/json"] * 4
            + [
                None,
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/json; charset=latin-1",
                "multipart/form-data; boundary=x",
                "application/json; charset=utf-16",
            ]
        )
    )
    kind = draw(st.sampled_from(["json"] * 8 + ["nonjson", "bytes", "oversized", "near-limit", "empty"]))
    if kind == "json":
        body = json.dumps(draw(chat_bodies()), ensure_ascii=draw(st.booleans())).encode(
            "utf-8", "surrogatepass"
        )
    elif kind == "nonjson":
        body = draw(
            st.sampled_from(
                [
                    b"{",
                    b"[1,",
                    b"NaN",
                    b"\xff\xfe{}",
                    b"\xef\xbb\xbf{}",
                    b"null",
                    b"messages=1",
                    b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
                ]
            )
        )
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "oversized":
        body = (
            b'{"messages":[{"role":"user","content":"'
            + b"a" * (max_body_bytes + draw(st.integers(1, 5000)))
            + b'"}]}'
        )
    elif kind == "near-limit":
        pad = max_body_bytes - len(b'{"messages":[{"role":"user","content":""}]}') + draw(st.integers(-3, 3))
        body = b'{"messages":[{"role":"user","content":"' + b"a" * max(0, pad) + b'"}]}'
    else:
        body = b""
    declared = draw(st.sampled_from([None] * 30 + ["0", "-1", "abc", str(10**12)]))
    return ChatCall(method, path, auth, content_type, body, declared)


# ----------------------------------------------------------------------------------------- config YAML

CONFIG_KEYS = {
    "device": ["state_dir", "log_level"],
    "nostr": ["relays", "admin_pubkeys", "trusted_authors", "overlap_seconds"],
    "solana": ["rpc_url", "program", "program_id", "namespace_id", "commitment", "confirm_timeout_seconds"],
    "pricing": ["recharge_lamports", "max_recharge_lamports", "tokens_per_lamport"],
    "llm": ["model_path", "n_ctx", "n_threads", "max_tokens"],
    "chat": [
        "socket",
        "socket_mode",
        "tcp_listen",
        "max_body_bytes",
        "max_waiting",
        "token_max_ttl_seconds",
        "max_connections",
        "header_timeout_seconds",
        "keepalive_timeout_seconds",
    ],
    "indicators": ["console", "leds", "display"],
    "bogus": ["x"],
}
_yaml_plain = st.sampled_from(
    [
        "0",
        "1",
        "-5",
        "0x10",
        "0o17",
        "017",
        "1_000",
        "1e3",
        ".inf",
        "-.inf",
        ".nan",
        "~",
        "null",
        "true",
        "yes",
        "no",
        "on",
        "off",
        "''",
        '""',
        "2001-12-14",
        "2001-12-14t21:59:43.10-05:00",
        "12:30:00",
        "v2",
        "v1",
        "embedded",
        "ws://127.0.0.1:1",
        "/dev/serial0",
        "serlcd",
        "16",
        "20",
        "4",
        "0660",
        "'0660'",
        "[1, 2, 3]",
        "{}",
        "[]",
        "!!str 5",
        "!!set {a, b}",
        "!!binary aGVsbG8=",
        "[5, 6, 13]",
        "auto",
        "info",
        "127.0.0.1:80",
        "&a 5",
        '"\\x00"',
        '"\\U0010FFFF"',
    ]
)
_yaml_broken = st.sampled_from(
    [
        "9" * 5000,
        "2001-02-30",
        "!!binary '!!!'",
        "!!float x",
        "!!int 1.5",
        "!!omap [a: 1]",
        "!!python/object:os.system x",
        "!!timestamp 2001-99-99",
        "!custom x",
        "*a",
        "*undefined",
        '"\\ud800"',
        "| \n  block",
        "> \n  folded",
        "[a, b",
        "{a: 1",
        "- a\n- b",
        "'unterminated",
        '"bad \\q escape"',
        "%",
        "@",
        "`",
        "? x",
        "a: b: c",
    ]
)
yaml_scalars = mostly(
    _yaml_plain | st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=20).map(json.dumps),
    _yaml_broken | st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=20),
    odds=4,
)


@st.composite
def yaml_texts(draw: st.DrawFn) -> str | bytes:
    """A config file as text: real sections and keys with odd YAML values, plus YAML's own traps
    (anchors, aliases, merge keys, tags, deep nesting, tabs, BOM, NUL, non-UTF-8)."""
    lines: list[str] = []
    for section in draw(st.lists(st.sampled_from(sorted(CONFIG_KEYS)), max_size=4, unique=True)):
        anchor = draw(st.sampled_from(["", "", "", f" &{section}"]))
        lines.append(f"{section}:{anchor}")
        for key in draw(st.lists(st.sampled_from(CONFIG_KEYS[section]), max_size=4, unique=True)):
            indent = draw(st.sampled_from(["  "] * 12 + ["\t", "   ", " "]))
            lines.append(f"{indent}{key}: {draw(yaml_scalars)}")
        if one_in(draw, 7):
            lines.append("  <<: " + draw(st.sampled_from(["*device", "5", "[*llm]", "{a: 1}", "*nope"])))
    special = draw(
        st.sampled_from(
            ["none"] * 20
            + ["deep-flow", "deep-block", "laughs", "selfref", "listkey", "docs", "tab", "huge-int", "random"]
        )
    )
    if special == "deep-flow":
        n = draw(st.sampled_from([50, 900, 3000, 20000]))
        lines.append("device: " + "[" * n + "]" * n)
    elif special == "deep-block":
        n = draw(st.sampled_from([50, 400, 1500]))
        lines.extend(" " * i + "a:" for i in range(n))
    elif special == "laughs":
        lines += [
            "a: &a [x,x,x,x,x,x,x,x,x,x]",
            "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]",
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]",
            "device: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]",
        ]
    elif special == "selfref":
        lines += ["device: &r", "  state_dir: *r"]
    elif special == "listkey":
        lines += ["? [a, b]", ": 1"]
    elif special == "docs":
        lines += ["---", "device: {}", "---", "llm: {}"]
    elif special == "tab":
        lines.append("\tdevice: {}")
    elif special == "huge-int":
        lines.append("llm:\n  n_ctx: " + "9" * draw(st.sampled_from([19, 4300, 4301, 10000])))
    elif special == "random":
        lines.append(draw(st.text(max_size=80)))
    text = "\n".join(lines) + draw(st.sampled_from(["\n"] * 6 + ["", "\r\n", "\n\x00"]))
    encoding = draw(st.sampled_from(["str"] * 20 + ["bom", "utf-16", "latin-1", "junk"]))
    if encoding == "bom":
        return "\ufeff" + text
    if encoding == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    if encoding == "latin-1":
        return text.encode("latin-1", "replace") + b"\xe9"
    if encoding == "junk":
        return text.encode("utf-8", "surrogatepass") + b"\xff\xfe"
    return text


# ----------------------------------------------------------------------------------------- display text

#: Anything a status, a notice, a model name or an error message could hold.
display_texts = st.one_of(
    st.text(max_size=30),
    st.text(st.sampled_from(NASTY_CHARS), max_size=30),
    st.text(st.characters(codec=None), min_size=15, max_size=200),
    st.sampled_from(
        ["", " ", "|" * 20, "\ufdfa" * 3, "ß" * 16, "€" * 20, "\u0301" * 20, "a\u0301" * 12, "\t" * 20]
    ),
)
