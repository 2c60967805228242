"""llama-server's observability routes on the chat socket: ``GET /health`` and ``GET /metrics``.

``/health`` answers ``{"status": "ok"}`` as llama-server does (the socket only listens once the model
is loaded).  ``/metrics`` (``chat.metrics: true``; off by default, then 501 as llama-server without
``--metrics``) is the Prometheus text format, version 0.0.4: llama-server's ``llamacpp:`` families for
what both have (tokens served, tokens per second, requests running and waiting), and ``xephy_``
families for the device: balances, grants and debits from the ledger, recharges by outcome, relay
and RPC state.  Neither route needs a bearer token; ``/metrics`` shows totals only, never a user.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from aiohttp import web

from device.chat.openai import Usage, error_body
from device.ledger import Ledger, RechargeState
from device.state import ChainStatus, LinkStatus, StateHub

__all__ = ["CONTENT_TYPE", "ChatMetrics"]

#: The Prometheus text exposition format's media type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    kind: str  # counter | gauge
    help: str
    samples: tuple[tuple[str, float], ...]  # (label text like '{state="ready"}' or '', value)


def _render(families: Iterable[_Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines.extend(f"{family.name}{labels} {_number(value)}" for labels, value in family.samples)
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _one(value: float) -> tuple[tuple[str, float], ...]:
    return (("", value),)


def _states(label: str, values: Iterable[str], current: str) -> tuple[tuple[str, float], ...]:
    return tuple((f'{{{label}="{v}"}}', 1.0 if v == current else 0.0) for v in values)


class ChatMetrics:
    """Counts what the chat server served, and renders ``/health`` and ``/metrics``.

    ``queue`` returns (completions generating, completions waiting) at scrape time.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        ledger: Ledger,
        hub: StateHub,
        queue: Callable[[], tuple[int, int]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._enabled = enabled
        self._ledger = ledger
        self._hub = hub
        self._queue = queue
        self._clock = clock
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._seconds = 0.0
        self._requests = 0

    def record(self, usage: Usage, seconds: float) -> None:
        """One finished completion: the tokens charged and the wall time from admission to settlement."""
        self._requests += 1
        self._prompt_tokens += usage.prompt_tokens
        self._completion_tokens += usage.completion_tokens
        self._seconds += max(0.0, seconds)

    def routes(self) -> list[web.RouteDef]:
        """``GET /health`` and ``GET /metrics``."""
        return [web.get("/health", self.health), web.get("/metrics", self.metrics)]

    async def health(self, request: web.Request) -> web.Response:
        """llama-server's ``/health``: 200 ``{"status": "ok"}``."""
        return web.json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        """The Prometheus text, or 501 ``not_supported`` while ``chat.metrics`` is false."""
        if not self._enabled:
            body = error_body(
                "not_supported", "the metrics endpoint is off; set chat.metrics: true in the config"
            )
            return web.json_response(body, status=501)
        text = _render(await asyncio.to_thread(lambda: list(self._families())))
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    def _families(self) -> Iterator[_Family]:
        generating, waiting = self._queue()
        tokens_per_second = self._completion_tokens / self._seconds if self._seconds > 0 else 0.0
        yield _Family(
            "llamacpp:prompt_tokens_total", "counter", "Prompt tokens charged.", _one(self._prompt_tokens)
        )
        yield _Family(
            "llamacpp:tokens_predicted_total",
            "counter",
            "Completion tokens charged.",
            _one(self._completion_tokens),
        )
        yield _Family(
            "llamacpp:predicted_tokens_seconds",
            "gauge",
            "Average completion throughput since start, tokens per second of request time.",
            _one(tokens_per_second),
        )
        yield _Family("llamacpp:requests_processing", "gauge", "Completions generating.", _one(generating))
        yield _Family(
            "llamacpp:requests_deferred", "gauge", "Completions waiting for the model.", _one(waiting)
        )
        yield _Family("xephy_chat_completions_total", "counter", "Completions settled.", _one(self._requests))

        activity = self._ledger.activity_since(0)
        totals = self._ledger.totals()
        yield _Family(
            "xephy_tokens_granted_total",
            "counter",
            "Tokens granted by recharges.",
            _one(activity.tokens_granted),
        )
        yield _Family(
            "xephy_tokens_debited_total",
            "counter",
            "Tokens debited for chats.",
            _one(activity.tokens_debited),
        )
        yield _Family(
            "xephy_balance_tokens", "gauge", "Sum of every user's token balance.", _one(sum(totals.values()))
        )
        yield _Family("xephy_users", "gauge", "Users with a balance row.", _one(len(totals)))

        counts = self._ledger.recharge_counts()
        yield _Family(
            "xephy_recharges",
            "gauge",
            "Recharge Requests by state (granted, failed = refused, answered, pending, submitted).",
            tuple((f'{{state="{s}"}}', float(counts.get(s, 0))) for s in RechargeState),
        )
        state = self._hub.current
        yield _Family(
            "xephy_relay_state",
            "gauge",
            "The relay link's state (1 = current).",
            _states("state", LinkStatus, state.relay),
        )
        yield _Family(
            "xephy_rpc_state",
            "gauge",
            "Whether the Solana RPC answered last time (1 = current).",
            _states("state", ChainStatus, state.chain),
        )
