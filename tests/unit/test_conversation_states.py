"""Per-user KV state in the inference engine (real llama.cpp, tiny GGUF): each user reuses only their own
earlier turns, ``cached_tokens`` is exactly that reused prefix, and saved states go by memory and age."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from device.inference import ChatMessage, Engine, GenerationResult, SamplingParams
from device.kv_cache import ConversationStates
from tests.fixtures.clock import FakeClock
from tests.fixtures.model import TOKEN_M

ALICE, BOB, CAROL = "alice", "bob", "carol"
GREEDY = SamplingParams(temperature=0.0)
QUESTION = (ChatMessage("user", "what is the balance of my token"),)
OTHER_QUESTION = (ChatMessage("user", "how do you write the time"),)


def states(capacity: int = 64 * 1024 * 1024, clock: FakeClock | None = None) -> ConversationStates:
    return ConversationStates(capacity_bytes=capacity, max_age_seconds=60.0, clock=clock or FakeClock())


@pytest.fixture
async def engine(tiny_model: Path) -> AsyncIterator[Engine]:
    eng = Engine(tiny_model, n_ctx=512, n_threads=1, states=states())
    await eng.start()
    yield eng
    await eng.close()


async def turn(
    engine: Engine, user: str, messages: Sequence[ChatMessage], max_tokens: int = 4
) -> tuple[str, GenerationResult]:
    """One generation for ``user``; returns once its state is saved (the worker ran a ping after it)."""
    prompt = await engine.prompt_tokens(messages)
    gen = engine.generate(prompt, user=user, max_tokens=max_tokens, budget=max_tokens, params=GREEDY)
    text = "".join([d async for d in gen])
    await engine.ping()
    return text, gen.result


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


async def test_another_user_never_reuses_a_prefix_even_an_identical_one(tiny_random_model: Path) -> None:
    cold = Engine(tiny_random_model, n_ctx=512, n_threads=1, states=states())
    shared = Engine(tiny_random_model, n_ctx=512, n_threads=1, states=states())
    await cold.start()
    await shared.start()
    try:
        prompt = await shared.prompt_tokens(QUESTION)
        cold_text, _ = await turn(cold, BOB, QUESTION, max_tokens=8)
        await turn(shared, ALICE, QUESTION, max_tokens=8)
        bob_text, bob = await turn(shared, BOB, QUESTION, max_tokens=8)
        _, alice_again = await turn(shared, ALICE, QUESTION, max_tokens=8)
        opening = shared.template_opening_tokens
    finally:
        await cold.close()
        await shared.close()
    assert 0 < opening < len(prompt) - 1
    assert bob.cached_tokens == opening  # only the template's own opening, which every new user starts from
    assert bob_text == cold_text  # computed from scratch: nothing of alice's context took part
    assert alice_again.cached_tokens == len(prompt) - 1  # the reuse bob was refused was there for alice


async def test_a_users_reuse_survives_other_users_turns_and_counts_exactly_their_own_prefix(
    engine: Engine,
) -> None:
    first = await engine.prompt_tokens(QUESTION)
    answer, _ = await turn(engine, ALICE, QUESTION, max_tokens=4)
    await turn(engine, BOB, OTHER_QUESTION)
    await turn(engine, CAROL, QUESTION)
    follow_up = (*QUESTION, ChatMessage("assistant", answer), ChatMessage("user", "and the light"))
    second = await engine.prompt_tokens(follow_up)
    _, result = await turn(engine, ALICE, follow_up)
    alices_context = [*first, *[TOKEN_M] * 3]  # the 4th answer token was sampled, never evaluated
    assert result.cached_tokens == common_prefix(alices_context, second)
    assert result.cached_tokens > len(first)


async def test_without_a_state_cache_reuse_lasts_only_until_another_user_chats(tiny_model: Path) -> None:
    eng = Engine(tiny_model, n_ctx=512, n_threads=1, states=states(capacity=0))
    await eng.start()
    try:
        prompt = await eng.prompt_tokens(QUESTION)
        await turn(eng, ALICE, QUESTION)
        _, back_to_back = await turn(eng, ALICE, QUESTION)
        await turn(eng, BOB, QUESTION)
        _, after_bob = await turn(eng, ALICE, QUESTION)
        opening = eng.template_opening_tokens
    finally:
        await eng.close()
    assert (back_to_back.cached_tokens, after_bob.cached_tokens) == (len(prompt) - 1, opening)


async def test_the_least_recently_used_state_is_evicted_when_memory_is_full(tiny_model: Path) -> None:
    probe = states()
    eng = Engine(tiny_model, n_ctx=512, n_threads=1, states=probe)
    await eng.start()
    await turn(eng, ALICE, QUESTION)
    one_state = probe.bytes_used
    await eng.close()
    room_for_two = states(capacity=2 * one_state + one_state // 2)
    eng = Engine(tiny_model, n_ctx=512, n_threads=1, states=room_for_two)
    await eng.start()
    try:
        prompt = await eng.prompt_tokens(QUESTION)
        await turn(eng, ALICE, QUESTION)
        await turn(eng, BOB, QUESTION)
        _, alice_kept = await turn(eng, ALICE, QUESTION)  # alice's state is now the most recent
        await turn(eng, CAROL, QUESTION)  # evicts bob's, the least recently used
        _, alice_still = await turn(eng, ALICE, QUESTION)
        _, bob_evicted = await turn(eng, BOB, QUESTION)
        opening = eng.template_opening_tokens
    finally:
        await eng.close()
    assert alice_kept.cached_tokens == len(prompt) - 1
    assert bob_evicted.cached_tokens == opening
    assert alice_still.cached_tokens == len(prompt) - 1
    assert one_state > 0 and room_for_two.bytes_used <= room_for_two.capacity_bytes


async def test_a_state_older_than_the_maximum_age_is_not_reused(tiny_model: Path) -> None:
    clock = FakeClock()
    eng = Engine(tiny_model, n_ctx=512, n_threads=1, states=states(clock=clock))
    await eng.start()
    try:
        prompt = await eng.prompt_tokens(QUESTION)
        await turn(eng, ALICE, QUESTION)
        await turn(eng, BOB, QUESTION)
        _, fresh = await turn(eng, ALICE, QUESTION)
        await turn(eng, BOB, QUESTION)
        clock.advance(61)
        _, stale = await turn(eng, ALICE, QUESTION)
        opening = eng.template_opening_tokens
    finally:
        await eng.close()
    assert (fresh.cached_tokens, stale.cached_tokens) == (len(prompt) - 1, opening)


async def test_a_saved_state_that_does_not_load_is_dropped_and_the_turn_served_in_full(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    prompt = await engine.prompt_tokens(QUESTION)
    engine.states.put(ALICE, prompt, b"\x01\x00\x00\x00 not a llama.cpp state")
    text, broken = await turn(engine, ALICE, QUESTION)
    await turn(engine, BOB, QUESTION)
    _, next_turn = await turn(engine, ALICE, QUESTION)
    assert (text, broken.cached_tokens, broken.error) == (" m" * 4, engine.template_opening_tokens, None)
    assert "kv_state_invalid" in [getattr(r, "code", None) for r in caplog.records]
    assert next_turn.cached_tokens == len(prompt) - 1  # the turn saved a good state in its place


async def test_every_new_user_starts_from_the_templates_own_opening_and_nothing_else(engine: Engine) -> None:
    first_turns = [
        await turn(engine, user, (ChatMessage("user", f"{user} asks {question}"),))
        for user, question in ((ALICE, "the balance"), (BOB, "the time"), (CAROL, "the light"))
    ]
    prompts = [await engine.prompt_tokens((ChatMessage("user", f"{u} asks"),)) for u in (ALICE, BOB)]
    opening = engine.template_opening_tokens
    assert [result.cached_tokens for _, result in first_turns] == [opening] * 3
    assert opening == common_prefix(*prompts)  # the template's text before the first user's words


async def test_a_template_opening_longer_than_a_users_saved_state_is_used_instead(engine: Engine) -> None:
    prompt = await engine.prompt_tokens(QUESTION)
    opening = engine.template_opening_tokens
    engine.states.put(ALICE, prompt[:1], b"never loaded: it shares less than the opening")
    await turn(engine, BOB, QUESTION)
    _, result = await turn(engine, ALICE, QUESTION)
    assert result.cached_tokens == opening
