"""The chat server: OpenAI-compatible HTTP on a Unix socket, every completion metered.

Routes (``docs/chat.md``):

* ``GET /healthz`` -- no auth; model, machine pubkey, context size.
* ``GET /v1/models`` -- the one loaded model.
* ``GET /v1/balance`` -- the caller's tokens (total, reserved, available).
* ``POST /v1/chat/completions`` -- non-streaming or SSE (``stream: true``); ``usage`` is always
  present, in the last chunk when streaming, and equals what was debited.

A completion: bearer token → body (≤ ``chat.max_body_bytes``, else 413) → admission (one generating
plus ≤ ``chat.max_waiting`` waiting, else 429 ``busy``) → prompt tokens → :meth:`Meter.hold`
(402 ``insufficient_balance`` / 400 ``context_length_exceeded`` before any compute) → generation
bounded by the hold → settle exactly ``prompt + completion`` tokens, always (a client disconnect
stops the worker within one token and is charged what was generated; a generation that failed or
never started is charged nothing).

Errors use OpenAI's JSON shape ``{"error": {"message", "type", "param", "code"}}`` with our codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from device.chat.auth import TokenClaims, TokenVerifier
from device.chat.listener import bind_unix_socket
from device.chat.openai import (
    ChatError,
    Usage,
    completion_body,
    error_body,
    finish_chunk,
    http_status,
    parse_chat_request,
    role_chunk,
    text_chunk,
    usage_chunk,
)
from device.config import Config, resolve_chat_socket
from device.errors import DeviceError
from device.inference import Engine, Generation, GenerationResult
from device.ledger import Ledger
from device.metering import Hold, Meter
from device.nostr_events import EventSigner
from device.state import Activity, StateHub

__all__ = ["ChatService"]

log = logging.getLogger(__name__)

_FAILED = "the model failed while generating; nothing was charged"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def _json_error(code: str, message: str, param: str | None = None) -> web.Response:
    status, _ = http_status(code)
    return web.json_response(error_body(code, message, param), status=status)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure leaves as OpenAI-shaped JSON with a stable code."""
    try:
        return await handler(request)
    except ChatError as exc:
        return _json_error(exc.code, exc.message, exc.param)
    except DeviceError as exc:
        return _json_error(exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "bad_request")
        return web.json_response(error_body(code, exc.reason), status=exc.status)
    except Exception:
        log.exception("chat request failed", extra={"code": "internal_error"})
        return _json_error("internal_error", "internal error; see the device log")


