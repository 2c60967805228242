"""The fuzz summary table: printed by ``conftest.pytest_terminal_summary`` for one session and by
``tests/fuzz/deep.py`` for its shards together."""

from __future__ import annotations

from tests.fuzz import Tally


def table_lines(tally: Tally) -> list[str]:
    """One row per target (tried, accepted, crashes, unexpected, refusals by code) and a TOTAL row."""
    if not tally.targets:
        return []
    width = max(len("TOTAL"), *(len(name) for name in tally.targets))
    header = f"{'target':<{width}}  {'tried':>8}  {'accepted':>8}  {'crashes':>7}  {'unexpected':>10}"
    lines = [f"{header}  refusals by code"]
    totals = [0, 0, 0, 0]
    for name in sorted(tally.targets):
        t = tally.targets[name]
        refusals = ", ".join(f"{code}={n}" for code, n in t.refusals.most_common()) or "-"
        lines.append(
            f"{name:<{width}}  {t.tried:>8}  {t.accepted:>8}  {t.crashes:>7}  {t.unexpected:>10}  {refusals}"
        )
        for i, n in enumerate((t.tried, t.accepted, t.crashes, t.unexpected)):
            totals[i] += n
        if t.first_problem:
            lines.append(f"{'':<{width}}  first problem: {t.first_problem}")
    lines.append(f"{'TOTAL':<{width}}  {totals[0]:>8}  {totals[1]:>8}  {totals[2]:>7}  {totals[3]:>10}")
    return lines
