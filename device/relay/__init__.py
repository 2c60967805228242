"""The Nostr relay link (subscription, delivery, outbox publisher) and the embedded relay.

``RelayLink`` (``link.py``) is the device's only door to its relays: it delivers verified kind-1573
events for our session and machine to a consumer, and publishes the ledger's outbox.  ``EmbeddedRelay``
(``embedded.py``) runs nostr-sdk's ``LocalRelay`` in-process; ``python -m device.relay.serve`` runs it
as a separate, optionally persistent process.  ``outbox.py`` is the publisher, ``backoff.py`` the retry
delays, ``catchup.py`` the socket-free catch-up (pager, delivery order) and ``cursor.py`` the cursor holds.
Log lines carry stable codes as string literals (``extra={"code": "relay_unreachable"}``), documented in
docs/errors.md, section "Relay link".
"""

from device.relay.backoff import Backoff
from device.relay.embedded import EmbeddedRelay
from device.relay.link import IncomingEvent, RelayLink

__all__ = ["Backoff", "EmbeddedRelay", "IncomingEvent", "RelayLink"]
