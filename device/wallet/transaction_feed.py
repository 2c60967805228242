"""Reading ``Transaction`` events back from relays: device-side balances and ledger rebuilds.

Only events authored by the device itself or by a configured trusted author
count (the reference backend credited every Transaction from anyone — anyone
could mint tokens).  Relays cap one REQ at a few hundred events, so the history
is fetched page by page, walking ``until`` backwards, and deduplicated by id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta

from nostr_sdk import (
    Event,
    ReqTarget,
    Timestamp,
)

from device.errors import DeviceError
from device.ledger import TransactionRecord
from device.protocol import ProtocolError, Transaction, decode_message, read_pay_reference, read_routing
from device.wallet.relay_client import RelayUnreachable, connected_client, machine_filter

log = logging.getLogger(__name__)

PAGE_LIMIT = 500
FETCH_TIMEOUT = timedelta(seconds=10)


class FeedError(DeviceError):
    """The relays could not be read."""

    code = "relay_unreachable"


def transaction_records(
    events: Iterable[Event], *, authors: set[str], session: str, machine: str, user: str | None = None
) -> list[TransactionRecord]:
    """Trusted, well-formed Transaction events as ledger records, oldest first, one per id."""
    records: dict[str, TransactionRecord] = {}
    for event in events:
        if event.author().to_hex() not in authors or not event.verify():
            continue
        tags = [tag.to_vec() for tag in event.tags()]
        try:
            routing = read_routing(int(event.kind().as_u16()), tags)
            message = decode_message(event.content())
        except ProtocolError:
            continue
        if routing.session != session or routing.machine != machine or not isinstance(message, Transaction):
            continue
        if user is not None and message.user != user:
            continue
        event_id = event.id().to_hex()
        records[event_id] = TransactionRecord(
            event_id=event_id,
            user=message.user,
            tokens=message.tokens,
            created_at=int(event.created_at().as_secs()),
            pay_signature=read_pay_reference(tags),
        )
    return sorted(records.values(), key=lambda r: (r.created_at, r.event_id))


def token_total(records: Iterable[TransactionRecord]) -> int:
    """Σ tokens of ``records``, counting a grant once however many events name its pay (a grant
    re-announced after a ledger restore and its original announcement are one grant)."""
    paid: set[str] = set()
    total = 0
    for record in records:
        if record.pay_signature is not None and record.tokens > 0:
            if record.pay_signature in paid:
                continue
            paid.add(record.pay_signature)
        total += record.tokens
    return total


async def fetch_transactions(
    relays: Sequence[str], *, authors: Sequence[str], session: str, machine: str, user: str | None = None
) -> list[TransactionRecord]:
    """Every trusted Transaction about ``machine`` (optionally for one ``user``) the relays hold."""
    events = await fetch_machine_events(relays, authors=authors, session=session, machine=machine)
    return transaction_records(events, authors=set(authors), session=session, machine=machine, user=user)


async def fetch_machine_events(
    relays: Sequence[str], *, authors: Sequence[str], session: str, machine: str
) -> list[Event]:
    """Every event of ``authors`` about ``machine`` in ``session`` the relays hold (paged; unverified)."""
    try:
        async with connected_client(relays) as client:
            events: list[Event] = []
            until: int | None = None
            while True:
                flt = machine_filter(session, machine, authors).limit(PAGE_LIMIT)
                if until is not None:
                    flt = flt.until(Timestamp.from_secs(until))
                batch: list[Event] = list(await client.fetch_events(ReqTarget.auto([flt]), FETCH_TIMEOUT))
                events.extend(batch)
                if len(batch) < PAGE_LIMIT:
                    break
                oldest = min(int(e.created_at().as_secs()) for e in batch)
                if until is not None and oldest >= until:
                    break
                until = oldest  # inclusive: the next page repeats the oldest second; dedupe handles it
    except RelayUnreachable as exc:
        raise FeedError(exc.message) from exc
    except DeviceError:
        raise
    except Exception as exc:  # nostr_sdk raises its own error classes
        raise FeedError(f"cannot read the device's events from {', '.join(relays)}: {exc}") from exc
    return events
