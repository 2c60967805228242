"""The inference worker: one thread owns the ``llama_cpp.Llama``; async callers submit jobs to it.

llama.cpp must never be entered from two threads at once (it aborts or segfaults,
``device-stack.md`` §C.8), so every call that touches the model -- loading, tokenizing,
generating -- runs on a single-thread executor.  Jobs queue in FIFO order.

Metering needs exact numbers, so generation is our own loop over ``Llama.generate()``
(§C.2) rather than ``create_chat_completion``:

* :meth:`Engine.prompt_tokens` renders the messages with the GGUF's own chat template and
  tokenizes them *before* any compute, so the balance check comes first;
* :meth:`Engine.generate` returns a :class:`Generation`, an async iterator of text deltas;
  every sampled token is counted once (the end-of-generation token is not, as in llama.cpp's
  own ``usage``), and generation stops on ``max_tokens``, a stop string, end of generation,
  the token ``budget`` running out, or :meth:`Generation.cancel` -- the worker checks the cancel
  flag before every token, so it is free again within one token.

Follow-up turns reuse the KV cache, per user: every generation names its ``user``.  The context
belongs to the user it last served; after each generation its keys/values are saved for that user
in a :class:`~device.kv_cache.ConversationStates` (``llama_state_seq_get_data``: about 1 ms per 300
tokens of SmolLM2, against 19 ms for ``Llama.save_state``).  A generation for another user first
empties the context and loads *that* user's saved state, if any; ``generate()`` then keeps the
longest common prefix of the new prompt and that user's own tokens and evaluates only the rest,
which is exactly what ``cached_tokens`` reports.  One user's prefix is never reused for another.
A user without a saved state starts from the chat template's own opening (its default system prompt),
evaluated once when the model loads from nothing any user sent.

This module is the only place that imports ``llama_cpp`` (it is untyped; :class:`_Model` wraps it).
"""

from __future__ import annotations

import array
import asyncio
import codecs
import concurrent.futures
import contextlib
import ctypes
import logging
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from device.config import LlmConfig, resolve_model_path
from device.errors import DeviceError
from device.kv_cache import ConversationStates, SavedState

__all__ = [
    "ChatMessage",
    "Engine",
    "FinishReason",
    "Generation",
    "GenerationResult",
    "InferenceError",
    "SamplingParams",
]

#: How many produced-but-unread deltas the worker may run ahead of its consumer.
_WINDOW: Final = 64
#: How often a worker blocked on a slow consumer looks at the cancel flag (seconds).
_POLL_S: Final = 0.05
#: The llama.cpp sequence every generation uses.
_SEQ: Final = 0

log = logging.getLogger(__name__)


class InferenceError(DeviceError):
    """The model could not be loaded or failed while generating."""

    code = "inference_failed"


class FinishReason(StrEnum):
    """Why a generation ended."""

    STOP = "stop"  # end of generation token or a stop string
    LENGTH = "length"  # max_tokens or the end of the context window
    BUDGET = "budget"  # the reserved tokens ran out
    CANCELLED = "cancelled"  # the caller went away


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation (``role`` is system, user or assistant)."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling settings; ``temperature`` 0 is greedy."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """The exact outcome of one generation.

    ``completion_tokens`` counts every token sampled (delivered or not, stop-string tokens included;
    the end-of-generation token excluded).  ``prompt_evaluated`` is False only when the generation was
    cancelled or failed before the model computed anything, which is the one case nothing is owed.
    """

    completion_tokens: int
    finish_reason: FinishReason
    prompt_evaluated: bool
    cached_tokens: int
    error: str | None = None


