"""``xephy-device chat``: talk to the local model over the chat socket.

It signs a short-lived token with the user's keypair (``--keypair``, Solana CLI JSON) for the
machine the socket serves (read from ``/healthz``), then either answers one question
(``-m TEXT``) or runs a REPL: answers stream as they are generated; after each one it prints the
tokens charged and the balance left.  ``/balance`` shows the balance (and, in pay-as-you-go mode, the
open session's budget, what it costs so far and the lamports locked), ``/reset`` starts a new
conversation, ``/quit`` (or Ctrl-D) leaves, ``/help`` lists them; any other ``/word`` is an unknown
command, never sent to the model (``//text`` sends ``/text``).  Ctrl-C stops the current answer
(charged only for what was generated) and keeps the conversation.  The keypair is ``-k``, else the
Solana CLI config's ``keypair_path``; ``--ttl`` above ``chat.token_max_ttl_seconds`` is refused here.

The token format is in ``docs/chat.md``; ``xephy-device user token`` prints one for any OpenAI client.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from solders.keypair import Keypair

from device.chat.auth import TOKEN_LIFETIME_SECONDS, issue_token
from device.chat.client import ChatClient, ChatClientError, StreamEnd
from device.commands.arguments import add_keypair_argument, chat_socket, positive_int, ttl_seconds
from device.config import Config
from device.errors import UsageError
from device.keys import load_keypair
from device.wallet.solana_cli import user_keypair_path

__all__ = ["balance_text", "cmd_chat", "configure", "run_repl"]

#: Re-sign the REPL's token when it has less than this left.
_RENEW_BEFORE_S = 60

REPL_HELP = """\
/balance   your token balance on this device
/reset     start a new conversation
/quit      leave (also /exit, Ctrl-D)
/help      this list
//text     send "/text" to the model
Ctrl-C stops an answer (charged only for what was generated) and keeps the conversation.
"""


class _Session:
    """One conversation: history plus a token renewed before it expires."""

    def __init__(self, client: ChatClient, keypair: Keypair, machine: str, ttl: int) -> None:
        self.client = client
        self.messages: list[dict[str, str]] = []
        self._keypair = keypair
        self._machine = machine
        self._ttl = ttl
        self._expires = 0.0

    def authorize(self) -> None:
        now = time.time()
        if self._expires - now < _RENEW_BEFORE_S:
            self.client.token = issue_token(self._keypair, self._machine, ttl_seconds=self._ttl, now=now)
            self._expires = now + self._ttl

    def ask(self, question: str, out: TextIO, max_tokens: int | None) -> None:
        """Stream one answer to ``out``; Ctrl-C stops it and keeps what was shown."""
        self.authorize()
        self.messages.append({"role": "user", "content": question})
        end = StreamEnd()
        parts: list[str] = []
        stream = self.client.stream(self.messages, max_tokens=max_tokens, end=end)
        try:
            for delta in stream:
                parts.append(delta)
                out.write(delta)
                out.flush()
        except KeyboardInterrupt:
            stream.close()
            self.messages.append({"role": "assistant", "content": "".join(parts)})
            bal = self.client.balance()
            out.write(f"\n[stopped; balance {bal['total']} tokens]\n")
            return
        except ChatClientError:
            self.messages.pop()
            raise
        self.messages.append({"role": "assistant", "content": "".join(parts)})
        out.write("\n" + _summary(end) + "\n")

    def reset(self) -> None:
        self.messages.clear()


def _summary(end: StreamEnd) -> str:
    usage = end.usage
    text = (
        f"[{usage.get('prompt_tokens', '?')} prompt + {usage.get('completion_tokens', '?')} answer"
        f" = {usage.get('total_tokens', '?')} tokens; balance {end.balance}]"
    )
    if end.stopped_by == "budget":
        text += " (stopped: balance exhausted -- recharge to continue)"
    elif end.stopped_by == "length":
        text += " (stopped: max tokens reached)"
    return text


def balance_text(bal: dict[str, Any]) -> str:
    """``/balance``: the token balance, and an open pay-as-you-go session's budget and what it costs."""
    text = f"balance {bal['total']} tokens ({bal['available']} available)"
    budget = bal.get("session")
    if isinstance(budget, dict):
        used, total = int(budget["used_tokens"]), int(budget["budget_tokens"])
        unused, locked = int(budget["unused_tokens"]), int(budget["locked_lamports"])
        text += (
            f"\nsession {str(budget['request'])[:16]}…: {used:,} of {total:,} budget tokens used,"
            f" {unused:,} left; {locked:,} lamports locked, {int(budget['owed_lamports']):,} owed so far"
            " (settled when the session ends; the rest stays in your vault)"
        )
    elif bal.get("pricing_mode") == "session":
        text += "\nno open session (`xephy-device user recharge --session` opens one)"
    return text


def _open_session(args: argparse.Namespace, config: Config) -> _Session:
    client = ChatClient(chat_socket(args, config))
    machine = str(client.health()["machine"])
    limit = config.chat.token_max_ttl_seconds
    if args.ttl > limit:
        raise UsageError(
            f"--ttl {args.ttl}: the device accepts tokens valid at most {limit} s "
            "(chat.token_max_ttl_seconds); use a shorter --ttl",
            code="argument_invalid",
        )
    keypair = load_keypair(user_keypair_path(args.keypair, Path.home()))
    return _Session(client, keypair, machine, args.ttl)


def run_repl(
    session: _Session, out: TextIO, read: Callable[[str], str] = input, max_tokens: int | None = None
) -> int:
    """The interactive loop; returns the exit code."""
    out.write("xephy chat -- /help lists the commands; Ctrl-C stops an answer\n")
    while True:
        try:
            line = read("> ").strip()
        except EOFError:
            out.write("\n")
            return 0
        except KeyboardInterrupt:
            out.write("\n")
            continue
        if not line:
            continue
        command = line.split()[0] if line.startswith("/") and not line.startswith("//") else None
        if command in ("/quit", "/exit"):
            return 0
        try:
            if command is None:
                session.ask(line.removeprefix("/") if line.startswith("//") else line, out, max_tokens)
            elif command == "/balance":
                session.authorize()
                out.write(balance_text(session.client.balance()) + "\n")
            elif command == "/reset":
                session.reset()
                out.write("new conversation\n")
            elif command in ("/help", "/?"):
                out.write(REPL_HELP)
            else:
                out.write(f"unknown command {command} (nothing was sent to the model); /help lists them\n")
        except ChatClientError as exc:
            out.write(f"error: {exc}\n")


def cmd_chat(args: argparse.Namespace, config: Config) -> int:
    """Chat with the local model over the socket."""
    session = _open_session(args, config)
    if args.message is not None:
        session.ask(args.message, sys.stdout, args.max_tokens)
        return 0
    return run_repl(session, sys.stdout, max_tokens=args.max_tokens)


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """``chat [-m TEXT] [--socket PATH] [--keypair PATH] [--max-tokens N] [--ttl SECONDS]``."""
    parser.description = "Chat with the device's model over its Unix socket; every answer is metered."
    parser.add_argument("-m", "--message", default=None, metavar="TEXT", help="ask one question and exit")
    parser.add_argument(
        "--socket", type=Path, default=None, metavar="PATH", help="chat socket (default: from the config)"
    )
    add_keypair_argument(parser)
    parser.add_argument(
        "--max-tokens", type=positive_int, default=None, metavar="N", help="most answer tokens"
    )
    parser.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=TOKEN_LIFETIME_SECONDS,
        metavar="SECONDS",
        help="token lifetime per renewal",
    )
    parser.set_defaults(handler=cmd_chat)