class ChatService:
    """The chat server and its metering, embeddable in the agent (``start``/``stop``).

    ``sock`` is an already-bound listening socket (systemd socket activation); without it the
    service binds ``resolve_chat_socket(config)`` with ``chat.socket_mode``.  ``chat.tcp_listen``
    adds a TCP listener (off by default).  The engine is started here if it is not yet; closing it
    stays with its owner.
    """

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        engine: Engine,
        signer: EventSigner,
        hub: StateHub,
        notify_outbox: Callable[[], None],
        sock: socket.socket | None = None,
        *,
        environ: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._engine = engine
        self._hub = hub
        self._signer = signer
        self._meter = Meter(ledger, signer, hub, notify_outbox, clock=clock)
        self._verifier = TokenVerifier(
            signer.machine_pubkey, max_ttl_seconds=config.chat.token_max_ttl_seconds, clock=clock
        )
        self._given_sock = sock
        self._environ = dict(os.environ) if environ is None else environ
        self._runner: web.AppRunner | None = None
        self._bound_path: Path | None = None
        self._in_flight = 0
        self._generating = 0

    @property
    def socket_path(self) -> Path | None:
        """The Unix socket path this service bound (None when serving a socket it was given)."""
        return self._bound_path

    @property
    def in_flight(self) -> int:
        """Completions admitted and not finished (one generating, the rest waiting)."""
        return self._in_flight

    @property
    def meter(self) -> Meter:
        """The metering used for every completion."""
        return self._meter

    # ------------------------------------------------------------------------------ lifecycle
    def app(self) -> web.Application:
        """The aiohttp application (routes and error middleware)."""
        app = web.Application(middlewares=[_errors], client_max_size=self._config.chat.max_body_bytes)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/balance", self._balance)
        app.router.add_post("/v1/chat/completions", self._completions)
        return app

    async def start(self) -> None:
        """Load the model (if needed) and start listening."""
        await self._engine.start()
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        self._runner = runner
        try:
            sock = self._given_sock
            if sock is None:
                path = resolve_chat_socket(self._config, self._environ)
                sock = bind_unix_socket(path, self._config.chat.socket_mode)
                self._bound_path = path
            await web.SockSite(runner, sock).start()
            address = self._config.chat.tcp_address
            if address is not None:
                log.warning(
                    "chat also listens on TCP %s:%d; bearer tokens cross it in clear text",
                    *address,
                    extra={"code": "chat_tcp_enabled"},
                )
                await web.TCPSite(runner, address[0], address[1]).start()
        except BaseException:
            await self.stop()
            raise
        log.info("chat listening on %s", self._bound_path or "the given socket", extra={"code": "chat_ready"})

    async def stop(self) -> None:
        """Stop listening, let running completions settle, remove the socket file this service made."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._bound_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._bound_path.unlink()
            self._bound_path = None

    # ---------------------------------------------------------------------------------- helpers
    def _claims(self, request: web.Request) -> TokenClaims:
        return self._verifier.verify_header(request.headers.get("Authorization"))

    async def _json_body(self, request: web.Request) -> Any:
        limit = self._config.chat.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ChatError(f"the body is over {limit} bytes (chat.max_body_bytes)", code="request_too_large")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ChatError(
                f"the body is over {limit} bytes (chat.max_body_bytes)", code="request_too_large"
            ) from None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ChatError(f"the body is not JSON: {exc}", code="bad_request") from None

    @contextlib.asynccontextmanager
    async def _admitted(self) -> AsyncIterator[None]:
        if self._in_flight >= 1 + self._config.chat.max_waiting:
            raise ChatError(
                f"the device is busy ({self._in_flight} chats running or waiting); retry shortly",
                code="busy",
            )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    # --------------------------------------------------------------------------------- handlers
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "model": self._engine.model_name,
                "machine": self._signer.machine_pubkey,
                "n_ctx": self._engine.n_ctx,
                "in_flight": self._in_flight,
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        self._claims(request)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": self._engine.model_name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "xephy-device",
                    }
                ],
            }
        )

    async def _balance(self, request: web.Request) -> web.Response:
        user = self._claims(request).user
        bal = await self._meter.balance(user)
        return web.json_response(
            {
                "object": "balance",
                "user": user,
                "total": bal.total,
                "reserved": bal.reserved,
                "available": bal.available,
            }
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        claims = self._claims(request)
        chat = parse_chat_request(
            await self._json_body(request), max_tokens_limit=self._config.llm.max_tokens
        )
        async with self._admitted():
            prompt = await self._engine.prompt_tokens(chat.messages)
            hold = await self._meter.hold(
                claims.user, prompt_tokens=len(prompt), max_tokens=chat.max_tokens, n_ctx=self._engine.n_ctx
            )
            self._generating += 1
            self._hub.update(activity=Activity.GENERATING)
            metered: _Metered | None = None
            try:
                generation = self._engine.generate(
                    prompt,
                    user=claims.user,  # reuse only this user's own conversation state (KV cache)
                    max_tokens=chat.max_tokens,
                    budget=hold.completion_budget,
                    stop=chat.stop,
                    params=chat.sampling,
                )
                metered = _Metered(self._meter, hold, generation)
                if chat.stream:
                    return await self._stream(request, metered)
                return await self._complete(request, metered)
            finally:
                if metered is not None:
                    await metered.settle()
                else:
                    await self._meter.settle(hold, 0)  # generation never started: release only
                self._generating -= 1
                if self._generating == 0:
                    self._hub.update(activity=Activity.IDLE)

    async def _complete(self, request: web.Request, metered: _Metered) -> web.Response:
        parts: list[str] = []
        async for delta in metered.generation:
            parts.append(delta)
            if request.transport is None or request.transport.is_closing():
                metered.generation.cancel()  # the client left: stop computing what nobody will read
        result, usage, balance = await metered.settle()
        if result.error is not None:
            raise ChatError(_FAILED, code="inference_failed")
        return web.json_response(
            completion_body(
                metered.completion_id,
                self._engine.model_name,
                "".join(parts),
                result,
                usage,
                balance=balance,
            )
        )

    async def _stream(self, request: web.Request, metered: _Metered) -> web.StreamResponse:
        completion_id = metered.completion_id
        model = self._engine.model_name
        created = int(time.time())
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        try:
            await _send(response, role_chunk(completion_id, model, created))
            async for delta in metered.generation:
                await _send(response, text_chunk(completion_id, model, created, delta))
            result, usage, balance = await metered.settle()
            if result.error is not None:
                await _send(response, error_body("inference_failed", _FAILED))
            else:
                await _send(response, finish_chunk(completion_id, model, created, result))
                await _send(
                    response, usage_chunk(completion_id, model, created, usage, result, balance=balance)
                )
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            log.info("chat client disconnected mid-stream", extra={"code": "chat_client_gone"})
        except Exception as exc:  # headers are sent: report in-band, then end the stream
            code = exc.code if isinstance(exc, DeviceError) else "internal_error"
            log.exception("chat stream failed", extra={"code": code})
            with contextlib.suppress(ConnectionError):
                await _send(response, error_body(code, str(exc)))
                await response.write(b"data: [DONE]\n\n")
                await response.write_eof()
        return response


class _Metered:
    """One held, running generation and its settlement, which happens exactly once."""

    def __init__(self, meter: Meter, hold: Hold, generation: Generation) -> None:
        self._meter = meter
        self.hold = hold
        self.generation = generation
        self._task: asyncio.Task[tuple[GenerationResult, Usage, int]] | None = None

    @property
    def completion_id(self) -> str:
        return "chatcmpl-" + self.hold.key.removeprefix("chat:")

    async def settle(self) -> tuple[GenerationResult, Usage, int]:
        """Stop the worker, debit exactly what it computed; (result, usage charged, balance left).

        Shielded from cancellation, and idempotent: every call awaits the same settlement.
        """
        if self._task is None:
            self._task = asyncio.ensure_future(self._settle())
        return await asyncio.shield(self._task)

    async def _settle(self) -> tuple[GenerationResult, Usage, int]:
        result = await self.generation.aclose()
        charged = result.prompt_evaluated and result.error is None
        usage = Usage(
            prompt_tokens=self.hold.prompt_tokens if charged else 0,
            completion_tokens=result.completion_tokens if charged else 0,
            cached_tokens=result.cached_tokens if charged else 0,
        )
        settlement = await self._meter.settle(self.hold, usage.total_tokens)
        if result.error is not None:
            log.error("generation failed: %s", result.error, extra={"code": "inference_failed"})
        return result, usage, settlement.balance.total


async def _send(response: web.StreamResponse, body: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n")