class _Model:
    """The typed wrapper around one ``llama_cpp.Llama``.  Use only from the worker thread."""

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int) -> None:
        import llama_cpp

        self._lib: Any = llama_cpp
        try:
            self._llm: Any = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise InferenceError(f"cannot load model {path}: {exc}", code="model_load_failed") from exc
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise InferenceError(
                f"{path} has no tokenizer.chat_template; a chat model is required", code="model_load_failed"
            )
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model = self._llm._model
        self._formatter: Any = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(self._llm.token_eos()),
            bos_token=model.token_get_text(self._llm.token_bos()),
        )
        self._vocab: Any = model.vocab
        self.n_ctx = int(self._llm.n_ctx())
        #: The user whose conversation the context holds (None: nobody's, it is empty).
        self.owner: str | None = None
        #: The keys/values of the chat template's own opening (see :meth:`_evaluate_template_opening`).
        try:
            self.template_opening: SavedState | None = self._evaluate_template_opening()
        except Exception as exc:  # a template that cannot render one user message, a failed decode
            self._llm.close()
            raise InferenceError(
                f"cannot evaluate {path}'s chat template: {exc}", code="model_load_failed"
            ) from exc

    def chat_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Render ``messages`` with the GGUF chat template (plus the generation prompt) and tokenize.

        Message contents are tokenized as plain text: a ``<|im_end|>`` typed by a user stays text and
        never becomes a control token.  Contents without control-token text tokenize exactly as
        llama.cpp does; otherwise the template is rendered around unguessable placeholders and only
        its own text is tokenized with special tokens parsed.
        """
        plain = [{"role": m.role, "content": m.content} for m in messages]
        if not any(self._has_special(m.content) for m in messages):
            rendered = self._formatter(messages=plain)
            return self._tokenize(rendered.prompt, add_bos=not rendered.added_special, special=True)
        marks = [f"\ue000{secrets.token_hex(8)}\ue001" for _ in messages]
        pairs = list(zip(marks, messages, strict=True))
        rendered = self._formatter(messages=[{"role": m.role, "content": k} for k, m in pairs])
        contents = {k: m.content for k, m in pairs}
        tokens: list[int] = []
        add_bos = not rendered.added_special
        for piece in re.split(f"({'|'.join(marks)})", rendered.prompt):
            text, special = (contents[piece], False) if piece in contents else (piece, True)
            if text:
                tokens += self._tokenize(text, add_bos=add_bos, special=special)
                add_bos = False
        return tokens

    def _has_special(self, text: str) -> bool:
        """True when ``text`` contains the text of a control token."""
        return self._tokenize(text, add_bos=False, special=True) != self._tokenize(
            text, add_bos=False, special=False
        )

    def _tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def _evaluate_template_opening(self) -> SavedState | None:
        """Evaluate the tokens every conversation starts with and keep their keys/values.

        Two one-message conversations that differ from their first content character share exactly
        the template's own text before the user's words (with SmolLM2: BOS, its default system prompt
        and ``<|im_start|>user``).  That text is the model's, the same for everybody, and computed
        here from nothing any user sent, so starting a new user from it shares nothing between users.
        """
        first = self.chat_tokens([ChatMessage("user", "A")])
        second = self.chat_tokens([ChatMessage("user", "Z")])
        opening = first[: _common_prefix(first, second)]
        if not opening:
            return None
        self._llm.eval(opening)
        data = self._seq_state()
        self.forget()
        return SavedState(tokens=array.array("i", opening), data=data, saved_at=0.0)

    def take_turn(self, user: str, prompt: Sequence[int], states: ConversationStates) -> int:
        """Make the context ``user``'s; return how many leading prompt tokens it already holds.

        If the context holds another user's conversation it is emptied first, then ``user``'s saved
        state is loaded -- or the template's opening (:attr:`template_opening`) when the user has no
        state or it shares less with ``prompt``.  The count is what ``generate()`` will skip: the
        common prefix, at most ``len(prompt) - 1`` (the last prompt token is always evaluated, so the
        next token's logits are fresh).
        """
        if self.owner != user:
            self.forget()
            saved = states.get(user)
            opening = self.template_opening
            shared = _common_prefix(opening.tokens, prompt) if opening is not None else 0
            own = _common_prefix(saved.tokens, prompt) if saved is not None else 0
            if saved is not None and own > shared and not self._restore(saved):
                states.discard(user)
            if self._llm.n_tokens == 0 and opening is not None and shared > 0 and not self._restore(opening):
                self.template_opening = None
            self.owner = user
        self._llm._requires_eval = True  # never sample from logits that were not just computed
        held = self._llm.input_ids[: self._llm.n_tokens].tolist()
        return min(_common_prefix(held, prompt), max(len(prompt) - 1, 0))

    def save_turn(self, states: ConversationStates) -> None:
        """Save the context's keys/values for its owner (replacing their previous state)."""
        n_tokens = int(self._llm.n_tokens)
        if self.owner is None or n_tokens == 0:
            return
        states.put(self.owner, self._llm.input_ids[:n_tokens].tolist(), self._seq_state())

    def _seq_state(self) -> bytes:
        """The context's keys/values, serialised by llama.cpp."""
        ctx = self._llm._ctx.ctx
        size = int(self._lib.llama_state_seq_get_size(ctx, _SEQ))
        buf = (ctypes.c_uint8 * size)()
        written = int(self._lib.llama_state_seq_get_data(ctx, buf, size, _SEQ))
        return ctypes.string_at(buf, written)

    def forget(self) -> None:
        """Empty the context: no user's tokens remain in it."""
        self._llm.reset()
        self._lib.llama_memory_clear(self._lib.llama_get_memory(self._llm._ctx.ctx), False)
        self.owner = None

    def _restore(self, saved: SavedState) -> bool:
        """Load ``saved`` into the (empty) context; False, with the context empty, if it did not load."""
        src = ctypes.cast(ctypes.c_char_p(saved.data), ctypes.POINTER(ctypes.c_uint8))
        if int(self._lib.llama_state_seq_set_data(self._llm._ctx.ctx, src, len(saved.data), _SEQ)) == 0:
            log.warning("a saved conversation state did not load", extra={"code": "kv_state_invalid"})
            self.forget()
            return False
        n_tokens = len(saved.tokens)
        self._llm.input_ids[:n_tokens] = saved.tokens
        self._llm.n_tokens = n_tokens
        return True

    def tokens(self, prompt: Sequence[int], params: SamplingParams) -> Any:
        """The raw token generator of ``Llama.generate`` (a generator; close it when done)."""
        if params.seed is not None:
            self._llm.set_seed(params.seed)
        return self._llm.generate(
            list(prompt),
            temp=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
        )

    def is_end(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, end of turn)."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        """The bytes of one token."""
        return bytes(self._llm.detokenize([token]))

    def close(self) -> None:
        """Free the model and context."""
        self._llm.close()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class _StopMatcher:
    """Turns decoded text into deltas, holding back text that may start a stop string."""

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = [s for s in stop if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add ``text``; return (text safe to emit, whether a stop string was completed)."""
        self._pending += text
        if not self._stop:
            out, self._pending = self._pending, ""
            return out, False
        hits = [i for i in (self._pending.find(s) for s in self._stop) if i >= 0]
        if hits:
            out = self._pending[: min(hits)]
            self._pending = ""
            return out, True
        keep = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(s[:k]):
                    keep = max(keep, k)
                    break
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        """Text held back when generation ended without completing a stop string."""
        out, self._pending = self._pending, ""
        return out


class Generation:
    """One running generation: iterate it for text deltas, then read :attr:`result`.

    Leaving the iteration early (``break``, an exception, a client disconnect) must be followed by
    :meth:`aclose`, which cancels the worker and waits for its exact count.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deltas: asyncio.Queue[tuple[str | GenerationResult, int]] = asyncio.Queue()
        self._credits = threading.Semaphore(_WINDOW)
        self._cancel = threading.Event()
        self._result: GenerationResult | None = None
        #: Tokens sampled so far (set by the worker before it emits their text).
        self.produced = 0
        #: Tokens whose text the consumer has taken (what metering checkpoints while streaming).
        self.delivered = 0

    # ------------------------------------------------------------------ consumer side (event loop)
    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        while self._result is None:
            item, self.delivered = await self._deltas.get()
            self._credits.release()
            if isinstance(item, GenerationResult):
                self._result = item
                return
            yield item

    def cancel(self) -> None:
        """Ask the worker to stop before its next token."""
        self._cancel.set()

    async def aclose(self) -> GenerationResult:
        """Cancel if still running, wait for the worker to finish, and return the exact result."""
        if self._result is None:
            self._cancel.set()
            while self._result is None:
                item, _ = await self._deltas.get()
                self._credits.release()
                if isinstance(item, GenerationResult):
                    self._result = item
        return self._result

    @property
    def result(self) -> GenerationResult:
        """The outcome; available once iteration ended or :meth:`aclose` returned."""
        if self._result is None:
            raise RuntimeError("generation still running")
        return self._result

    # -------------------------------------------------------------------- producer side (worker)
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def emit(self, item: str | GenerationResult) -> None:
        """Hand ``item`` to the consumer; waits while the consumer is far behind, unless cancelled."""
        if isinstance(item, str):
            while not self._credits.acquire(timeout=_POLL_S):
                if self._cancel.is_set():
                    return  # nobody reads deltas any more; the result is what matters
        else:
            self._credits.acquire(blocking=False)
        self._loop.call_soon_threadsafe(self._deltas.put_nowait, (item, self.produced))


class Engine:
    """The model and its one worker thread.  Create with :meth:`from_config` or the constructor,
    then ``await start()``; ``await close()`` when done."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        heartbeat: Callable[[], None] | None = None,
        states: ConversationStates | None = None,
    ) -> None:
        self.model_path = model_path
        self._heartbeat: Callable[[], None] = heartbeat if heartbeat is not None else _no_heartbeat
        defaults = LlmConfig()
        #: Saved per-user conversation states (owned by the worker thread once started).
        self.states = (
            states
            if states is not None
            else ConversationStates(
                capacity_bytes=defaults.state_cache_bytes,
                max_age_seconds=defaults.state_cache_max_age_seconds,
            )
        )
        self._n_ctx_requested = n_ctx
        self._n_threads = n_threads
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._model: _Model | None = None

    @classmethod
    def from_config(cls, cfg: LlmConfig, *, heartbeat: Callable[[], None] | None = None) -> Engine:
        """An engine for ``llm.model_path`` (or the SmolLM2 wheel), ``n_ctx`` and threads from ``cfg``.

        ``heartbeat`` is called on the worker thread after every generated token and by :meth:`ping`,
        so a watchdog can tell a busy worker from a hung one.
        """
        return cls(
            resolve_model_path(cfg),
            n_ctx=cfg.n_ctx,
            n_threads=cfg.effective_threads(),
            heartbeat=heartbeat,
            states=ConversationStates(
                capacity_bytes=cfg.state_cache_bytes, max_age_seconds=cfg.state_cache_max_age_seconds
            ),
        )

    @property
    def model_name(self) -> str:
        """The model id shown to clients: the GGUF file name without ``.gguf``."""
        return self.model_path.stem

    @property
    def template_opening_tokens(self) -> int:
        """How many tokens of the chat template's own opening every new conversation starts from
        (reported in ``cached_tokens``, the same for every user; 0 if the template has none)."""
        opening = self._loaded().template_opening
        return len(opening.tokens) if opening is not None else 0

    @property
    def n_ctx(self) -> int:
        """The context window actually allocated (llama.cpp rounds up to a multiple of 256)."""
        return self._loaded().n_ctx

    async def start(self) -> None:
        """Load the model on the worker thread."""
        if self._model is None:
            self._model = await self._run(
                lambda: _Model(self.model_path, n_ctx=self._n_ctx_requested, n_threads=self._n_threads)
            )

    async def ping(self) -> None:
        """Run the heartbeat on the worker thread (returns once the worker is free to run it)."""
        await self._run(self._heartbeat)

    async def close(self) -> None:
        """Free the model after queued jobs finish; stop the worker thread."""
        model, self._model = self._model, None
        if model is not None:
            await self._run(model.close)
        self._executor.shutdown(wait=False)

    async def prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt exactly as :meth:`generate` will see it (chat template + generation prompt)."""
        model = self._loaded()
        try:
            tokens: list[int] = await self._run(lambda: model.chat_tokens(messages))
            return tokens
        except DeviceError:
            raise
        except Exception as exc:  # jinja2 template errors, tokenizer failures
            raise InferenceError(f"cannot render the chat template: {exc}", code="bad_request") from exc

    def generate(
        self,
        prompt: Sequence[int],
        *,
        user: str,
        max_tokens: int,
        budget: int,
        stop: Sequence[str] = (),
        params: SamplingParams = SamplingParams(),
    ) -> Generation:
        """Start generating after ``prompt`` in ``user``'s conversation; at most ``min(max_tokens, budget)``
        tokens.

        Only ``user``'s own earlier turns are reused (``cached_tokens``).  Reaching ``max_tokens`` (or the
        context end) finishes with ``length``; reaching ``budget`` first finishes with ``budget``.
        """
        model = self._loaded()
        generation = Generation(asyncio.get_running_loop())
        limit = min(max_tokens, self.n_ctx - len(prompt))
        turn = _Turn(model, self.states, user, list(prompt))
        self._executor.submit(_run_generation, turn, generation, limit, budget, stop, params, self._heartbeat)
        return generation

    def _loaded(self) -> _Model:
        if self._model is None:
            raise InferenceError("the model is not loaded", code="model_not_loaded")
        return self._model

    async def _run(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)


def _no_heartbeat() -> None:
    """The default heartbeat: nothing watches the worker."""


@dataclass(frozen=True, slots=True)
class _Turn:
    """Whose conversation a generation continues, on which model."""

    model: _Model
    states: ConversationStates
    user: str
    prompt: list[int]


def _run_generation(
    turn: _Turn,
    gen: Generation,
    limit: int,
    budget: int,
    stop: Sequence[str],
    params: SamplingParams,
    heartbeat: Callable[[], None],
) -> None:
    """The metered loop (worker thread).  Always ends by emitting one :class:`GenerationResult`,
    then saves the user's conversation state (off the answer's critical path)."""
    model = turn.model
    produced = 0
    evaluated = False
    cached = 0
    reason = FinishReason.LENGTH
    error: str | None = None
    matcher = _StopMatcher(stop)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tokens: Any = None
    touched = False  # the context was handed to this turn's user
    try:
        # `gen.cancelled` is set by the event loop while this thread runs: read it into a local here, so
        # mypy does not narrow the property to False for the checks inside the loop below.
        cancelled_before_start = gen.cancelled
        if cancelled_before_start:
            reason = FinishReason.CANCELLED
        elif limit <= 0 or budget <= 0:
            reason = FinishReason.BUDGET if budget <= 0 else FinishReason.LENGTH
        else:
            touched = True
            cached = model.take_turn(turn.user, turn.prompt, turn.states)
            tokens = model.tokens(turn.prompt, params)
            for token in tokens:
                evaluated = True
                heartbeat()
                if model.is_end(token):
                    reason = FinishReason.STOP
                    break
                produced += 1
                gen.produced = produced
                text, hit = matcher.feed(decoder.decode(model.piece(token)))
                if text:
                    gen.emit(text)
                if hit:
                    reason = FinishReason.STOP
                    break
                if produced >= budget and budget < limit:
                    reason = FinishReason.BUDGET
                    break
                if produced >= limit:
                    reason = FinishReason.LENGTH
                    break
                if gen.cancelled:
                    reason = FinishReason.CANCELLED
                    break
            tail = matcher.flush() + decoder.decode(b"", final=True)  # empty after a stop string
            if tail and reason is not FinishReason.CANCELLED:
                gen.emit(tail)
    except Exception as exc:  # llama.cpp failures surface here; the caller gets an exact count anyway
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if tokens is not None:
            with contextlib.suppress(Exception):
                tokens.close()
        gen.emit(
            GenerationResult(
                completion_tokens=produced,
                finish_reason=reason,
                prompt_evaluated=evaluated,
                cached_tokens=cached,
                error=error,
            )
        )
    if touched:
        _keep_state(turn, failed=error is not None)


def _keep_state(turn: _Turn, *, failed: bool) -> None:
    """After a generation: save the context for its user, or empty it if the generation failed."""
    try:
        if failed:
            turn.model.forget()
        else:
            turn.model.save_turn(turn.states)
    except Exception as exc:  # a state we cannot save is only lost speed; never keep a half-known context
        log.warning("conversation state not saved: %s", exc, extra={"code": "kv_state_invalid"})
        with contextlib.suppress(Exception):
            turn.model.forget()
