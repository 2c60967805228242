"""A small synchronous client for the chat socket (standard library only), used by ``xephy-device chat``.

Synchronous on purpose: the REPL blocks on ``input()`` anyway, and Ctrl-C (``KeyboardInterrupt``)
raised while reading a stream simply closes the connection -- which the server sees as a disconnect,
stops generating within one token and charges only what was generated.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import DeviceError

__all__ = ["ChatClient", "ChatClientError", "StreamEnd"]


class ChatClientError(DeviceError):
    """The device refused a request (its error code is kept) or could not be reached."""

    code = "chat_unreachable"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("device", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError as exc:
            sock.close()
            raise ChatClientError(
                f"cannot connect to {self._path}: {exc.strerror or exc} (is the agent running?)"
            ) from exc
        self.sock = sock


@dataclass
class StreamEnd:
    """What the last chunks of a streamed answer said."""

    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    stopped_by: str | None = None
    balance: int | None = None


class ChatClient:
    """Talks to one device socket with one bearer token."""

    def __init__(self, path: Path, token: str | None = None, *, timeout: float = 600.0) -> None:
        self.path = path
        self.token = token
        self._timeout = timeout

    def _request(self, method: str, url: str, body: Any = None) -> tuple[_UnixConnection, Any]:
        conn = _UnixConnection(self.path, self._timeout)
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None if body is None else json.dumps(body).encode()
        try:
            conn.request(method, url, body=payload, headers=headers)
            response = conn.getresponse()
        except ChatClientError:
            conn.close()
            raise
        except OSError as exc:
            conn.close()
            raise ChatClientError(f"{self.path}: {exc}") from exc
        if response.status >= 400:
            try:
                error = json.loads(response.read())["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "chat_unreachable", f"HTTP {response.status}"
            finally:
                conn.close()
            raise ChatClientError(message, code=code)
        return conn, response

    def get(self, url: str) -> dict[str, Any]:
        """GET a JSON resource."""
        conn, response = self._request("GET", url)
        try:
            result: dict[str, Any] = json.loads(response.read())
            return result
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        """``/healthz``: model, machine pubkey (no token needed)."""
        return self.get("/healthz")

    def balance(self) -> dict[str, Any]:
        """``/v1/balance`` for this token's user."""
        return self.get("/v1/balance")

    def stream(
        self, messages: Sequence[dict[str, str]], *, max_tokens: int | None, end: StreamEnd
    ) -> Generator[str, None, None]:
        """Yield the answer's text deltas; fill ``end`` from the closing chunks.

        Closing the iterator early (Ctrl-C, ``break``) closes the connection, which stops the answer.
        """
        body: dict[str, Any] = {"messages": list(messages), "stream": True}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        conn, response = self._request("POST", "/v1/chat/completions", body)
        try:
            for raw in response:
                line = raw.strip()
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    raise ChatClientError(chunk["error"]["message"], code=chunk["error"]["code"])
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
                    if choice.get("finish_reason"):
                        end.finish_reason = choice["finish_reason"]
                if chunk.get("usage"):
                    end.usage = chunk["usage"]
                    extra = chunk.get("xephy") or {}
                    end.stopped_by = extra.get("stopped_by")
                    end.balance = extra.get("balance")
        finally:
            conn.close()
