"""Fuzz the wire protocol decoders with mutated kind-1573 contents at all three levels.

Properties: every input decodes or raises ProtocolError -- nothing else -- with a code from
``ERROR_CODES`` that docs/errors.md documents; what decodes re-encodes to something that decodes
to the same value.  Complements tests/unit/test_protocol_properties.py (round trips, generic fuzz).
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from device.protocol import (
    ERROR_CODES,
    MAX_CONTENT_BYTES,
    Payload,
    ProtocolError,
    RecoverInfo,
    Request,
    Status,
    Transaction,
    decode_message,
    decode_payload,
    decode_recover_info,
    encode_message,
    encode_payload,
    encode_recover_info,
    read_routing,
)
from tests.fuzz import DOCUMENTED, attempt, fuzz_settings
from tests.fuzz import strategies as fs

PROTOCOL_CODES = frozenset(ERROR_CODES) & DOCUMENTED


def test_every_protocol_code_is_documented() -> None:
    assert set(ERROR_CODES) <= DOCUMENTED


def _decode(target: str, fn: object, data: object) -> object:
    return attempt(target, lambda: fn(data), error=ProtocolError, allowed=PROTOCOL_CODES)  # type: ignore[operator]


@fuzz_settings(600)
@given(fs.event_contents())
@example(
    '{"Request":{"to_status":"Working","reason":"UserRequest","initial_request":"'
    + "0" * 64
    + '","payload":"'
    + "[" * 40
    + '"}}'
)
@example("{" * 100_000)
@example(b"\xef\xbb\xbf{}")
@example('{"Transaction":' + fs.pad_to_size('{"user":"1","tokens":1}', MAX_CONTENT_BYTES - 15, "€") + "}")
def test_event_content_walks_all_levels(content: str | bytes) -> None:
    message = _decode("protocol.decode_message", decode_message, content)
    if isinstance(message, Transaction):
        assert decode_message(encode_message(message)) == message
    if not isinstance(message, Request | Status):
        return
    assert decode_message(encode_message(message)) == message
    payload = _decode("protocol.decode_payload", decode_payload, message.payload)
    if not isinstance(payload, Payload):
        return
    assert decode_payload(encode_payload(payload)) == payload
    info = _decode(
        "protocol.decode_recover_info",
        lambda text: decode_recover_info(text, path="payload.recover_info"),
        payload.recover_info,
    )
    if isinstance(info, RecoverInfo):
        assert decode_recover_info(encode_recover_info(info)) == info
        assert len(info.signature) == len(info.extra_data) == 64


@fuzz_settings(400)
@given(fs.payload_texts())
def test_payload_texts(text: str | bytes) -> None:
    payload = _decode("protocol.decode_payload", decode_payload, text)
    if isinstance(payload, Payload):
        _decode("protocol.decode_recover_info", decode_recover_info, payload.recover_info)


@fuzz_settings(400)
@given(fs.recover_info_texts())
@example('{"signature":' + str([0] * 64) + ',"extra_data":' + str([0] * 64) + ',"deadline":"0x6553f100"}')
def test_recover_info_texts(text: str | bytes) -> None:
    info = _decode("protocol.decode_recover_info", decode_recover_info, text)
    if isinstance(info, ProtocolError) and info.code == "deadline_not_integer":
        assert info.field is not None and info.field.endswith("deadline")


@fuzz_settings(300)
@given(fs.kinds, fs.tag_lists)
def test_routing(kind: object, tags: object) -> None:
    routing = _decode("protocol.read_routing", lambda t: read_routing(kind, t), tags)  # type: ignore[arg-type]
    if not isinstance(routing, ProtocolError):
        assert routing.session and len(routing.machine) == 64  # type: ignore[attr-defined]


@fuzz_settings(100)
@given(st.integers(MAX_CONTENT_BYTES - 8, MAX_CONTENT_BYTES + 8), st.sampled_from("aé€😀"), st.booleans())
def test_sizes_around_the_limit(size: int, char: str, as_bytes: bool) -> None:
    inner = fs.pad_to_size(
        '{"user":"11111111111111111111111111111111","tokens":1}', size - len('{"Transaction":}'), char
    )
    text = '{"Transaction":' + inner + "}"
    data: str | bytes = text.encode() if as_bytes else text
    result = _decode("protocol.decode_message", decode_message, data)
    if len(text.encode()) > MAX_CONTENT_BYTES:
        assert isinstance(result, ProtocolError) and result.code == "content_too_large"
    else:
        assert isinstance(result, Transaction)
