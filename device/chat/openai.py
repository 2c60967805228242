"""The OpenAI-compatible wire format: request parsing, response and chunk bodies, error bodies.

Only what a chat needs is accepted; unknown request fields are ignored (clients send many),
but a known field with a wrong type or value is a ``bad_request`` naming the field.
``usage`` is always present: in the response body, and when streaming in a last chunk with
``"choices": []`` (OpenAI's ``include_usage`` shape) whether or not the client asked for it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from device.errors import DeviceError
from device.inference import ChatMessage, FinishReason, GenerationResult, SamplingParams

__all__ = [
    "ChatError",
    "ChatRequest",
    "Usage",
    "completion_body",
    "error_body",
    "finish_chunk",
    "parse_chat_request",
    "parse_json_body",
    "role_chunk",
    "text_chunk",
    "usage_chunk",
]

ROLES: Final = frozenset({"system", "user", "assistant"})
MAX_STOP: Final = 4
#: Deepest nesting of arrays/objects a request body may have (a chat needs 4).
MAX_JSON_DEPTH: Final = 32

#: code → (HTTP status, OpenAI error type)
_STATUS: Final[Mapping[str, tuple[int, str]]] = {
    "bad_request": (400, "invalid_request_error"),
    "invalid_request": (400, "invalid_request_error"),
    "context_length_exceeded": (400, "invalid_request_error"),
    "unauthorized": (401, "authentication_error"),
    "insufficient_balance": (402, "insufficient_quota"),
    "not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error"),
    "busy": (429, "rate_limit_error"),
    "user_busy": (429, "rate_limit_error"),
    "model_not_loaded": (503, "server_error"),
    "ledger_unavailable": (503, "server_error"),
}


class ChatError(DeviceError):
    """A chat request refused with an HTTP status; ``code`` is one of the chat codes in docs/errors.md."""

    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message, code=code)
        self.param = param


def http_status(code: str) -> tuple[int, str]:
    """HTTP status and OpenAI error ``type`` for an error code (500 ``server_error`` if unknown)."""
    return _STATUS.get(code, (500, "server_error"))


def error_body(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": http_status(code)[1], "param": param, "code": code}}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated ``POST /v1/chat/completions`` body."""

    messages: tuple[ChatMessage, ...]
    max_tokens: int
    stream: bool
    stop: tuple[str, ...]
    sampling: SamplingParams
    model: str | None


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens charged for one completion."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def body(self) -> dict[str, Any]:
        """OpenAI's ``usage`` object (``prompt_tokens_details.cached_tokens`` = KV-cache hits)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


def _bad(param: str, message: str) -> ChatError:
    return ChatError(f"{param}: {message}", code="bad_request", param=param)


def _number(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(name, f"expected a number from {lo:g} to {hi:g}")
    if not lo <= value <= hi:
        raise _bad(name, f"expected a number from {lo:g} to {hi:g}, got {value}")
    return float(value)


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"type": "text", "text": "..."}]
        parts: list[str] = []
        for i, part in enumerate(value):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise _bad(f"{where}[{i}]", "only text content parts are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise _bad(where, "expected a string or a list of text parts")


def _messages(value: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise _bad("messages", "expected a non-empty list of messages")
    out: list[ChatMessage] = []
    for i, msg in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(where, "expected an object with role and content")
        role = msg.get("role")
        if role == "developer":
            role = "system"
        if not isinstance(role, str) or role not in ROLES:
            raise _bad(f"{where}.role", f"expected one of system, user, assistant, got {role!r}")
        content = msg.get("content")
        out.append(
            ChatMessage(
                role=str(role), content=_content("" if content is None else content, f"{where}.content")
            )
        )
    return tuple(out)


def parse_json_body(raw: bytes) -> Any:
    """Decode a request body: ``bad_request`` if it is not JSON, ``invalid_request`` if it nests deeper
    than :data:`MAX_JSON_DEPTH` (checked without recursion, so no depth can crash the parser)."""
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _nesting(raw) > MAX_JSON_DEPTH:
        raise ChatError(f"the body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_request")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChatError(f"the body is not JSON: {exc}", code="bad_request") from None


def _nesting(raw: bytes) -> int:
    """Deepest ``[``/``{`` nesting outside JSON strings (a linear scan, no recursion)."""
    deepest = depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_chat_request(body: Any, *, max_tokens_limit: int) -> ChatRequest:
    """Validate a decoded JSON body; ``max_tokens`` defaults to, and is capped at, ``max_tokens_limit``."""
    if not isinstance(body, dict):
        raise ChatError("the body must be a JSON object", code="bad_request")
    messages = _messages(body.get("messages"))
    max_tokens = max_tokens_limit
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(name, f"expected a positive integer, got {value!r}")
        max_tokens = min(value, max_tokens_limit)
        break
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "expected true or false")
    stop_value = body.get("stop")
    if stop_value is None:
        stop: tuple[str, ...] = ()
    elif isinstance(stop_value, str):
        stop = (stop_value,)
    elif isinstance(stop_value, list) and all(isinstance(s, str) for s in stop_value):
        stop = tuple(stop_value)
    else:
        raise _bad("stop", "expected a string or a list of strings")
    if len(stop) > MAX_STOP:
        raise _bad("stop", f"at most {MAX_STOP} stop strings")
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise _bad("n", "only n = 1 is supported")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise _bad("seed", "expected an integer from 0 to 4294967295")
    model = body.get("model")
    sampling = SamplingParams(
        temperature=_number(body, "temperature", 0.8, 0.0, 2.0),
        top_p=_number(body, "top_p", 0.95, 0.0, 1.0),
        seed=seed,
    )
    return ChatRequest(
        messages=messages,
        max_tokens=max_tokens,
        stream=stream,
        stop=stop,
        sampling=sampling,
        model=model if isinstance(model, str) else None,
    )


def finish_reason(result: GenerationResult) -> str:
    """OpenAI's ``finish_reason``: ``stop``, or ``length`` for every kind of cut-off."""
    return "stop" if result.finish_reason is FinishReason.STOP else "length"


def _base(completion_id: str, model: str, created: int, obj: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": obj,
        "created": created,
        "model": model,
        "system_fingerprint": None,
    }


def completion_body(
    completion_id: str,
    model: str,
    text: str,
    result: GenerationResult,
    usage: Usage,
    *,
    balance: int,
    created: int | None = None,
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body.  ``xephy`` carries the stop detail and balance left."""
    body = _base(completion_id, model, created or int(time.time()), "chat.completion")
    body["choices"] = [
        {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason(result),
        }
    ]
    body["usage"] = usage.body()
    body["xephy"] = {"stopped_by": result.finish_reason.value, "balance": balance}
    return body


def _chunk(completion_id: str, model: str, created: int, choices: Sequence[Any]) -> dict[str, Any]:
    body = _base(completion_id, model, created, "chat.completion.chunk")
    body["choices"] = list(choices)
    return body


def role_chunk(completion_id: str, model: str, created: int) -> dict[str, Any]:
    """The first streamed chunk: the assistant role, no text."""
    return _chunk(
        completion_id,
        model,
        created,
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    )


def text_chunk(completion_id: str, model: str, created: int, text: str) -> dict[str, Any]:
    """One streamed text delta."""
    return _chunk(
        completion_id,
        model,
        created,
        [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}],
    )


def finish_chunk(completion_id: str, model: str, created: int, result: GenerationResult) -> dict[str, Any]:
    """The chunk carrying ``finish_reason``."""
    return _chunk(
        completion_id,
        model,
        created,
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason(result)}],
    )


def usage_chunk(
    completion_id: str, model: str, created: int, usage: Usage, result: GenerationResult, *, balance: int
) -> dict[str, Any]:
    """The last chunk: no choices, the exact usage charged, and the balance left."""
    body = _chunk(completion_id, model, created, [])
    body["usage"] = usage.body()
    body["xephy"] = {"stopped_by": result.finish_reason.value, "balance": balance}
    return body
