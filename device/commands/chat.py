"""``xephy-device chat`` (talk to the local model) and ``xephy-device user token`` (make a bearer token).

``chat`` signs a short-lived token with the user's keypair (``--keypair``, Solana CLI JSON) for the
machine the socket serves (read from ``/healthz``), then either answers one question
(``-m TEXT``) or runs a REPL: answers stream as they are generated; after each one it prints the
tokens charged and the balance left.  ``/balance`` shows the balance, ``/reset`` starts a new
conversation, ``/quit`` (or Ctrl-D) leaves; Ctrl-C stops the current answer (charged only for what
was generated) and keeps the conversation.

``user token`` prints a token for any OpenAI client's ``api_key`` (format in ``docs/chat.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from solders.keypair import Keypair

from device.arg_types import positive_int, ttl_seconds
from device.chat.auth import issue_token
from device.chat.client import ChatClient, ChatClientError, StreamEnd
from device.config import Config, resolve_chat_socket

__all__ = ["add_chat_command", "add_token_action", "cmd_chat", "cmd_user_token"]

DEFAULT_TTL_SECONDS = 3600
#: Re-sign the REPL's token when it has less than this left.
_RENEW_BEFORE_S = 60


def _socket_path(args: argparse.Namespace, config: Config) -> Path:
    path: Path | None = getattr(args, "socket", None)
    return path if path is not None else resolve_chat_socket(config, os.environ)


def _keypair(args: argparse.Namespace) -> Keypair:
    from device.user_commands import DEFAULT_KEYPAIR, load_keypair  # late: user_commands imports us

    path: Path = args.keypair if args.keypair is not None else DEFAULT_KEYPAIR
    return load_keypair(path.expanduser())


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


def _open_session(args: argparse.Namespace, config: Config) -> _Session:
    client = ChatClient(_socket_path(args, config))
    machine = str(client.health()["machine"])
    return _Session(client, _keypair(args), machine, args.ttl)


def run_repl(
    session: _Session, out: TextIO, read: Callable[[str], str] = input, max_tokens: int | None = None
) -> int:
    """The interactive loop; returns the exit code."""
    out.write("xephy chat -- /balance, /reset, /quit; Ctrl-C stops an answer\n")
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
        if line in ("/quit", "/exit"):
            return 0
        try:
            if line == "/balance":
                session.authorize()
                bal = session.client.balance()
                out.write(f"balance {bal['total']} tokens ({bal['available']} available)\n")
            elif line == "/reset":
                session.reset()
                out.write("new conversation\n")
            else:
                session.ask(line, out, max_tokens)
        except ChatClientError as exc:
            out.write(f"error: {exc}\n")


def cmd_chat(args: argparse.Namespace, config: Config) -> int:
    """Chat with the local model over the socket."""
    session = _open_session(args, config)
    if args.message is not None:
        session.ask(args.message, sys.stdout, args.max_tokens)
        return 0
    return run_repl(session, sys.stdout, max_tokens=args.max_tokens)


def cmd_user_token(args: argparse.Namespace, config: Config) -> int:
    """Print a chat bearer token for this user and machine."""
    machine: str | None = args.machine or config.nostr.machine_pubkey
    if machine is None:
        try:
            machine = str(ChatClient(_socket_path(args, config)).health()["machine"])
        except ChatClientError as exc:
            raise ChatClientError(
                f"pass --machine (the device's Nostr pubkey): cannot ask the chat socket: {exc.message}",
                code=exc.code,
            ) from exc
    keypair = _keypair(args)
    print(issue_token(keypair, machine, ttl_seconds=args.ttl))
    print(f"token for user {keypair.pubkey()} at machine {machine}, valid {args.ttl} s", file=sys.stderr)
    return 0


def add_chat_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register ``chat`` under ``commands``; ``common`` carries ``--config``."""
    chat = commands.add_parser(
        "chat",
        parents=[common],
        help="chat with the local model (REPL, or -m for one question)",
        description="Chat with the device's model over its Unix socket; every answer is metered.",
    )
    chat.add_argument("-m", "--message", default=None, metavar="TEXT", help="ask one question and exit")
    chat.add_argument(
        "--socket", type=Path, default=None, metavar="PATH", help="chat socket (default: from the config)"
    )
    chat.add_argument(
        "--keypair",
        type=Path,
        default=None,
        metavar="PATH",
        help="user keypair, Solana CLI JSON (default: ~/.config/solana/id.json)",
    )
    chat.add_argument("--max-tokens", type=positive_int, default=None, metavar="N", help="most answer tokens")
    chat.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=DEFAULT_TTL_SECONDS,
        metavar="SECONDS",
        help="token lifetime per renewal",
    )
    chat.set_defaults(handler=cmd_chat)


def add_token_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], parents: Sequence[argparse.ArgumentParser]
) -> None:
    """Register ``user token`` under ``user``'s ``actions`` (``parents`` carry --config and --keypair)."""
    token = actions.add_parser(
        "token",
        parents=list(parents),
        help="print a chat bearer token (an OpenAI client's api_key) for this device",
        description="Sign a bearer token proving you own the keypair whose tokens a chat spends.",
    )
    token.add_argument(
        "--machine", default=None, metavar="HEX", help="the device's Nostr pubkey (default: ask the socket)"
    )
    token.add_argument("--socket", type=Path, default=None, metavar="PATH", help="chat socket to ask")
    token.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=DEFAULT_TTL_SECONDS,
        metavar="SECONDS",
        help=f"validity from now (default {DEFAULT_TTL_SECONDS}; the device caps it)",
    )
    token.set_defaults(handler=cmd_user_token)
