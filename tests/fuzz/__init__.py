"""Cross-cutting fuzz / bad-input suite (see README.md): strategies, per-target counters, long mode.

``TALLY`` counts, per target, the inputs tried, how each ended (accepted, refused with a code,
crashed, unexpected exception) and is printed as a table by ``conftest.pytest_terminal_summary``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings

from tests.fixtures.error_codes import documented_codes

#: ``XEPHY_FUZZ_LONG=1``: the long mode (a factor of 100 unless ``XEPHY_FUZZ_FACTOR`` says otherwise, and
#: at least ``LONG_MIN`` examples per target), i.e. tens of thousands for the cheap in-process targets.
LONG = os.environ.get("XEPHY_FUZZ_LONG", "") not in ("", "0", "false", "no")
LONG_MIN = 2_000


def depth_factor(environ: Mapping[str, str] = os.environ) -> float:
    """``XEPHY_FUZZ_FACTOR`` (any positive number; 1 by default, 100 in long mode): every target runs
    this many times its default examples (``make fuzz-deep`` sets it)."""
    raw = environ.get("XEPHY_FUZZ_FACTOR", "")
    if not raw:
        return 100.0 if LONG else 1.0
    factor = float(raw)
    if not factor > 0:
        raise ValueError(f"XEPHY_FUZZ_FACTOR must be a positive number, not {raw!r}")
    return factor


FACTOR = depth_factor()


def mode_name() -> str:
    """``default``, ``long`` or ``xN`` -- the summary table's title."""
    if LONG:
        return "long"
    return "default" if FACTOR == 1 else f"x{FACTOR:g}"


def examples_for(default_examples: int, long_examples: int | None = None, *, factor: float = FACTOR) -> int:
    """How many examples a target runs: ``factor`` times its default, capped at ``long_examples`` (the
    costly targets' limit) once scaled up, and at least :data:`LONG_MIN` in long mode."""
    examples = max(1, round(default_examples * factor))
    if factor > 1 and long_examples is not None:
        examples = min(examples, long_examples)
    if LONG:
        examples = max(examples, min(LONG_MIN, long_examples or LONG_MIN))
    return examples


def fuzz_settings(default_examples: int, *, long_examples: int | None = None) -> settings:
    """Settings for one fuzz target: ``default_examples`` under ``make test``, scaled by :data:`FACTOR`."""
    examples = examples_for(default_examples, long_examples)
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
        print_blob=True,
    )


DOCUMENTED = frozenset(documented_codes())
"""Every `code` named in docs/errors.md."""


@dataclass
class Target:
    """Outcome counters of one fuzz target."""

    tried: int = 0
    accepted: int = 0
    crashes: int = 0
    unexpected: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    first_problem: str | None = None


class Tally:
    """Per-target counters, shared by every fuzz test of the session."""

    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}

    def __getitem__(self, name: str) -> Target:
        return self.targets.setdefault(name, Target())

    def tried(self, name: str) -> None:
        self[name].tried += 1

    def accepted(self, name: str) -> None:
        self[name].accepted += 1

    def refused(self, name: str, code: str) -> None:
        self[name].refusals[code] += 1

    def crash(self, name: str, what: Any) -> None:
        target = self[name]
        target.crashes += 1
        target.first_problem = target.first_problem or f"crash: {what!r}"[:200]

    def unexpected(self, name: str, what: Any) -> None:
        target = self[name]
        target.unexpected += 1
        target.first_problem = target.first_problem or f"unexpected: {what!r}"[:200]

    def to_json(self) -> dict[str, Any]:
        """The counters as plain JSON (``make fuzz-deep`` adds up its shards' files)."""
        return {
            name: {
                "tried": t.tried,
                "accepted": t.accepted,
                "crashes": t.crashes,
                "unexpected": t.unexpected,
                "refusals": dict(t.refusals),
                "first_problem": t.first_problem,
            }
            for name, t in self.targets.items()
        }

    def add_json(self, data: dict[str, Any]) -> None:
        """Add the counters of :meth:`to_json` output to these."""
        for name, counts in data.items():
            target = self[name]
            target.tried += int(counts["tried"])
            target.accepted += int(counts["accepted"])
            target.crashes += int(counts["crashes"])
            target.unexpected += int(counts["unexpected"])
            target.refusals.update({str(code): int(n) for code, n in counts["refusals"].items()})
            target.first_problem = target.first_problem or counts.get("first_problem")


TALLY = Tally()


def attempt(
    target: str,
    call: Any,
    *,
    error: type[BaseException] | tuple[type[BaseException], ...],
    allowed: frozenset[str] | None = None,
) -> Any:
    """Run ``call()`` as one input of ``target``; return its result or the typed error it raised.

    Counted as accepted, refused (by code), crash (any other exception: re-raised) or unexpected
    (the typed error without a documented code: the test fails)."""
    TALLY.tried(target)
    try:
        result = call()
    except error as exc:
        code = getattr(exc, "code", None)
        if not isinstance(code, str) or code not in (allowed if allowed is not None else DOCUMENTED):
            TALLY.unexpected(target, exc)
            raise AssertionError(f"{target}: refusal without a documented code: {code!r} ({exc})") from exc
        if not str(getattr(exc, "message", exc)):
            TALLY.unexpected(target, exc)
            raise AssertionError(f"{target}: refusal {code} without a message") from exc
        TALLY.refused(target, code)
        return exc
    except Exception as exc:
        TALLY.crash(target, exc)
        raise
    TALLY.accepted(target)
    return result
