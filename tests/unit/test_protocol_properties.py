"""device.protocol: Hypothesis round-trip and fuzz properties.

Round trips: generated Request/Status/Transaction, Payload and RecoverInfo survive
encode → decode unchanged, including a full three-level nesting.  Fuzz: arbitrary text, bytes,
JSON values and mutated valid documents given to the decoders either decode or raise
ProtocolError -- never KeyError, TypeError, ValueError, RecursionError, UnicodeError, ...
"""

from __future__ import annotations

import json
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from device.protocol import (
    KIND,
    MachineStatus,
    Message,
    Payload,
    PayloadError,
    ProtocolError,
    Reason,
    RecoverInfo,
    Request,
    Routing,
    Status,
    Transaction,
    decode_message,
    decode_payload,
    decode_recover_info,
    encode_message,
    encode_payload,
    encode_recover_info,
    event_tags,
    read_routing,
)

U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
pubkeys = st.binary(min_size=32, max_size=32).map(lambda raw: str(Pubkey.from_bytes(raw)))
event_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
texts = st.text(max_size=300)  # any Unicode scalar value, control characters included

requests = st.builds(Request, st.sampled_from(MachineStatus), st.sampled_from(Reason), event_ids, texts)
statuses = st.builds(Status, st.sampled_from(MachineStatus), st.sampled_from(Reason), event_ids, texts)
transactions = st.builds(Transaction, pubkeys, I64)
messages: st.SearchStrategy[Message] = st.one_of(requests, statuses, transactions)

recover_infos = st.builds(
    RecoverInfo,
    st.binary(min_size=64, max_size=64),
    st.binary(min_size=64, max_size=64),
    I64,
    st.sampled_from(["payload", "extra_data"]),
)
payload_errors = st.builds(PayloadError, texts, texts)
payloads = st.builds(
    Payload,
    pubkeys,
    U64,
    st.one_of(recover_infos.map(encode_recover_info), texts),
    st.none() | U64,
    st.none() | payload_errors,
)

# --- round trips ------------------------------------------------------------------------------


@given(messages)
def test_message_round_trip(message: Message) -> None:
    text = encode_message(message)
    assert decode_message(text) == message
    assert decode_message(text.encode("utf-8")) == message
    assert encode_message(decode_message(text)) == text


@given(payloads)
def test_payload_round_trip(payload: Payload) -> None:
    text = encode_payload(payload)
    assert decode_payload(text) == payload
    assert encode_payload(decode_payload(text)) == text


@given(recover_infos)
def test_recover_info_round_trip(info: RecoverInfo) -> None:
    text = encode_recover_info(info)
    assert decode_recover_info(text) == info
    assert encode_recover_info(decode_recover_info(text)) == text


@given(recover_infos, pubkeys, U64, st.none() | U64, st.sampled_from([Request, Status]), event_ids)
def test_three_levels_nest_and_unnest(
    info: RecoverInfo,
    user: str,
    nonce: int,
    namespace_id: int | None,
    kind: type[Request] | type[Status],
    event_id: str,
) -> None:
    payload = Payload(user, nonce, encode_recover_info(info), namespace_id)
    message = kind(MachineStatus.Working, Reason.UserRequest, event_id, encode_payload(payload))
    decoded = decode_message(encode_message(message))
    assert isinstance(decoded, Request | Status)
    assert decode_payload(decoded.payload) == payload
    assert decode_recover_info(decode_payload(decoded.payload).recover_info) == info


@given(st.text(min_size=1, max_size=50), event_ids)
def test_tags_round_trip(session: str, machine: str) -> None:
    assert read_routing(KIND, event_tags(session, machine)) == Routing(session, machine)


# --- fuzz: decoders raise ProtocolError or nothing --------------------------------------------

DECODERS: tuple[Callable[[str | bytes], object], ...] = (decode_message, decode_payload, decode_recover_info)
FIELD_NAMES = [
    "Request",
    "Status",
    "Transaction",
    "to_status",
    "status",
    "reason",
    "initial_request",
    "payload",
    "user",
    "tokens",
    "namespace_id",
    "nonce",
    "recover_info",
    "error",
    "code",
    "message",
    "signature",
    "extra_data",
    "deadline",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 255),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        ["Working", "UserRequest", "67c92187", "0" * 64, "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(st.integers(0, 255), min_size=63, max_size=65),
        st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=25,
)
near_json_text = st.text(alphabet='{}[]":,.-+0123456789eEtrufalsnNI\\u \t\nabcdef\ud800é', max_size=200)


