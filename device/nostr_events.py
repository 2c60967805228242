"""Signing the device's outgoing kind-1573 events, once, for the outbox.

Every event the device publishes (``Status`` replies, ``Transaction`` grants and
debits, the button's telemetry ``Status``) is built here: content from
:func:`device.protocol.encode_message`, tags ``[["s", session], ["p", machine]]``,
signed with the device's Nostr key.  The result is a :class:`SignedEvent` whose id
and JSON go into the ledger's outbox in the same SQLite transaction as the balance
change they announce; the relay link re-sends that exact JSON (same id) until a
relay acknowledges it, so a retry can never publish a second, different event.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from nostr_sdk import Event, EventBuilder, Keys, Kind, Tag, Timestamp

from device.ledger import OutboxEvent, OutboxPriority
from device.protocol import KIND, Message, encode_message, event_tags


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """A signed Nostr event: its id, author, creation time and the verbatim JSON."""

    event_id: str
    author: str
    created_at: int
    content: str
    event_json: str

    def outbox(self, priority: OutboxPriority = OutboxPriority.NORMAL) -> OutboxEvent:
        """The outbox row that publishes this event (refusals pass ``OutboxPriority.LOW``)."""
        return OutboxEvent(event_id=self.event_id, event_json=self.event_json, priority=priority)


#: How many recent contents the signer remembers to keep their event ids distinct.
RECENT_CONTENTS = 4096


class EventSigner:
    """Signs protocol messages as events of one session about one machine.

    A Nostr event id hashes author, ``created_at`` (whole seconds), kind, tags and
    content only, so two equal messages signed in the same second (two debits of one
    user for the same amount, two equal grants) would be *the same event*: the outbox,
    the relays and a ledger rebuild would keep one.  The signer therefore gives a
    repeated content a ``created_at`` one second after its previous one, so every
    message it signs gets its own id.  Thread-safe.
    """

    def __init__(
        self, keys: Keys, *, session: str, machine_pubkey: str, clock: Callable[[], int] | None = None
    ) -> None:
        self._keys = keys
        self.session = session
        self.machine_pubkey = machine_pubkey
        self._clock: Callable[[], int] = clock if clock is not None else (lambda: int(time.time()))
        self._last_created: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def author(self) -> str:
        """The hex pubkey that signs (the device's own Nostr key)."""
        return str(self._keys.public_key().to_hex())

    def sign(self, message: Message) -> SignedEvent:
        """Encode ``message``, tag it ``s``/``p`` and sign it."""
        content = encode_message(message)
        with self._lock:
            created_at = self._clock()
            previous = self._last_created.pop(content, None)
            if previous is not None and created_at <= previous:
                created_at = previous + 1
            self._last_created[content] = created_at
            while len(self._last_created) > RECENT_CONTENTS:
                self._last_created.popitem(last=False)
        builder = (
            EventBuilder(Kind(KIND), content)
            .tags([Tag.parse(tag) for tag in event_tags(self.session, self.machine_pubkey)])
            .custom_created_at(Timestamp.from_secs(created_at))
        )
        event: Event = builder.finalize(self._keys)
        return SignedEvent(
            event_id=str(event.id().to_hex()),
            author=self.author,
            created_at=int(event.created_at().as_secs()),
            content=content,
            event_json=str(event.as_json()),
        )


def parse_signed_event(event_json: str) -> Event:
    """Parse and verify a stored event JSON (id and signature); raise ValueError if invalid."""
    try:
        json.loads(event_json)
        event = Event.from_json(event_json)
    except Exception as exc:  # nostr_sdk raises its own error classes
        raise ValueError(f"not a Nostr event: {exc}") from exc
    if not event.verify():
        raise ValueError("event id or signature does not verify")
    return event
