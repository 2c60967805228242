"""The OpenAI request parser: what it refuses, with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from device.chat.openai import ChatError, parse_chat_request

HELLO = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("role", [["user"], {"user": 1}, 3, None])
def test_a_role_that_is_not_a_string_is_a_bad_request_naming_it(role: Any) -> None:
    with pytest.raises(ChatError) as info:
        parse_chat_request({"messages": [{"role": role, "content": "hi"}]}, max_tokens_limit=8)
    assert (info.value.code, info.value.param) == ("bad_request", "messages[0].role")


@pytest.mark.parametrize(
    ("field", "value"),
    [("tools", [{"type": "function"}]), ("response_format", {"type": "json_schema"}), ("logprobs", True),
     ("top_logprobs", 1), ("presence_penalty", 1.5), ("grammar", "root ::= x"), ("audio", {"voice": "x"})],
)  # fmt: skip
def test_unsupported_fields_are_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(ChatError) as info:
        parse_chat_request({"messages": HELLO, field: value}, max_tokens_limit=8)
    assert (info.value.code, info.value.param) == ("unsupported_field", field)


def test_true_is_not_mistaken_for_a_count_of_one() -> None:
    with pytest.raises(ChatError):
        parse_chat_request({"messages": HELLO, "top_logprobs": True}, max_tokens_limit=8)
    assert parse_chat_request({"messages": HELLO, "top_logprobs": 0}, max_tokens_limit=8).messages
