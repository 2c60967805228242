"""How many refusal replies the device signs and publishes: token buckets per author and over all authors.

A refusal answers a Request that was well-formed and addressed to this device but failed verification
(nonce, signature, deadline, funds, limits).  Each costs a signature and a publish, and a stranger can send
any number of such Requests from throw-away keys, so replies are limited: each bucket holds up to its
per-minute rate and refills evenly over the minute.  A refusal beyond either limit is still recorded in the
ledger (so a redelivery is not verified again), just not answered.  Grants are never limited.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["RefusalLimiter"]

#: Authors whose buckets are remembered; the least recently seen are forgotten beyond this.
MAX_AUTHORS: Final = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RefusalLimiter:
    """``allow(author)`` is True when a refusal to ``author`` may be answered now (and counts it)."""

    def __init__(
        self,
        *,
        per_author_per_minute: int,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_authors: int = MAX_AUTHORS,
    ) -> None:
        self._per_author = per_author_per_minute
        self._overall = per_minute
        self._clock = clock
        self._max_authors = max(1, max_authors)
        now = clock()
        self._all = _Bucket(float(per_minute), now)
        self._authors: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, author: str) -> bool:
        """Take one refusal from ``author``'s bucket and the overall one; False (taking none) if either
        is empty."""
        now = self._clock()
        mine = self._authors.get(author)
        if mine is None:
            mine = self._authors[author] = _Bucket(float(self._per_author), now)
            while len(self._authors) > self._max_authors:
                self._authors.popitem(last=False)
        else:
            self._authors.move_to_end(author)
        _refill(mine, self._per_author, now)
        _refill(self._all, self._overall, now)
        if mine.tokens < 1 or self._all.tokens < 1:
            return False
        mine.tokens -= 1
        self._all.tokens -= 1
        return True


def _refill(bucket: _Bucket, per_minute: int, now: float) -> None:
    bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.at) * per_minute / 60.0)
    bucket.at = now
