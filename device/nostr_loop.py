"""nostr-sdk's callback event loop, set while a client with an authenticator is in use and restored after.

A NIP-42 authenticator (``SignerAuthenticator``) is called back from Rust threads, which need
``nostr_sdk.uniffi_set_event_loop(loop)``.  That setting is global to the nostr_sdk module and is then used
for *every* async nostr-sdk call, so it must not outlive its loop: a later ``asyncio.run`` (the next CLI
command, the next test) would hand its futures to a closed loop.  Users set it with :func:`use_loop` and
put back what they found with :func:`restore_loop`, innermost first.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nostr_sdk

__all__ = ["callbacks_on", "restore_loop", "use_loop"]

_GLOBAL = "_UNIFFI_GLOBAL_EVENT_LOOP"  # where the bindings keep it (nostr_sdk/nostr_sdk.py)


def use_loop(loop: asyncio.AbstractEventLoop) -> Any:
    """Send nostr-sdk's callbacks to ``loop``; returns the previous setting for :func:`restore_loop`."""
    previous = getattr(importlib.import_module("nostr_sdk.nostr_sdk"), _GLOBAL, None)
    nostr_sdk.uniffi_set_event_loop(loop)
    return previous


def restore_loop(previous: Any) -> None:
    """Put back the setting :func:`use_loop` returned (None: the running loop of each call)."""
    setattr(importlib.import_module("nostr_sdk.nostr_sdk"), _GLOBAL, previous)


@contextmanager
def callbacks_on(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """:func:`use_loop` for the duration of a ``with`` block."""
    previous = use_loop(loop)
    try:
        yield
    finally:
        restore_loop(previous)
