"""Per-user conversation state: saved llama.cpp KV states, least recently used first out.

One model context serves every user in turn.  After each generation the inference worker saves the
context's keys/values (``llama_state_seq_get_data`` of sequence 0) here under the user it served;
when that user's next turn comes after someone else's, the worker loads the state back and llama.cpp
evaluates only the new suffix of the prompt.  A state is only ever looked up by its own user, so one
user's prefix is never reused for -- or reported to -- another.

States are dropped on memory and age grounds only: the least recently used go first when the total
exceeds ``capacity_bytes``, and a state older than ``max_age_seconds`` is gone at the next look.
Nothing about a user's balance or payments plays a part.  Not thread-safe: the inference worker
thread owns it.
"""

from __future__ import annotations

import array
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["ConversationStates", "SavedState"]


@dataclass(frozen=True, slots=True)
class SavedState:
    """The keys/values of one evaluated token sequence, as llama.cpp serialised them."""

    #: The tokens whose keys/values ``data`` holds, in context order (int32).
    tokens: array.array[int]
    #: ``llama_state_seq_get_data`` output for those tokens.
    data: bytes
    #: When it was saved (the cache's clock).
    saved_at: float

    @property
    def nbytes(self) -> int:
        """Bytes this state keeps in memory (its data plus its token list)."""
        return len(self.data) + self.tokens.itemsize * len(self.tokens)


class ConversationStates:
    """A bounded LRU of :class:`SavedState` keyed by user (a chat user's public key)."""

    def __init__(
        self, *, capacity_bytes: int, max_age_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity_bytes = capacity_bytes
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._states: OrderedDict[str, SavedState] = OrderedDict()
        self._bytes = 0

    @property
    def bytes_used(self) -> int:
        """Bytes held by all saved states."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, user: object) -> bool:
        return user in self._states

    def get(self, user: str) -> SavedState | None:
        """``user``'s saved state (now the most recently used), or None if none is fresh."""
        self._drop_stale()
        state = self._states.get(user)
        if state is not None:
            self._states.move_to_end(user)
        return state

    def put(self, user: str, tokens: Iterable[int], data: bytes) -> bool:
        """Save ``user``'s state, replacing theirs; evict the least recently used to fit.

        Returns False (and keeps nothing for ``user``) when the state alone exceeds the capacity.
        """
        self.discard(user)
        state = SavedState(tokens=array.array("i", tokens), data=data, saved_at=self._clock())
        if state.nbytes > self.capacity_bytes:
            return False
        self._drop_stale()
        while self._bytes + state.nbytes > self.capacity_bytes:
            _, oldest = self._states.popitem(last=False)
            self._bytes -= oldest.nbytes
        self._states[user] = state
        self._bytes += state.nbytes
        return True

    def discard(self, user: str) -> None:
        """Forget ``user``'s state, if any."""
        state = self._states.pop(user, None)
        if state is not None:
            self._bytes -= state.nbytes

    def _drop_stale(self) -> None:
        oldest_allowed = self._clock() - self.max_age_seconds
        stale = [user for user, state in self._states.items() if state.saved_at < oldest_allowed]
        for user in stale:
            self.discard(user)
