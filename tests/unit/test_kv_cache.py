"""The per-user conversation-state cache: bounded by bytes (least recently used out) and by age only."""

from __future__ import annotations

from device.kv_cache import ConversationStates
from tests.fixtures.clock import FakeClock


def cache(capacity: int, max_age: float = 60.0, clock: FakeClock | None = None) -> ConversationStates:
    return ConversationStates(capacity_bytes=capacity, max_age_seconds=max_age, clock=clock or FakeClock())


def test_a_state_is_returned_only_to_its_own_user() -> None:
    states = cache(10_000)
    states.put("alice", [1, 2, 3], b"a" * 100)
    alice = states.get("alice")
    assert alice is not None
    assert (list(alice.tokens), alice.data) == ([1, 2, 3], b"a" * 100)
    assert states.get("bob") is None


def test_bytes_used_counts_data_and_tokens_and_a_new_state_replaces_the_old() -> None:
    states = cache(10_000)
    states.put("alice", [1, 2, 3], b"a" * 100)
    assert states.bytes_used == 100 + 3 * 4
    states.put("alice", [1, 2, 3, 4, 5], b"b" * 200)
    assert (len(states), states.bytes_used) == (1, 200 + 5 * 4)


def test_the_least_recently_used_state_is_evicted_to_fit_a_new_one() -> None:
    states = cache(3 * 104)
    for user in ("alice", "bob", "carol"):
        states.put(user, [1], b"x" * 100)
    states.get("alice")  # alice is now more recent than bob
    states.put("dave", [1], b"x" * 100)
    assert ("alice" in states, "bob" in states, "carol" in states, "dave" in states) == (
        True,
        False,
        True,
        True,
    )
    assert states.bytes_used == 3 * 104


def test_a_state_larger_than_the_whole_cache_is_not_kept_and_drops_the_users_old_one() -> None:
    states = cache(1000)
    states.put("alice", [1], b"x" * 100)
    states.put("bob", [1], b"x" * 100)
    assert states.put("alice", [1], b"x" * 2000) is False
    assert ("alice" in states, "bob" in states, states.bytes_used) == (False, True, 104)


def test_a_zero_capacity_keeps_nothing() -> None:
    states = cache(0)
    assert states.put("alice", [1], b"x") is False
    assert (len(states), states.get("alice")) == (0, None)


def test_a_state_older_than_the_maximum_age_is_gone() -> None:
    clock = FakeClock()
    states = cache(10_000, max_age=60.0, clock=clock)
    states.put("alice", [1], b"x")
    clock.advance(30)
    states.put("bob", [1], b"x")
    clock.advance(31)  # alice is 61 s old, bob 31 s
    assert states.get("alice") is None
    assert states.get("bob") is not None
    assert (len(states), states.bytes_used) == (1, 5)


def test_discard_forgets_a_users_state() -> None:
    states = cache(10_000)
    states.put("alice", [1], b"x")
    states.discard("alice")
    states.discard("nobody")
    assert (len(states), states.bytes_used) == (0, 0)