def outcome(decoder: Callable[[str | bytes], object], data: object) -> object:
    """Decode, turning the one allowed exception into a value; anything else fails the test."""
    try:
        return decoder(data)  # type: ignore[arg-type]
    except ProtocolError as exc:
        assert exc.code and exc.message
        return exc


def assert_only_protocol_errors(data: object) -> None:
    for decoder in DECODERS:
        result = outcome(decoder, data)
        if isinstance(result, Request | Status | Transaction):
            assert decode_message(encode_message(result)) == result
        elif isinstance(result, Payload):
            assert decode_payload(encode_payload(result)) == result
        elif isinstance(result, RecoverInfo):
            assert decode_recover_info(encode_recover_info(result)) == result


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary(), near_json_text, st.text().map(str.encode)))
def test_fuzz_text_and_bytes(data: str | bytes) -> None:
    assert_only_protocol_errors(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_json_values(value: object) -> None:
    assert_only_protocol_errors(json.dumps(value))
    assert_only_protocol_errors(json.dumps(value, ensure_ascii=False).encode())


def _mutate(data: st.DataObject, doc: object, depth: int = 0) -> object:
    """Replace, delete or add one key somewhere in a decoded JSON document."""
    if isinstance(doc, dict) and doc and depth < 4:
        key = data.draw(st.sampled_from(sorted(doc)))
        action = data.draw(st.sampled_from(["recurse", "replace", "delete", "add"]))
        out = dict(doc)
        if action == "recurse":
            out[key] = _mutate(data, doc[key], depth + 1)
        elif action == "replace":
            out[key] = data.draw(json_values)
        elif action == "delete":
            del out[key]
        else:
            out[data.draw(st.sampled_from(FIELD_NAMES))] = data.draw(json_values)
        return out
    if isinstance(doc, str) and doc.startswith("{") and depth < 4:
        try:  # a JSON-in-a-string level: mutate inside it and re-embed
            return json.dumps(_mutate(data, json.loads(doc), depth + 1))
        except ValueError:
            return doc
    if isinstance(doc, list) and doc:
        out_list = list(doc)
        out_list[data.draw(st.integers(0, len(doc) - 1))] = data.draw(json_values)
        return out_list
    return data.draw(json_values)


valid_payloads = st.builds(
    Payload, pubkeys, U64, recover_infos.map(encode_recover_info), st.none() | U64, st.none() | payload_errors
)
valid_documents = st.one_of(
    recover_infos.map(encode_recover_info),
    valid_payloads.map(encode_payload),
    st.builds(
        Request,
        st.sampled_from(MachineStatus),
        st.sampled_from(Reason),
        event_ids,
        valid_payloads.map(encode_payload),
    ).map(encode_message),
    transactions.map(encode_message),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), valid_documents)
def test_fuzz_mutated_valid_documents(data: st.DataObject, document: str) -> None:
    mutated = json.dumps(_mutate(data, json.loads(document)))
    assert_only_protocol_errors(mutated)
    message = outcome(decode_message, mutated)
    if isinstance(message, Request):  # walk down the levels like the controller would
        assert_only_protocol_errors(message.payload)
        payload = outcome(decode_payload, message.payload)
        if isinstance(payload, Payload):
            outcome(lambda t: decode_recover_info(t, path="payload.recover_info"), payload.recover_info)


@settings(max_examples=300)
@given(
    st.one_of(st.integers(), st.just(KIND), st.text(max_size=5), st.none(), st.booleans()),
    st.one_of(
        st.lists(
            st.lists(st.one_of(st.sampled_from(["s", "p", "e"]), st.text(max_size=70), event_ids)), max_size=5
        ),
        st.lists(st.one_of(st.text(max_size=3), st.none(), st.integers()), max_size=3),
        json_values,
    ),
)
def test_fuzz_read_routing(kind: object, tags: object) -> None:
    try:
        routing = read_routing(kind, tags)  # type: ignore[arg-type]
    except ProtocolError:
        return
    assert routing.session and len(routing.machine) == 64
