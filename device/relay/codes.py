"""Stable codes of the relay link's log lines (documented in docs/errors.md, section "Relay link").

Operators grep for them (``journalctl -u xephy-device | grep relay_unreachable``); they never change meaning.
"""

from __future__ import annotations

from typing import Final

RELAY_CONNECTED: Final = "relay_connected"
RELAY_RECONNECTED: Final = "relay_reconnected"
RELAY_UNREACHABLE: Final = "relay_unreachable"
RELAY_SUBSCRIBE_REFUSED: Final = "relay_subscribe_refused"
RELAY_CATCHUP_INCOMPLETE: Final = "relay_catchup_incomplete"
RELAY_EVENT_INVALID: Final = "relay_event_invalid"
RELAY_EVENT_FOREIGN: Final = "relay_event_foreign"
RELAY_HANDLER_FAILED: Final = "relay_handler_failed"
RELAY_CALLBACK_FAILED: Final = "relay_callback_failed"
RELAY_CURSOR_FAILED: Final = "relay_cursor_failed"
RELAY_PUBLISHED: Final = "relay_published"
RELAY_PUBLISH_FAILED: Final = "relay_publish_failed"
RELAY_PUBLISH_REFUSED: Final = "relay_publish_refused"
RELAY_OUTBOX_INVALID: Final = "relay_outbox_invalid"
RELAY_BIND_FAILED: Final = "relay_bind_failed"

LOG_CODES: Final = (
    RELAY_CONNECTED,
    RELAY_RECONNECTED,
    RELAY_UNREACHABLE,
    RELAY_SUBSCRIBE_REFUSED,
    RELAY_CATCHUP_INCOMPLETE,
    RELAY_EVENT_INVALID,
    RELAY_EVENT_FOREIGN,
    RELAY_HANDLER_FAILED,
    RELAY_CALLBACK_FAILED,
    RELAY_CURSOR_FAILED,
    RELAY_PUBLISHED,
    RELAY_PUBLISH_FAILED,
    RELAY_PUBLISH_REFUSED,
    RELAY_OUTBOX_INVALID,
    RELAY_BIND_FAILED,
)
