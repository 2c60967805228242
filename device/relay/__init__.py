"""The Nostr relay link (subscription, delivery, outbox publisher) and the embedded relay.

``RelayLink`` (``link.py``) is the device's only door to its relays: it delivers verified kind-1573
events for our session and machine to a consumer, and publishes the ledger's outbox.  ``EmbeddedRelay``
(``embedded.py``) runs nostr-sdk's ``LocalRelay`` in-process; ``python -m device.relay.serve`` runs it
as a separate, optionally persistent process.  ``outbox.py`` is the publisher, ``backoff.py`` the retry
delays, ``codes.py`` the stable log codes.
"""

from device.relay.backoff import Backoff
from device.relay.codes import LOG_CODES
from device.relay.embedded import EmbeddedRelay
from device.relay.link import IncomingEvent, RelayLink

__all__ = ["LOG_CODES", "Backoff", "EmbeddedRelay", "IncomingEvent", "RelayLink"]
