"""device.protocol: golden vectors from xephy-protocol.md §3.4/§6.7, one test per refusal code, tags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from device.errors import DeviceError
from device.protocol import (
    DEFAULT_SESSION,
    ERROR_CODES,
    KIND,
    MAX_CONTENT_BYTES,
    MAX_JSON_DEPTH,
    ZERO_EVENT_ID,
    MachineStatus,
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
    pay_reference_tag,
    read_pay_reference,
    read_routing,
)

USER = "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9"
MACHINE = "d041ea9854f2117b82452457c4e6d6593a96524027cd4032d2f40046deb78d93"
EXTRA = bytes.fromhex("00112233445566778899aabbccddeeff") + bytes(48)
# §6.7 signatures over the NEW (namespace "Gacha", id 0) and OLD ("Example") texts.
SIG_NEW = bytes.fromhex(
    "4d0b4f42edf48cd4af2aef5e13d457643c0a7b414b9a3d635d0c9e1afa60e279"
    "313020e9cfa46f3cc0e108f49a393a3514066a984cdc3f37b46636ab52edc20c"
)
SIG_OLD = bytes.fromhex(
    "40a208e3addbfa7fd0496adc7f60aa0c2dc2812562063bd2854033cd0eb15e16"
    "4e76c4cca2e3ed2021acf9d8382a56800dda4b2aac08a88cb3d861698847e200"
)

# §3.4, verbatim (raw string: the backslashes are the content's own).
NEW_REQUEST = r"""{"Request":{"to_status":"Working","reason":"UserRequest","initial_request":"0000000000000000000000000000000000000000000000000000000000000000","payload":"{\"namespace_id\":0,\"user\":\"AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9\",\"nonce\":0,\"recover_info\":\"{\\\"signature\\\":[77,11,79,66,237,244,140,212,175,42,239,94,19,212,87,100,60,10,123,65,75,154,61,99,93,12,158,26,250,96,226,121,49,48,32,233,207,164,111,60,192,225,8,244,154,57,58,53,20,6,106,152,76,220,63,55,180,102,54,171,82,237,194,12],\\\"extra_data\\\":[0,17,34,51,68,85,102,119,136,153,170,187,204,221,238,255,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\\\"deadline\\\":1741234567}\"}"}}"""  # noqa: E501

# OLD program as the dsproxy dApp writes it: payload keys recover_info, nonce, user; "payload" spelling.
OLD_REQUEST = r"""{"Request":{"to_status":"Working","reason":"UserRequest","initial_request":"0000000000000000000000000000000000000000000000000000000000000000","payload":"{\"recover_info\":\"{\\\"signature\\\":[64,162,8,227,173,219,250,127,208,73,106,220,127,96,170,12,45,194,129,37,98,6,59,210,133,64,51,205,14,177,94,22,78,118,196,204,162,227,237,32,33,172,249,216,56,42,86,128,13,218,75,42,172,8,168,140,179,216,97,105,136,71,226,0],\\\"payload\\\":[0,17,34,51,68,85,102,119,136,153,170,187,204,221,238,255,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\\\"deadline\\\":1741234567}\",\"nonce\":0,\"user\":\"AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9\"}"}}"""  # noqa: E501

CREDIT = '{"Transaction":{"user":"AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9","tokens":5000000}}'
DEBIT = '{"Transaction":{"user":"AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9","tokens":-1234}}'


def tx_text(user: str = USER, tokens: object = 1) -> str:
    """A Transaction content with ``tokens`` written as the raw JSON literal ``str(tokens)``."""
    return '{"Transaction":{"user":"' + user + '","tokens":' + str(tokens) + "}}"


def recover_info_text(**overrides: object) -> str:
    obj: dict[str, object] = {"signature": list(SIG_NEW), "extra_data": list(EXTRA), "deadline": 1741234567}
    obj.update(overrides)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def payload_text(**overrides: object) -> str:
    obj: dict[str, object] = {"user": USER, "nonce": 0, "recover_info": recover_info_text()}
    obj.update(overrides)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def request_text(**overrides: object) -> str:
    body: dict[str, object] = {
        "to_status": "Working",
        "reason": "UserRequest",
        "initial_request": ZERO_EVENT_ID,
        "payload": payload_text(),
    }
    body.update(overrides)
    return json.dumps({"Request": {k: v for k, v in body.items() if v is not ...}})


def refused(code: str, func: object, *args: object, **kwargs: object) -> ProtocolError:
    assert code in ERROR_CODES
    with pytest.raises(ProtocolError) as info:
        func(*args, **kwargs)  # type: ignore[operator]
    assert info.value.code == code, str(info.value)
    return info.value


# --- golden vectors ---------------------------------------------------------------------------


def test_new_program_request_vector_decodes_field_by_field() -> None:
    message = decode_message(NEW_REQUEST)
    assert isinstance(message, Request)
    assert message.to_status is MachineStatus.Working
    assert message.reason is Reason.UserRequest
    assert message.initial_request == ZERO_EVENT_ID
    assert message.payload.startswith('{"namespace_id":0,"user":"AKnL')

    payload = decode_payload(message.payload)
    assert payload.namespace_id == 0
    assert payload.user == USER
    assert payload.nonce == 0
    assert payload.error is None
    assert payload.recover_info.startswith('{"signature":[77,11,79,66,')

    info = decode_recover_info(payload.recover_info)
    assert info.signature == SIG_NEW
    assert info.signature.hex().startswith("4d0b4f42") and info.signature.hex().endswith("edc20c")
    assert info.extra_data == EXTRA
    assert info.deadline == 1741234567
    assert info.field_name == "extra_data"


def test_new_program_request_vector_round_trips_byte_for_byte() -> None:
    message = decode_message(NEW_REQUEST)
    assert encode_message(message) == NEW_REQUEST
    assert encode_message(decode_message(NEW_REQUEST.encode())) == NEW_REQUEST
    assert isinstance(message, Request)
    payload = decode_payload(message.payload)
    assert encode_payload(payload) == message.payload
    assert encode_recover_info(decode_recover_info(payload.recover_info)) == payload.recover_info


def test_old_program_request_in_dapp_key_order_decodes() -> None:
    message = decode_message(OLD_REQUEST)
    assert isinstance(message, Request)
    payload = decode_payload(message.payload)
    assert payload == Payload(user=USER, nonce=0, recover_info=payload.recover_info, namespace_id=None)
    info = decode_recover_info(payload.recover_info)
    assert (info.signature, info.extra_data, info.deadline, info.field_name) == (
        SIG_OLD,
        EXTRA,
        1741234567,
        "payload",
    )
    # The message keeps the dApp's payload text verbatim ...
    assert encode_message(message) == OLD_REQUEST
    # ... the recover_info keeps its OLD spelling when re-encoded ...
    assert encode_recover_info(info) == payload.recover_info
    # ... and a freshly encoded payload uses the Rust key order with recover_info untouched.
    assert encode_payload(payload) == json.dumps(
        {"user": USER, "nonce": 0, "recover_info": payload.recover_info}, separators=(",", ":")
    )


@pytest.mark.parametrize(("text", "tokens"), [(CREDIT, 5_000_000), (DEBIT, -1234)])
def test_transaction_examples_decode_and_reencode_exactly(text: str, tokens: int) -> None:
    message = decode_message(text)
    assert message == Transaction(user=USER, tokens=tokens)
    assert encode_message(message) == text


def test_status_reply_field_order_and_payload_verbatim() -> None:
    odd_payload = '{ "nonce" : 0 , "user":"' + USER + '", "recover_info":"{}", "extra": [1] }'
    status = Status(MachineStatus.Available, Reason.UserBehaviour, "ab" * 32, odd_payload)
    text = encode_message(status)
    assert text == (
        '{"Status":{"status":"Available","reason":"UserBehaviour","initial_request":"'
        + "ab" * 32
        + '","payload":'
        + json.dumps(odd_payload)
        + "}}"
    )
    assert decode_message(text) == status
    decoded = decode_message(text)
    assert isinstance(decoded, Status) and decoded.payload == odd_payload


def test_any_key_order_inside_variant_is_accepted() -> None:
    text = (
        '{"Status":{"payload":"x","initial_request":"' + ZERO_EVENT_ID + '",'
        '"reason":"LockFailed","status":"Available"}}'
    )
    assert decode_message(text) == Status(MachineStatus.Available, Reason.LockFailed, ZERO_EVENT_ID, "x")
    assert decode_message(" \n" + text + "\t") == decode_message(text)


def test_unknown_extra_fields_are_ignored_like_serde() -> None:
    assert decode_payload(payload_text(future={"a": [1, 2]}, namespace_id=None)).namespace_id is None
    assert decode_message(request_text(extra=1)) == decode_message(request_text())
    assert decode_recover_info(recover_info_text(memo="x")).deadline == 1741234567


def test_non_ascii_is_written_as_utf8_like_serde() -> None:
    status = Status(MachineStatus.Working, Reason.UserRequest, ZERO_EVENT_ID, 'é\u2028"\\\n\x01')
    text = encode_message(status)
    assert '"payload":"é\u2028\\"\\\\\\n\\u0001"' in text
    assert decode_message(text.encode("utf-8")) == status


def test_error_payload_round_trips_in_documented_key_order() -> None:
    payload = Payload(
        user=USER,
        nonce=7,
        recover_info="{}",
        namespace_id=3,
        error=PayloadError(code="signature_expired", message="deadline passed"),
    )
    text = encode_payload(payload)
    assert text == (
        '{"namespace_id":3,"user":"' + USER + '","nonce":7,"recover_info":"{}",'
        '"error":{"code":"signature_expired","message":"deadline passed"}}'
    )
    assert decode_payload(text) == payload
    assert decode_payload(payload_text(error=None, namespace_id=None)).error is None


def test_payload_refusal_reply_is_built_by_replacing_fields() -> None:
    original = decode_payload(payload_text())
    reply = dataclasses.replace(original, error=PayloadError("nonce_mismatch", "nonce is 3, expected 4"))
    assert decode_payload(encode_payload(reply)).error == PayloadError(
        "nonce_mismatch", "nonce is 3, expected 4"
    )
    assert decode_payload(encode_payload(reply)).recover_info == original.recover_info


def test_protocol_error_is_a_device_error_with_field_path() -> None:
    err = refused("invalid_field", decode_message, request_text(initial_request="AB" * 32))
    assert isinstance(err, DeviceError)
    assert err.field == "Request.initial_request"
    assert str(err).startswith("invalid_field: Request.initial_request:")


def test_constants() -> None:
    assert (KIND, DEFAULT_SESSION, MAX_CONTENT_BYTES, ZERO_EVENT_ID) == (
        1573,
        "dephy-dsproxy-controller",
        16384,
        "0" * 64,
    )
    assert [m.value for m in MachineStatus] == ["Available", "Working"]
    assert [r.value for r in Reason] == [
        "UserRequest",
        "AdminRequest",
        "UserBehaviour",
        "Reset",
        "LockFailed",
    ]


# --- refusals: one per code (and the cases the brief names) -----------------------------------


def test_content_too_large_measured_in_utf8_bytes() -> None:
    pad = MAX_CONTENT_BYTES - len(request_text(payload=""))
    assert isinstance(decode_message(request_text(payload="a" * pad)), Request)  # exactly at the limit
    refused("content_too_large", decode_message, request_text(payload="a" * (pad + 1)))
    refused("content_too_large", decode_message, request_text(payload="a" * (pad + 1)).encode())
    # Fewer characters than the limit, but 2 bytes each in UTF-8.
    too_big = request_text(payload="é" * (pad // 2 + 1)).replace("\\u00e9", "é")
    assert len(too_big) <= MAX_CONTENT_BYTES < len(too_big.encode())
    refused("content_too_large", decode_message, too_big)
    refused("content_too_large", decode_payload, " " * (MAX_CONTENT_BYTES + 1))
    refused("content_too_large", decode_recover_info, "x" * 10 * MAX_CONTENT_BYTES)


def test_encoders_refuse_what_decoders_would_refuse() -> None:
    big = Status(MachineStatus.Working, Reason.UserRequest, ZERO_EVENT_ID, "a" * MAX_CONTENT_BYTES)
    refused("content_too_large", encode_message, big)


def test_content_not_utf8() -> None:
    refused("content_not_utf8", decode_message, b'{"Transaction":{"user":"\xff","tokens":1}}')
    refused("content_not_utf8", decode_message, '{"Transaction":{"user":"\ud800","tokens":1}}')
    refused("content_not_utf8", decode_payload, b"\xc3\x28")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"Transaction":{"user":"x","tokens":1}} trailing',
        tx_text(USER, "NaN"),
        tx_text(USER, "Infinity"),
        "\ufeff" + CREDIT,  # a BOM is not JSON whitespace
        tx_text(USER, "9" * 5000),  # over Python's digit limit
        "{'Transaction': 1}",
    ],
)
def test_malformed_json(text: str) -> None:
    refused("malformed_json", decode_message, text)


def test_non_text_input_is_malformed_json_not_type_error() -> None:
    refused("malformed_json", decode_message, 42)
    refused("malformed_json", decode_payload, None)
    refused("malformed_json", decode_recover_info, ["signature"])


def test_deep_nesting_refused_before_parsing() -> None:
    deep = "[" * 5000 + "]" * 5000
    refused("nesting_too_deep", decode_message, deep)
    refused("nesting_too_deep", decode_payload, '{"x":' * 2000 + "1" + "}" * 2000)
    refused("nesting_too_deep", decode_recover_info, deep)
    # Unterminated strings and brackets inside strings neither count nor hang the scan.
    assert isinstance(decode_message(request_text(payload="[" * 9000)), Request)
    refused("malformed_json", decode_message, '"' + "\\" * 16000)
    # Nesting up to the limit is fine when the document is otherwise valid (ignored unknown key).
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    assert decode_payload(payload_text()[:-1] + ', "x": ' + nested + "}").user == USER
    refused("nesting_too_deep", decode_payload, payload_text()[:-1] + ', "x": [' + nested + "]}")


def test_duplicate_keys_refused_at_every_level() -> None:
    refused("duplicate_key", decode_message, CREDIT[:-2] + ',"tokens":1}}')
    refused("duplicate_key", decode_message, request_text()[:-2] + ', "reason": "Reset"}}')
    refused("duplicate_key", decode_payload, payload_text()[:-1] + ', "nonce": 1}')
    refused("duplicate_key", decode_recover_info, recover_info_text()[:-1] + ', "deadline": 1}')


@pytest.mark.parametrize(
    "text",
    [
        CREDIT[:-1] + "," + request_text()[1:],  # two top-level keys
        "{}",
        "[]",
        '"Request"',
        "null",
        '{"Lock":{}}',
        '{"request":{}}',
    ],
)
def test_unknown_message(text: str) -> None:
    refused("unknown_message", decode_message, text)


@pytest.mark.parametrize(
    ("func", "text", "field"),
    [
        (decode_message, request_text(payload=...), "Request.payload"),
        (decode_message, request_text(to_status=...), "Request.to_status"),
        (decode_message, '{"Status":{}}', "Status.status"),
        (decode_message, '{"Transaction":{"user":"' + USER + '"}}', "Transaction.tokens"),
        (decode_payload, payload_text(nonce=...), "payload.nonce"),
        (decode_payload, payload_text(user=...), "payload.user"),
        (decode_payload, payload_text(recover_info=...), "payload.recover_info"),
        (decode_payload, payload_text(error={"code": "x"}), "payload.error.message"),
        (decode_recover_info, recover_info_text(extra_data=...), "recover_info.extra_data"),
        (decode_recover_info, recover_info_text(signature=...), "recover_info.signature"),
        (decode_recover_info, recover_info_text(deadline=...), "recover_info.deadline"),
    ],
)
def test_missing_field(func: object, text: str, field: str) -> None:
    assert refused("missing_field", func, text).field == field


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (request_text(initial_request=ZERO_EVENT_ID.upper().replace("0", "A")), "Request.initial_request"),
        (request_text(initial_request="ab" * 31), "Request.initial_request"),
        (request_text(initial_request="0x" + "0" * 62), "Request.initial_request"),
        (request_text(initial_request=None), "Request.initial_request"),
        (request_text(payload={"user": USER}), "Request.payload"),  # payload must be a *string*
        (request_text(payload="\ud800"), "Request.payload"),  # escaped lone surrogate
        ('{"Request":[]}', "Request"),
        (tx_text(USER, "1.0"), "Transaction.tokens"),
        (tx_text(USER, "1e3"), "Transaction.tokens"),
        (tx_text(USER, "true"), "Transaction.tokens"),
        (tx_text(USER, '"5"'), "Transaction.tokens"),
        (tx_text(USER, 2**63), "Transaction.tokens"),
        (tx_text(USER, -(2**63) - 1), "Transaction.tokens"),
        (tx_text(MACHINE), "Transaction.user"),  # hex, not base58
        (tx_text("1" * 33), "Transaction.user"),  # 33 bytes
        (tx_text(USER[:-2]), "Transaction.user"),
        (tx_text("0" + USER[1:]), "Transaction.user"),  # 0 not in alphabet
    ],
)
def test_invalid_field_in_message(text: str, field: str) -> None:
    assert refused("invalid_field", decode_message, text).field == field


def test_message_extremes_are_accepted() -> None:
    for tokens in (2**63 - 1, -(2**63), 0):
        text = tx_text(USER, tokens)
        assert decode_message(text) == Transaction(USER, tokens)
    system_program = "1" * 32  # 32 zero bytes
    assert decode_message(tx_text(system_program)) == Transaction(system_program, 1)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (payload_text(nonce=-1), "payload.nonce"),
        (payload_text(nonce=2**64), "payload.nonce"),
        (payload_text(nonce=0.0), "payload.nonce"),
        (payload_text(nonce="0"), "payload.nonce"),
        (payload_text(namespace_id=-1), "payload.namespace_id"),
        (payload_text(namespace_id=True), "payload.namespace_id"),
        (payload_text(user="not base58!"), "payload.user"),
        (payload_text(recover_info={"signature": []}), "payload.recover_info"),  # must be a string
        (payload_text(error="boom"), "payload.error"),
        (payload_text(error={"code": 1, "message": "m"}), "payload.error.code"),
        ("[]", "payload"),
    ],
)
def test_invalid_field_in_payload(text: str, field: str) -> None:
    assert refused("invalid_field", decode_payload, text).field == field


def test_payload_accepts_u64_extremes() -> None:
    payload = decode_payload(payload_text(nonce=2**64 - 1, namespace_id=2**64 - 1))
    assert (payload.nonce, payload.namespace_id) == (2**64 - 1, 2**64 - 1)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"signature": [True, *list(SIG_NEW[1:])]}, "recover_info.signature[0]"),
        ({"signature": [*list(SIG_NEW[:63]), 1.0]}, "recover_info.signature[63]"),
        ({"signature": [*list(SIG_NEW[:5]), "7", *list(SIG_NEW[6:])]}, "recover_info.signature[5]"),
        ({"signature": [*list(SIG_NEW[:63]), 256]}, "recover_info.signature[63]"),
        ({"signature": [-1, *list(SIG_NEW[1:])]}, "recover_info.signature[0]"),
        ({"signature": list(SIG_NEW[:63])}, "recover_info.signature"),
        ({"signature": [*list(SIG_NEW), 0]}, "recover_info.signature"),
        ({"signature": SIG_NEW.hex()}, "recover_info.signature"),
        ({"extra_data": [None] * 64}, "recover_info.extra_data[0]"),
        ({"extra_data": ..., "payload": list(EXTRA[:10])}, "recover_info.payload"),
        ({"payload": list(EXTRA)}, "recover_info"),  # both spellings at once
        ({"deadline": 2**63}, "recover_info.deadline"),
    ],
)
def test_invalid_field_in_recover_info(overrides: dict[str, object], field: str) -> None:
    assert refused("invalid_field", decode_recover_info, recover_info_text(**overrides)).field == field


def test_recover_info_path_prefix_names_where_it_came_from() -> None:
    text = recover_info_text(signature=[True] * 64)
    err = refused("invalid_field", decode_recover_info, text, path="payload.recover_info")
    assert err.field == "payload.recover_info.signature[0]"
    assert "payload.recover_info.signature[0]" in str(err)


def test_recover_info_accepts_i64_deadline_extremes() -> None:
    for deadline in (-(2**63), 2**63 - 1):
        assert decode_recover_info(recover_info_text(deadline=deadline)).deadline == deadline


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (request_text(to_status=2), "Request.to_status"),  # #[repr(u8)] Working
        (request_text(reason=1), "Request.reason"),  # #[repr(u8)] UserRequest
        (request_text(to_status="working"), "Request.to_status"),
        (request_text(reason="Admin"), "Request.reason"),
        (request_text(reason=None), "Request.reason"),
        (request_text(to_status=True), "Request.to_status"),
        (request_text(to_status={"Working": None}), "Request.to_status"),
    ],
)
def test_invalid_enum(text: str, field: str) -> None:
    err = refused("invalid_enum", decode_message, text)
    assert err.field == field


def test_numeric_enum_message_explains_repr_numbers() -> None:
    assert "never appear on the wire" in str(
        refused("invalid_enum", decode_message, request_text(to_status=2))
    )


@pytest.mark.parametrize("deadline", ["67c92187", "0x67c92187", "1741234567", 1741234567.0, True, None])
def test_deadline_not_integer(deadline: object) -> None:
    err = refused("deadline_not_integer", decode_recover_info, recover_info_text(deadline=deadline))
    assert err.field == "recover_info.deadline"


def test_bn_hex_deadline_message_names_the_anchor_cli_and_the_value() -> None:
    err = refused("deadline_not_integer", decode_recover_info, recover_info_text(deadline="67c92187"))
    assert "Anchor CLI" in err.message and "1741234567" in err.message


def test_dataclasses_validate_on_construction() -> None:
    with pytest.raises(ProtocolError) as info:
        Request(MachineStatus.Working, Reason.UserRequest, "AB" * 32, "{}")
    assert info.value.field == "Request.initial_request"
    with pytest.raises(ProtocolError):
        Status("Working", Reason.UserRequest, ZERO_EVENT_ID, "{}")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        Transaction(USER, 2**63)
    with pytest.raises(ProtocolError):
        Transaction("nope", 1)
    with pytest.raises(ProtocolError):
        Payload(USER, -1, "{}")
    with pytest.raises(ProtocolError):
        RecoverInfo(SIG_NEW[:63], EXTRA, 0, "extra_data")
    with pytest.raises(ProtocolError):
        RecoverInfo(SIG_NEW, EXTRA, 0, "data")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        Payload(USER, 0, "{}", error="boom")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_message(Payload(USER, 0, "{}"))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Transaction(USER, 1).tokens = 2  # type: ignore[misc]


# --- tags / routing ---------------------------------------------------------------------------


def test_event_tags_order_and_read_back() -> None:
    tags = event_tags(DEFAULT_SESSION, MACHINE)
    assert tags == [["s", DEFAULT_SESSION], ["p", MACHINE]]
    assert read_routing(KIND, tags) == Routing(session=DEFAULT_SESSION, machine=MACHINE)


def test_event_tags_refuse_bad_machine_or_session() -> None:
    refused("invalid_tag", event_tags, DEFAULT_SESSION, MACHINE.upper())
    refused("invalid_tag", event_tags, "", MACHINE)


def test_read_routing_takes_first_s_and_first_p_and_ignores_others() -> None:
    other = "ab" * 32
    tags = [["e", "x"], ["p", MACHINE, "wss://relay"], ["s", "a"], ["p", other], ["s", "b"], ["t"]]
    assert read_routing(KIND, tags) == Routing(session="a", machine=MACHINE)
    assert read_routing(KIND, (("s", "a"), ("p", MACHINE))) == Routing("a", MACHINE)


@pytest.mark.parametrize("kind", [1, 1572, 30000, True, "1573", 1573.0, None])
def test_wrong_kind(kind: object) -> None:
    refused("wrong_kind", read_routing, kind, event_tags(DEFAULT_SESSION, MACHINE))


@pytest.mark.parametrize(
    "tags",
    [[], [["s", DEFAULT_SESSION]], [["p", MACHINE]], [["S", DEFAULT_SESSION], ["P", MACHINE]]],
)
def test_missing_tag(tags: list[list[str]]) -> None:
    refused("missing_tag", read_routing, KIND, tags)


@pytest.mark.parametrize(
    "tags",
    [
        [["s", DEFAULT_SESSION], ["p", MACHINE.upper()]],
        [["s", DEFAULT_SESSION], ["p", "npub1" + "q" * 58]],
        [["s", DEFAULT_SESSION], ["p", MACHINE[:-2]]],
        [["s", DEFAULT_SESSION], ["p"]],
        [["s"], ["p", MACHINE]],
        [["s", ""], ["p", MACHINE]],
        [["s", 5], ["p", MACHINE]],
        [[], ["s", DEFAULT_SESSION], ["p", MACHINE]],
        ["sp"],
        "sp",
        None,
    ],
)
def test_invalid_tag(tags: object) -> None:
    refused("invalid_tag", read_routing, KIND, tags)


def test_every_error_code_is_exercised_by_this_module() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    for code in ERROR_CODES:
        assert f'"{code}"' in source, code


# ---------------------------------------------------------------------------------------------
# The grant's pay reference tag (NIP-73 style)

PAY_SIGNATURE = "3" * 64 + "Ab" * 12  # 88 base58 characters, a real signature's longest spelling


def test_a_pay_reference_tag_names_the_pay_and_reads_back() -> None:
    tag = pay_reference_tag(PAY_SIGNATURE)
    assert tag == ["i", f"solana:tx:{PAY_SIGNATURE}"]
    tags = [["s", DEFAULT_SESSION], ["p", "ab" * 32], tag]
    assert read_pay_reference(tags) == PAY_SIGNATURE
    assert read_routing(KIND, tags) == Routing(DEFAULT_SESSION, "ab" * 32)  # routing ignores it


@pytest.mark.parametrize(
    "tags",
    [
        [],
        [["i"]],
        [["i", "bitcoin:tx:" + "ab" * 32]],
        [["i", "solana:tx:"]],
        [["i", "solana:tx:0OIl" + "1" * 60]],  # not base58
        [["e", "solana:tx:" + PAY_SIGNATURE]],
    ],
)
def test_anything_else_names_no_pay(tags: list[list[str]]) -> None:
    assert read_pay_reference(tags) is None


def test_a_pay_reference_refuses_what_is_not_a_signature() -> None:
    with pytest.raises(ProtocolError) as err:
        pay_reference_tag("not a signature")
    assert err.value.code == "invalid_tag"
